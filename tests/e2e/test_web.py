"""The browser workspace's files at ``/``: the built page, hashed assets, the not-built notice."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette

from parley.web.static import STATIC_DIR, web_routes
from tests.support import RunningServer


def _client(static_dir: Path) -> httpx.AsyncClient:
    app = Starlette(routes=web_routes(static_dir))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_not_built_says_how_to_build(tmp_path: Path) -> None:
    async with _client(tmp_path / "missing") as http:
        page = await http.get("/")
        asset = await http.get("/assets/app-1234.js")
    assert page.status_code == 503
    assert "make web" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert asset.status_code == 404


async def test_built_page_and_hashed_assets(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>Parley</title>")
    (tmp_path / "assets" / "app-ABCD.js").write_text("console.log(1)")
    async with _client(tmp_path) as http:
        page = await http.get("/")
        asset = await http.get("/assets/app-ABCD.js")
        missing = await http.get("/assets/app-OLD.js")
        escape = await http.get("/assets/../index.html")
    assert page.status_code == 200
    assert "Parley" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.headers["content-type"]
    assert missing.status_code == 404
    assert "immutable" not in missing.headers.get("cache-control", "")
    assert escape.status_code in (200, 404)
    assert "immutable" not in escape.headers.get("cache-control", "")


async def test_the_server_serves_the_workspace_beside_the_api(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        page = await http.get("/")
        api = await http.get("/api/v1/sessions")
        unknown = await http.get("/no-such-page")
    built = (STATIC_DIR / "index.html").is_file()
    assert page.status_code == (200 if built else 503)
    assert "Parley" in page.text
    assert api.status_code == 401
    assert unknown.status_code == 404
