"""Security headers on every HTTP response, and CORS for the REST API.

Browsers are the only clients that honour these; they protect a browser workspace and its
users, not the server. The API serves JSON only, so it tells browsers never to sniff,
frame, render or cache its answers. CORS is off unless ``PARLEY_CORS_ALLOWED_ORIGINS`` names
origins: by default no other origin's page may call the API with a token from script.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware

__all__ = ["CORSMiddleware", "SecurityHeaders", "cors_options"]
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
# Only for API answers: a page served by the same server (the workspace) sets its own policy.
API_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Pure ASGI middleware adding the headers above (never replacing ones already set)."""

    def __init__(self, app: ASGIApp, *, hsts_seconds: int = 0) -> None:
        self.app = app
        self.extra = list(BASE_HEADERS)
        if hsts_seconds:
            value = f"max-age={hsts_seconds}; includeSubDomains".encode()
            self.extra.append((b"strict-transport-security", value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.extra + (API_HEADERS if scope["path"].startswith("/api/") else [])

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """CORS for the configured origins (with none, the app adds no CORS middleware, so
    browsers refuse cross-origin calls). Tokens travel in the Authorization header, never in
    cookies, so credentials mode is not offered."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"],
        "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key"],
        "expose_headers": ["Retry-After", "WWW-Authenticate"],
        "max_age": 600,
    }
