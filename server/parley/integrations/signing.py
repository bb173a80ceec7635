"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` (no I/O).

The header is ``Parley-Signature: t=<unix seconds>,v1=<hex digest>``. Signing the timestamp
with the body lets a receiver refuse replays of old deliveries: check the digest, then check
that ``t`` is recent. During a secret rotation several ``v1=`` values may be present.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (shown to the tenant admin once)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Parley-Signature`` value for ``body``, signed now unless ``timestamp`` is given."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={digest(secret, ts, body)}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance`` seconds of ``now``: the recipe every receiver should follow."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
