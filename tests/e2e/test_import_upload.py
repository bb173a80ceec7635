"""``POST /api/v1/imports``: raw and multipart uploads, the report, the size limit, who may
import what; real servers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from parley.config import Settings
from parley.governance.auth import TenantRole
from tests.data_support import DATA, sessions_of, zip_folder
from tests.support import RunningServer, start_server


async def test_raw_and_multipart_uploads_report_and_reimport_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    export = zip_folder(DATA / "slack", tmp_path / "slack.zip").read_bytes()
    async with server.http("alice") as h:
        r = await h.post(
            "/imports",
            params={"format": "slack", "filename": "slack.zip"},
            content=export,
            headers={"Content-Type": "application/zip"},
        )
        assert r.status_code == 207, r.text  # one bad record
        report = r.json()
        assert report["sessions_created"] == 2
        assert report["messages_added"] == 6
        assert report["skipped_notes"] == 2
        assert report["errors"] == [
            {
                "where": "slack.zip!general/2023-12-31.json:18",
                "problem": "a message needs a numeric 'ts'",
            }
        ]
        assert {s["title"] for s in report["sessions"]} == {"#general", "#random"}
        metrics = (await h.get(server.base_url + "/metrics")).text
        assert 'parley_imported_messages_total{format="slack"}' in metrics
        assert 'parley_import_errors_total{format="slack"}' in metrics
        # The same file as a browser form sends it: nothing new.
        r = await h.post(
            "/imports", params={"format": "slack"}, files={"file": ("slack.zip", export)}
        )
        assert r.status_code == 207
        assert (r.json()["sessions_created"], r.json()["messages_added"]) == (0, 0)
        assert r.json()["messages_present"] == 6
        text = (DATA / "whatsapp" / "iso-chat.txt").read_bytes()
        r = await h.post(
            "/imports",
            params={"format": "whatsapp", "dry_run": "true"},
            files={"file": ("iso-chat.txt", text, "text/plain")},
        )
        assert r.status_code == 200, r.text
        assert r.json()["dry_run"] is True
        assert r.json()["messages_added"] == 3
        assert "iso-chat" not in await sessions_of(server, "acme")
        r = await h.post(
            "/imports", params={"format": "whatsapp"}, files={"file": ("iso-chat.txt", text)}
        )
        assert r.status_code == 200
        assert r.json()["sessions"][0]["title"] == "iso-chat"
    # Another member may not add to alice's imported sessions; the report says so.
    async with server.http("bob") as h:
        r = await h.post(
            "/imports",
            params={"format": "whatsapp"},
            files={"file": ("iso-chat.txt", text + b"2024-01-01 10:00 - Rui: ok\n")},
        )
        assert r.status_code == 207
        (error,) = r.json()["errors"]
        assert error["where"] == "iso-chat.txt"
        assert "may not write" in error["problem"]


async def test_bad_uploads_are_refused_precisely(server: RunningServer) -> None:
    async with server.http("alice") as h:
        r = await h.post("/imports", params={"format": "excel"}, content=b"x")
        assert r.status_code == 422
        assert "format must be one of" in r.json()["error"]["message"]
        r = await h.post("/imports", params={"format": "mbox"}, content=b"")
        assert r.status_code == 422
        assert r.json()["error"]["message"] == "the upload is empty"
        r = await h.post("/imports", params={"format": "parley-json"}, content=b"{}")
        assert r.status_code == 403
        r = await h.post("/imports", params={"format": "discord"}, content=b"[1, 2")
        assert r.status_code == 207
        assert r.json()["errors"][0]["where"] == "upload.discord"
        assert r.json()["errors"][0]["problem"].startswith("not valid JSON")
        admin = server.token("ann", "acme", tenant_role=TenantRole.ADMIN)
        r = await h.post(
            "/imports",
            params={"format": "parley-json"},
            content=b'{"format": "something else"}',
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 207
        assert "not a Parley session export" in r.json()["errors"][0]["problem"]
    async with server.http("mallory", "evil") as h:
        r = await h.post(
            "/imports", params={"format": "mbox"}, content=(DATA / "mail.mbox").read_bytes()
        )
        assert r.status_code == 207
    assert await sessions_of(server, "acme") == {}


async def test_uploads_over_the_limit_get_413(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=sqlite_url, import_max_bytes=2048)
    async with start_server(settings) as server, server.http("alice") as h:
        big = (DATA / "mail.mbox").read_bytes() * 2
        r = await h.post("/imports", params={"format": "mbox"}, content=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "upload_too_large"

        async def chunks():  # no Content-Length: counted while read
            for _ in range(5):
                yield b"x" * 1000

        r = await h.post("/imports", params={"format": "mbox"}, content=chunks())
        assert r.status_code == 413
        small = (
            b"From a@b Mon Jan  8 09:15:00 2024\nFrom: a@b.c\n"
            b"Date: Mon, 08 Jan 2024 09:15:00 +0000\nSubject: hi\n\nhello\n"
        )
        r = await h.post("/imports", params={"format": "mbox"}, content=small)
        assert r.status_code == 200, r.text


async def test_imported_messages_reach_subscribers_and_deleted_sessions_come_back(
    server: RunningServer,
) -> None:
    chat = (DATA / "whatsapp" / "iso-chat.txt").read_bytes()
    async with server.http("alice") as h:
        r = await h.post(
            "/imports", params={"format": "whatsapp", "filename": "iso-chat.txt"}, content=chat
        )
        sid = r.json()["sessions"][0]["id"]
        async with server.client("alice") as ws:
            ack = await ws.subscribe(sid)
            grown = chat + b"2023-12-31 21:50 - Ana: Perfeito\n"
            r = await h.post(
                "/imports", params={"format": "whatsapp", "filename": "iso-chat.txt"}, content=grown
            )
            assert r.json()["messages_added"] == 1
            (event,) = await ws.events(1)
            assert event["seq"] == ack["seq"] + 1
            assert event["event"] == "message.created"
            assert event["data"]["message"]["text"] == "Perfeito"
            assert event["data"]["message"]["created_at"] == "2023-12-31T21:50:00.000Z"
        assert (await h.delete(f"/sessions/{sid}")).status_code == 204
        r = await h.post(
            "/imports", params={"format": "whatsapp", "filename": "iso-chat.txt"}, content=grown
        )
        assert r.json()["sessions_created"] == 1
        assert r.json()["messages_added"] == 4
        assert r.json()["sessions"][0]["id"] != sid


async def test_nul_characters_anywhere_are_record_errors_not_crashes(server: RunningServer) -> None:
    mail = (
        b"From a@b Mon Jan  8 09:15:00 2024\nFrom: A\x00B <a@b.c>\n"
        b"Date: Mon, 08 Jan 2024 09:15:00 +0000\nMessage-ID: <x\x00y@b.c>\nSubject: hi\n\nhello\n"
    )
    async with server.http("alice") as h:
        r = await h.post("/imports", params={"format": "mbox"}, content=mail)
        assert r.status_code == 207, r.text
        assert "NUL character" in r.json()["errors"][0]["problem"]
        chat = b"2024-01-01 10:00 - Ann: hi\n"
        r = await h.post(
            "/imports", params={"format": "whatsapp", "filename": "a\x00b.txt"}, content=chat
        )
        assert r.status_code == 207, r.text
        assert "NUL character" in r.json()["errors"][0]["problem"]
        assert (await h.get("/templates/a%00b")).status_code == 404
    assert await sessions_of(server, "acme") == {}
