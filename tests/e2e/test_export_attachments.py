"""Attachments in exports, end to end on SQLite and PostgreSQL: the tenant archive and the
session zip carry each file once, importing them into another tenant (over REST and with the
CLI) restores the sessions and the files byte for byte, idempotently; a tampered file and an
oversized (zip bomb) entry are refused by name before anything is written."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from parley.config import Settings
from parley.governance.auth import TenantRole
from tests.data_support import cli
from tests.support import RunningServer, start_server

LIMIT = 256 * 1024
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n" + b"% padding\n" * 400


@pytest.fixture
async def server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """A small per-file limit, so an oversized archive entry is cheap to build."""
    settings = settings_factory(database_url=database_url, attachment_max_bytes=LIMIT)
    async with start_server(settings) as running:
        yield running


def png(colour: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def admin(server: RunningServer, tenant: str) -> httpx.AsyncClient:
    token = server.token("alice", tenant, tenant_role=TenantRole.ADMIN)
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


async def upload(h: httpx.AsyncClient, sid: str, data: bytes, name: str, ctype: str) -> str:
    r = await h.post(
        f"/sessions/{sid}/attachments",
        params={"filename": name},
        content=data,
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 201, r.text
    aid: str = r.json()["id"]
    return aid


async def post(h: httpx.AsyncClient, sid: str, text: str, *attachments: str) -> None:
    parts = [{"type": "attachment", "attachment_id": a} for a in attachments]
    r = await h.post(f"/sessions/{sid}/messages", json={"text": text, "parts": parts})
    assert r.status_code == 201, r.text


IMAGE = png("red")
OTHER = png("blue", (30, 30))


async def sessions_with_files(server: RunningServer) -> dict[str, str]:
    """Two sessions of acme: an image and a PDF on messages, the image again in the second
    session (the same content: one file in the archive), and an upload no message uses."""
    async with admin(server, "acme") as h:
        first = (await h.post("/sessions", json={"title": "Design review"})).json()["id"]
        second = (await h.post("/sessions", json={"title": "Follow-up"})).json()["id"]
        image = await upload(h, first, IMAGE, "mock-up.png", "image/png")
        pdf = await upload(h, first, PDF, "spec.pdf", "application/pdf")
        await post(h, first, "the mock-up and the spec", image, pdf)
        await post(h, first, "the mock-up again", image)
        again = await upload(h, second, IMAGE, "copy.png", "image/png")
        await post(h, second, "same picture", again)
        await upload(h, second, OTHER, "never-sent.png", "image/png")
    return {"first": first, "second": second}


async def files_of(server: RunningServer, tenant: str) -> dict[str, dict[str, Any]]:
    """Every session of the tenant by title: messages' texts and their files' bytes."""
    out: dict[str, dict[str, Any]] = {}
    async with admin(server, tenant) as h:
        for item in (await h.get("/sessions")).json()["items"]:
            r = await h.get(f"/sessions/{item['id']}/messages")
            assert r.status_code == 200, r.text
            messages = []
            for msg in r.json()["items"]:
                files = []
                for part in msg["parts"] or []:
                    got = await h.get(part["url"].removeprefix("/api/v1"))
                    assert got.status_code == 200, (part, got.text)
                    thumb = None
                    if part["thumbnail_url"]:
                        t = await h.get(part["thumbnail_url"].removeprefix("/api/v1"))
                        assert t.status_code == 200
                        thumb = t.headers["content-type"]
                    files.append((part["name"], part["content_type"], got.content, thumb))
                messages.append((msg["text"], files))
            listed = (await h.get(f"/sessions/{item['id']}/attachments")).json()
            out[item["title"]] = {"messages": messages, "attachments": len(listed["items"])}
    return out


async def test_tenant_archive_carries_files_once_and_imports_them_back_over_rest(
    server: RunningServer,
) -> None:
    await sessions_with_files(server)
    async with admin(server, "acme") as h:
        r = await h.get("/export")
        assert r.status_code == 200, r.text
    data = r.content
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    image_sha = hashlib.sha256(IMAGE).hexdigest()
    pdf_sha = hashlib.sha256(PDF).hexdigest()
    assert sorted(n for n in names if n.startswith("files/")) == sorted(
        [f"files/{image_sha}", f"files/{pdf_sha}"]
    ), "each content once; the unsent upload is not exported"
    assert archive.read(f"files/{image_sha}") == IMAGE
    assert archive.read(f"files/{pdf_sha}") == PDF
    manifest = orjson.loads(archive.read("manifest.json"))
    assert sorted((f["sha256"], f["size"]) for f in manifest["files"]) == sorted(
        [(image_sha, len(IMAGE)), (pdf_sha, len(PDF))]
    )
    assert manifest["missing_files"] == []
    exports = {
        e["session"]["title"]: e
        for e in (orjson.loads(archive.read(n)) for n in names if n.startswith("sessions/"))
    }
    review = exports["Design review"]
    by_name = {a["name"]: a for a in review["attachments"]}
    assert set(by_name) == {"mock-up.png", "spec.pdf"}
    assert by_name["mock-up.png"]["file"] == f"files/{image_sha}"
    assert len(by_name["mock-up.png"]["message_ids"]) == 2
    assert len(by_name["spec.pdf"]["message_ids"]) == 1
    assert [a["name"] for a in exports["Follow-up"]["attachments"]] == ["copy.png"]

    async with admin(server, "restored") as h:
        r = await h.post(
            "/imports", params={"format": "parley-json", "filename": "acme.zip"}, content=data
        )
        assert r.status_code == 200, r.text
        report = r.json()
        assert (report["sessions_created"], report["files_restored"]) == (2, 2)
    original = await files_of(server, "acme")
    restored = await files_of(server, "restored")
    original["Follow-up"]["attachments"] -= 1  # the upload no message used stays behind
    assert restored == original
    first_file = restored["Design review"]["messages"][0][1][0]
    assert first_file[:3] == ("mock-up.png", "image/png", IMAGE)
    assert first_file[3] is not None, "the thumbnail was made again"

    # Importing the same archive again adds nothing: no session, message or attachment.
    async with admin(server, "restored") as h:
        r = await h.post("/imports", params={"format": "parley-json"}, content=data)
        assert r.status_code == 200, r.text
        again = r.json()
        assert (again["sessions_created"], again["messages_added"]) == (0, 0)
    assert await files_of(server, "restored") == restored


async def test_session_zip_and_the_cli_restore_files_into_another_tenant(
    server: RunningServer, tmp_path: Path
) -> None:
    sids = await sessions_with_files(server)
    async with admin(server, "acme") as h:
        r = await h.get(f"/sessions/{sids['first']}/export", params={"format": "zip"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        r404 = await h.get(
            "/sessions/00000000-0000-0000-0000-000000000000/export", params={"format": "zip"}
        )
        assert r404.status_code == 404
    one = zipfile.ZipFile(io.BytesIO(r.content))
    assert orjson.loads(one.read("manifest.json"))["format"] == "parley.session-archive"
    assert len([n for n in one.namelist() if n.startswith("files/")]) == 2
    async with admin(server, "copy") as h:
        r = await h.post("/imports", params={"format": "parley-json"}, content=r.content)
        assert r.status_code == 200, r.text
    copy = await files_of(server, "copy")
    assert copy == {"Design review": (await files_of(server, "acme"))["Design review"]}

    # The CLI: a tenant archive out of one tenant, into another, twice.
    out = tmp_path / "acme.zip"
    result = await cli(server, "export", "tenant", "--tenant", "acme", "-o", str(out))
    assert result.exit_code == 0, result.output
    args = ["import", "parley-json", str(out), "--tenant", "cli-copy", "--as-user", "alice"]
    result = await cli(server, *args)
    assert result.exit_code == 0, result.output
    assert "2 new session(s)" in result.output
    assert "2 attachment file(s) restored" in result.output
    result = await cli(server, *args)
    assert result.exit_code == 0, result.output
    assert "0 new session(s)" in result.output
    assert "0 message(s) added" in result.output
    original = await files_of(server, "acme")
    original["Follow-up"]["attachments"] -= 1
    assert await files_of(server, "cli-copy") == original

    # The CLI's session zip, too.
    one_zip = tmp_path / "one.zip"
    result = await cli(
        server, "export", "session", sids["second"], "--tenant", "acme", "--format", "zip",
        "-o", str(one_zip),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = zipfile.ZipFile(one_zip).namelist()
    assert f"files/{hashlib.sha256(IMAGE).hexdigest()}" in names


def rewritten(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The archive with some entries' bytes replaced (names kept)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
    return out.getvalue()


async def test_a_tampered_file_refuses_the_import_by_name_and_writes_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    await sessions_with_files(server)
    async with admin(server, "acme") as h:
        data = (await h.get("/export")).content
    pdf_entry = f"files/{hashlib.sha256(PDF).hexdigest()}"
    tampered = rewritten(data, {pdf_entry: PDF.replace(b"trailer", b"TRAILER")})
    async with admin(server, "victim") as h:
        r = await h.post(
            "/imports", params={"format": "parley-json", "filename": "acme.zip"}, content=tampered
        )
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(f"acme.zip!{pdf_entry}: the content's SHA-256 is ")
        assert "altered or damaged" in error["message"]
        assert (await h.get("/sessions")).json()["items"] == [], "nothing was imported"
    path = tmp_path / "tampered.zip"
    path.write_bytes(tampered)
    result = await cli(server, "import", "parley-json", str(path), "--tenant", "victim")
    assert result.exit_code == 1
    assert f"tampered.zip!{pdf_entry}: the content's SHA-256 is" in result.output
    async with admin(server, "victim") as h:
        assert (await h.get("/sessions")).json()["items"] == []


async def test_an_oversized_or_bomb_entry_is_refused_before_it_is_read(
    server: RunningServer,
) -> None:
    sids = await sessions_with_files(server)
    async with admin(server, "acme") as h:
        data = (await h.get(f"/sessions/{sids['first']}/export", params={"format": "zip"})).content
    # An entry that unpacks to 8 MiB of zeros from a few KiB, under the name of the PDF.
    bomb = b"\0" * (8 * 1024 * 1024)
    pdf_entry = f"files/{hashlib.sha256(PDF).hexdigest()}"
    crafted = rewritten(data, {pdf_entry: bomb})
    assert len(crafted) < 100_000
    async with admin(server, "victim") as h:
        r = await h.post(
            "/imports", params={"format": "parley-json", "filename": "bomb.zip"}, content=crafted
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"] == (
            f"bomb.zip!{pdf_entry}: the file is {len(bomb)} bytes; the limit per attachment "
            f"is {LIMIT}"
        )
        assert (await h.get("/sessions")).json()["items"] == []
