"""Attachments end to end on SQLite and PostgreSQL: upload (raw and multipart), sniffing,
limits, thumbnails, downloads, references from messages, tenant isolation, garbage collection."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from parley.config import Settings
from tests.fakes.llm_server import FakeLLM
from tests.fakes.relay_client import add_assistant
from tests.support import RunningServer, start_server

LIMIT = 256 * 1024
QUOTA = 1024 * 1024
MAX_PIXELS = 1_500_000


@pytest.fixture
async def server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """Shadows the shared fixture: small limits, so the tests can reach them cheaply."""
    settings = settings_factory(
        database_url=database_url,
        attachment_max_bytes=LIMIT,
        attachment_tenant_quota_bytes=QUOTA,
        attachment_max_image_pixels=MAX_PIXELS,
        attachment_thumbnail_px=320,
    )
    async with start_server(settings) as running:
        yield running


def image_bytes(
    fmt: str, size: tuple[int, int], *, mode: str = "RGB", exif: Image.Exif | None = None
) -> bytes:
    img = Image.new(mode, size, "red" if mode != "1" else 1)
    out = io.BytesIO()
    if exif is not None:
        img.save(out, fmt, exif=exif)
    else:
        img.save(out, fmt)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def upload_raw(
    h: httpx.AsyncClient, sid: str, data: bytes, name: str, ctype: str
) -> httpx.Response:
    return await h.post(
        f"/sessions/{sid}/attachments",
        params={"filename": name},
        content=data,
        headers={"Content-Type": ctype},
    )


async def collect_garbage(server: RunningServer) -> tuple[int, int]:
    """Run ``parley attachments gc --grace 0`` beside the server; (attachments, blobs) removed."""
    s = server.settings
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "parley"),
        "attachments",
        "gc",
        "--grace",
        "0",
        env={
            **os.environ,
            "PARLEY_DATA_DIR": str(s.data_dir),
            "PARLEY_DATABASE_URL": s.effective_database_url,
            "PARLEY_LOG_LEVEL": "warning",
        },
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    found = re.search(rb"removed (\d+) attachments and (\d+) blobs", out)
    assert found, out
    return int(found[1]), int(found[2])


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    code: str = r.json()["error"]["code"]
    return code


async def test_upload_png_jpeg_pdf_and_download_them(server: RunningServer) -> None:
    sid = await server.create_session()
    png = image_bytes("PNG", (40, 30))
    jpeg = image_bytes("JPEG", (50, 20))
    async with server.http() as h:
        r = await upload_raw(h, sid, png, "pixel.png", "image/png")
        assert r.status_code == 201, r.text
        a_png = r.json()
        assert a_png["content_type"] == "image/png"
        assert a_png["size"] == len(png)
        assert a_png["sha256"] == hashlib.sha256(png).hexdigest()
        assert (a_png["width"], a_png["height"]) == (40, 30)
        assert a_png["url"] == f"/api/v1/attachments/{a_png['id']}"
        assert a_png["thumbnail_url"] == a_png["url"] + "/thumbnail"

        # multipart, with a file name that tries to climb directories
        r = await h.post(
            f"/sessions/{sid}/attachments",
            files={"file": ("../../etc/photo.jpg", jpeg, "image/jpeg")},
            data={"note": "ignored"},
        )
        assert r.status_code == 201, r.text
        a_jpeg = r.json()
        assert a_jpeg["name"] == "photo.jpg"
        assert a_jpeg["content_type"] == "image/jpeg"

        r = await upload_raw(h, sid, PDF, "report.pdf", "application/octet-stream")
        assert r.status_code == 201, r.text
        a_pdf = r.json()
        assert a_pdf["content_type"] == "application/pdf", "the type comes from the bytes"
        assert a_pdf["thumbnail_url"] is None
        assert a_pdf["width"] is None

        r = await h.get(f"/attachments/{a_png['id']}")
        assert r.status_code == 200
        assert r.content == png
        assert r.headers["content-type"] == "image/png"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"].startswith("inline;")
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["etag"] == f'"{a_png["sha256"]}"'
        r304 = await h.get(
            f"/attachments/{a_png['id']}", headers={"If-None-Match": r.headers["etag"]}
        )
        assert r304.status_code == 304

        r = await h.head(f"/attachments/{a_png['id']}")
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(png))
        assert r.content == b""

        r = await h.get(f"/attachments/{a_pdf['id']}")
        assert r.content == PDF
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-disposition"] == (
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        ), "a PDF is always a download, never shown in the page"
        assert (await h.get(f"/attachments/{a_pdf['id']}/thumbnail")).status_code == 404

        r = await h.get(f"/sessions/{sid}/attachments")
        assert [a["id"] for a in r.json()["items"]] == [a_png["id"], a_jpeg["id"], a_pdf["id"]]
        assert all(a["message_ids"] == [] for a in r.json()["items"])


async def test_thumbnails_have_bounded_size_orientation_applied_and_no_metadata(
    server: RunningServer,
) -> None:
    sid = await server.create_session()
    wide = image_bytes("PNG", (1000, 500), mode="RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[0x010F] = "SecretCamera"  # make: metadata that must not survive
    turned = image_bytes("JPEG", (600, 300), exif=exif)
    async with server.http() as h:
        a = (await upload_raw(h, sid, wide, "wide.png", "image/png")).json()
        r = await h.get(f"/attachments/{a['id']}/thumbnail")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        thumb = Image.open(io.BytesIO(r.content))
        assert thumb.format == "PNG", "transparency keeps a PNG thumbnail"
        assert thumb.size == (320, 160)

        b = (await upload_raw(h, sid, turned, "turned.jpg", "image/jpeg")).json()
        assert (b["width"], b["height"]) == (300, 600), "the displayed (rotated) size"
        r = await h.get(f"/attachments/{b['id']}/thumbnail")
        thumb = Image.open(io.BytesIO(r.content))
        assert thumb.format == "JPEG"
        assert thumb.size == (160, 320)
        assert not thumb.getexif(), "no EXIF in the thumbnail"
        assert b"SecretCamera" not in r.content


async def test_limits_oversize_declared_and_streamed_quota_and_bombs(
    server: RunningServer,
) -> None:
    sid = await server.create_session()
    async with server.http() as h:
        r = await upload_raw(h, sid, b"a" * (LIMIT + 1), "big.txt", "text/plain")
        assert error_code(r, 413) == "file_too_large"
        assert r.json()["error"]["details"] == {"limit": LIMIT}

        r = await h.post(
            f"/sessions/{sid}/attachments",
            files={"file": ("big.txt", b"b" * (LIMIT + 10), "text/plain")},
        )
        assert error_code(r, 413) == "file_too_large"

        bomb = image_bytes("PNG", (2000, 1000), mode="1")  # small file, 2 M pixels
        assert len(bomb) < LIMIT
        r = await upload_raw(h, sid, bomb, "bomb.png", "image/png")
        assert error_code(r, 422) == "invalid_request"
        assert "pixels" in r.json()["error"]["message"]

        broken = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50
        r = await upload_raw(h, sid, broken, "broken.png", "image/png")
        assert error_code(r, 415) == "unsupported_media_type"

        r = await upload_raw(h, sid, b"", "empty.txt", "text/plain")
        assert error_code(r, 422) == "invalid_request"

        # the quota: four files of 250 KiB fit in 1 MiB, the fifth does not
        for i in range(4):
            r = await upload_raw(h, sid, bytes([65 + i]) * 250_000, f"f{i}.txt", "text/plain")
            assert r.status_code == 201, r.text
        r = await upload_raw(h, sid, b"Z" * 100_000, "more.txt", "text/plain")
        assert error_code(r, 413) == "quota_exceeded"
    async with server.http("olga", tenant="other") as o:
        own = await server.create_session("olga", tenant="other")
        r = await upload_raw(o, own, b"Z" * 100_000, "more.txt", "text/plain")
        assert r.status_code == 201, "the quota is per tenant"


async def test_a_streamed_upload_is_cut_off_at_the_limit_before_its_body_ends(
    server: RunningServer,
) -> None:
    """Chunked body, no length: the server must answer 413 while the body is still open (a
    server that buffered the body first would wait for its end forever)."""
    sid = await server.create_session()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"POST /api/v1/sessions/{sid}/attachments?filename=endless.txt HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.token()}\r\n"
        "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    piece = b"x" * 16384
    try:
        for _ in range(LIMIT // len(piece) + 4):
            writer.write(b"4000\r\n" + piece + b"\r\n")
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 413"), status
    finally:
        writer.close()
    tmp = Path(server.settings.effective_attachment_dir) / ".tmp"
    assert not list(tmp.glob("*")), "the partial file was removed"


async def test_spoofed_types_are_refused_or_corrected(server: RunningServer) -> None:
    sid = await server.create_session()
    html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    async with server.http() as h:
        r = await upload_raw(h, sid, html, "cat.png", "image/png")
        assert error_code(r, 415) == "unsupported_media_type"
        r = await upload_raw(h, sid, svg, "logo.svg", "image/svg+xml")
        assert error_code(r, 415) == "unsupported_media_type"
        r = await upload_raw(h, sid, b"MZ\x90\x00\x03\x00\x00\x00binary", "x.txt", "text/plain")
        assert error_code(r, 415) == "unsupported_media_type"

        jpeg = image_bytes("JPEG", (8, 8))
        r = await upload_raw(h, sid, jpeg, "really.png", "image/png")
        assert r.json()["content_type"] == "image/jpeg", "corrected to what the bytes are"

        r = await upload_raw(h, sid, b"just words", "fake.png", "image/png")
        a = r.json()
        assert a["content_type"] == "text/plain"
        r = await h.get(f"/attachments/{a['id']}")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["content-disposition"].startswith("attachment;")

        r = await upload_raw(h, sid, b"a,b\n1,2\n", "t.csv", "application/octet-stream")
        assert r.json()["content_type"] == "text/csv"
        r = await upload_raw(h, sid, "# Títle\n".encode(), "notes.md", "text/markdown")
        assert r.json()["content_type"] == "text/markdown"


async def test_other_tenants_and_missing_ids_answer_the_same(server: RunningServer) -> None:
    sid = await server.create_session()
    async with server.http() as h:
        a = (await upload_raw(h, sid, PDF, "r.pdf", "application/pdf")).json()
    missing = "0" * 8 + a["id"][8:]
    async with server.http("mallory", tenant="evil") as e:
        own = await server.create_session("mallory", tenant="evil")
        for path in (f"/attachments/{a['id']}", f"/attachments/{a['id']}/thumbnail"):
            theirs = await e.get(path)
            nothing = await e.get(path.replace(a["id"], missing))
            assert theirs.status_code == nothing.status_code == 404
            assert theirs.json()["error"]["code"] == nothing.json()["error"]["code"]
            assert (
                theirs.json()["error"]["message"].replace(a["id"], missing)
                == nothing.json()["error"]["message"]
            )
        r1 = await e.post(
            f"/sessions/{own}/messages",
            json={"parts": [{"type": "attachment", "attachment_id": a["id"]}]},
        )
        r2 = await e.post(
            f"/sessions/{own}/messages",
            json={"parts": [{"type": "attachment", "attachment_id": missing}]},
        )
        assert r1.status_code == r2.status_code == 422
        assert (
            r1.json()["error"]["message"].replace(a["id"], missing) == r2.json()["error"]["message"]
        )
        assert (await upload_raw(e, sid, PDF, "x.pdf", "application/pdf")).status_code == 404


async def test_messages_reference_attachments_and_collected_when_unreferenced(
    server: RunningServer,
) -> None:
    sid = await server.create_session()
    other = await server.create_session()
    png = image_bytes("PNG", (10, 10))
    async with server.http() as h, server.client() as ws:
        a = (await upload_raw(h, sid, png, "dot.png", "image/png")).json()
        elsewhere = (await upload_raw(h, other, PDF, "o.pdf", "application/pdf")).json()
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"parts": [{"type": "attachment", "attachment_id": elsewhere["id"]}]},
        )
        assert error_code(r, 422) == "invalid_request", "another session's file: refused"

        await ws.subscribe(sid)
        ack = await ws.say(
            sid,
            "look",
            parts=[{"type": "attachment", "attachment_id": a["id"], "name": "forged.exe"}],
        )
        (event,) = await ws.events(1)
        part = event["data"]["message"]["parts"][0]
        assert part == {
            "type": "attachment",
            "attachment_id": a["id"],
            "name": "dot.png",
            "content_type": "image/png",
            "size": len(png),
            "sha256": hashlib.sha256(png).hexdigest(),
            "width": 10,
            "height": 10,
            "url": a["url"],
            "thumbnail_url": a["thumbnail_url"],
        }, "the server's metadata replaces whatever the client claimed"
        mid = ack["message_id"]
        items = (await h.get(f"/sessions/{sid}/attachments")).json()["items"]
        assert items[0]["message_ids"] == [mid]

        assert await collect_garbage(server) == (1, 1), "only the never-sent PDF went"
        assert (await h.get(a["url"].removeprefix("/api/v1"))).status_code == 200

        r = await h.delete(f"/sessions/{sid}/messages/{mid}")
        assert r.status_code == 200
        blob_dir = Path(server.settings.effective_attachment_dir) / "acme"
        assert list(blob_dir.glob("*/*"))
        assert await collect_garbage(server) == (1, 2), "the image and its thumbnail"
        assert not list(blob_dir.glob("*/*"))
        assert (await h.get(a["url"].removeprefix("/api/v1"))).status_code == 404


async def test_deleting_a_session_frees_its_files(server: RunningServer) -> None:
    sid = await server.create_session()
    keep = await server.create_session()
    async with server.http() as h:
        a = (await upload_raw(h, sid, b"same bytes", "a.txt", "text/plain")).json()
        b = (await upload_raw(h, keep, b"same bytes", "b.txt", "text/plain")).json()
        assert a["sha256"] == b["sha256"], "one blob for both"
        await h.post(
            f"/sessions/{keep}/messages",
            json={"parts": [{"type": "attachment", "attachment_id": b["id"]}]},
        )
        assert (await h.delete(f"/sessions/{sid}")).status_code == 204
        assert await collect_garbage(server) == (0, 0), "the other session's file keeps the blob"
        r = await h.get(f"/attachments/{b['id']}")
        assert r.content == b"same bytes"
        assert (await h.get(f"/attachments/{a['id']}")).status_code == 404


# -- images reach providers that accept them -------------------------------------------------


@pytest.fixture
async def relay_server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[RunningServer, FakeLLM]]:
    async with FakeLLM() as llm:
        settings = settings_factory(
            database_url=database_url,
            relay_openai_base_url=llm.openai_url,
            relay_openai_api_key="sk-test-openai-0123456789abcdef",
            relay_anthropic_base_url=llm.anthropic_url,
            relay_anthropic_api_key="sk-ant-test-0123456789abcdef",
            relay_coalesce_ms=5.0,
        )
        async with start_server(settings) as running:
            yield running, llm


async def test_images_reach_providers_as_image_blocks_or_placeholders(
    relay_server: tuple[RunningServer, FakeLLM],
) -> None:
    server, llm = relay_server
    sid = await server.create_session()
    png = image_bytes("PNG", (12, 12))
    data64 = base64.b64encode(png).decode()
    assistants = {
        "chat": ("openai", "gpt-4o-mini"),
        "resp": ("openai_responses", "gpt-4.1"),
        "claude": ("anthropic", "claude-3-5-sonnet-latest"),
        "old": ("openai", "gpt-3.5-turbo"),
    }
    async with server.http() as h, server.client() as ws:
        for name, (provider, model) in assistants.items():
            await add_assistant(h, sid, name=name, provider=provider, model=model, trigger="manual")
        img = (await upload_raw(h, sid, png, "chart.png", "image/png")).json()
        doc = (await upload_raw(h, sid, PDF, "spec.pdf", "application/pdf")).json()
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={
                "text": "what is in the chart?",
                "parts": [
                    {"type": "attachment", "attachment_id": img["id"]},
                    {"type": "attachment", "attachment_id": doc["id"]},
                ],
            },
        )
        prompt = r.json()["message"]["id"]
        await ws.subscribe(sid)
        bodies: dict[str, Any] = {}
        for name in assistants:
            r = await h.post(f"/sessions/{sid}/assistants/{name}/ask", json={"message_id": prompt})
            assert r.status_code == 202, r.text
            stream = r.json()["stream_id"]
            await ws.wait_for(
                lambda f, stream=stream: (
                    f.get("event") == "message.created"
                    and f["data"]["message"]["metadata"].get("stream_id") == stream
                )
            )
            bodies[name] = llm.requests[-1].body

    pdf_line = f"[attachment: spec.pdf (application/pdf, {len(PDF)} bytes)]"
    chat_user = bodies["chat"]["messages"][-1]
    assert chat_user["content"] == [
        {"type": "text", "text": "alice: what is in the chart?\n" + pdf_line},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data64}},
    ]
    resp_user = bodies["resp"]["input"][-1]
    assert resp_user["content"] == [
        {"type": "input_text", "text": "alice: what is in the chart?\n" + pdf_line},
        {"type": "input_image", "image_url": "data:image/png;base64," + data64},
    ]
    claude_user = bodies["claude"]["messages"][-1]
    assert claude_user["content"][-1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": data64},
    }
    old_user = bodies["old"]["messages"][-1]
    assert old_user["content"] == (
        "alice: what is in the chart?\n"
        f"[image: chart.png (image/png, {len(png)} bytes)]\n" + pdf_line
    ), "a model without image input gets a placeholder"


async def test_upload_needs_write_access_and_an_active_session(server: RunningServer) -> None:
    sid = await server.create_session()
    async with server.http() as h, server.http("vic") as v:
        await v.get("/sessions")  # vic's user row exists from now on
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "vic", "role": "viewer"})
        assert r.status_code == 201, r.text
        r = await upload_raw(v, sid, PDF, "v.pdf", "application/pdf")
        assert error_code(r, 403) == "forbidden"
        a = (await upload_raw(h, sid, PDF, "a.pdf", "application/pdf")).json()
        assert (await v.get(f"/attachments/{a['id']}")).status_code == 200, "viewers may read"
        await h.post(f"/sessions/{sid}/archive")
        r = await upload_raw(h, sid, PDF, "b.pdf", "application/pdf")
        assert error_code(r, 409) == "session_archived"
        assert (await h.post(f"/sessions/{sid}/attachments", content=b"x")).status_code == 409
        r = await upload_raw(h, "not-a-session", PDF, "c.pdf", "application/pdf")
        assert error_code(r, 404) == "not_found"


async def test_editing_a_message_relinks_its_attachments(server: RunningServer) -> None:
    sid = await server.create_session()
    async with server.http() as h:
        a = (await upload_raw(h, sid, b"first", "a.txt", "text/plain")).json()
        b = (await upload_raw(h, sid, b"second", "b.txt", "text/plain")).json()
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"text": "x", "parts": [{"type": "attachment", "attachment_id": a["id"]}]},
        )
        mid = r.json()["message"]["id"]
        r = await h.patch(
            f"/sessions/{sid}/messages/{mid}",
            json={"parts": [{"type": "attachment", "attachment_id": b["id"]}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["message"]["parts"][0]["name"] == "b.txt"
        items = {
            x["name"]: x for x in (await h.get(f"/sessions/{sid}/attachments")).json()["items"]
        }
        assert items["a.txt"]["message_ids"] == []
        assert items["b.txt"]["message_ids"] == [mid]
        assert await collect_garbage(server) == (1, 1), "a.txt is no longer referenced"
        assert (await h.get(f"/attachments/{b['id']}")).content == b"second"


async def test_a_large_image_reaches_the_model_scaled_down(
    relay_server: tuple[RunningServer, FakeLLM],
) -> None:
    server, llm = relay_server
    sid = await server.create_session()
    big = image_bytes("PNG", (2000, 1000))
    async with server.http() as h, server.client() as ws:
        await add_assistant(h, sid, name="eye", provider="openai", model="gpt-4o", trigger="manual")
        img = (await upload_raw(h, sid, big, "wide.png", "image/png")).json()
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"parts": [{"type": "attachment", "attachment_id": img["id"]}]},
        )
        await ws.subscribe(sid)
        r = await h.post(
            f"/sessions/{sid}/assistants/eye/ask", json={"message_id": r.json()["message"]["id"]}
        )
        stream = r.json()["stream_id"]
        await ws.wait_for(
            lambda f: (
                f.get("event") == "message.created"
                and f["data"]["message"]["metadata"].get("stream_id") == stream
            )
        )
    content = llm.requests[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "alice:"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (1568, 784)
