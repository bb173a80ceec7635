"""Serves the built workspace from ``parley/web/static/`` at ``/``.

The build (``make web``, ``npm run build`` in ``client_js/``) writes ``index.html`` and
content-hashed files under ``assets/``. Hashed files never change, so browsers may keep them for
a year; ``index.html`` names the current ones and is revalidated on every load. Nothing is
fetched from another host at run time.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Parley</title>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;line-height:1.5">
<h1>The Parley workspace is not built</h1>
<p>The server runs (REST at <code>/api/v1</code>, WebSocket at <code>/ws</code>), but the browser
workspace's files are missing from <code>server/parley/web/static/</code>.</p>
<p>Build them with <code>make web</code> (needs Node.js 20+ and npm; it runs
<code>npm ci</code> and <code>npm run build</code> in <code>client_js/</code>), then reload.</p>
</body>"""


class _ImmutableAssets(StaticFiles):
    """Content-hashed assets: cached for a year, never revalidated."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await anyio.Path(
            str(self.directory)
        ).is_dir():  # not built: a plain 404, not a crash
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return

        async def send_with_cache(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"cache-control", b"public, max-age=31536000, immutable"),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_cache)


def web_routes(static_dir: Path = STATIC_DIR) -> list[BaseRoute]:
    """``/`` (the workspace's page) and ``/assets`` (its files), served from ``static_dir``."""

    async def index(request: Request) -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            return HTMLResponse(_NOT_BUILT, status_code=503, headers={"cache-control": "no-store"})
        # Revalidated on every load: it names the current hashed assets.
        return FileResponse(page, headers={"cache-control": "no-cache"})

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Mount(
            "/assets",
            app=_ImmutableAssets(directory=static_dir / "assets", check_dir=False),
            name="web-assets",
        ),
    ]


routes = web_routes()
