"""Encryption at rest end to end: what the database holds is sealed; REST, replay, the relay
context and documents read plaintext; `parley keys rotate` re-wraps and re-encrypts."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.crypto.columns import JSON_MARK, TEXT_MARK
from parley.governance.crypto.envelope import key_version
from parley.governance.scoping import all_tenants
from parley.storage import models as m
from tests.fakes.relay_client import Watcher, add_assistant, ask
from tests.support import RunningServer, start_server
from tests.ysupport import yjs_client

MARK = "ultramarine-content"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def raw_rows(server: RunningServer) -> dict[str, list[Any]]:
    """Rows as stored, read with plain column selects (which no decryption hook sees)."""

    def read(s: Session) -> dict[str, list[Any]]:
        return {
            "text": list(s.scalars(select(m.Message.text)).all()),
            "parts": list(s.scalars(select(m.Message.parts)).all()),
            "events": list(s.scalars(select(m.Event.data)).all()),
            "doc": [bytes(b) for b in s.scalars(select(m.DocUpdate.data)).all()]
            + [bytes(b) for b in s.scalars(select(m.DocSnapshot.state)).all()],
            "keys": list(s.execute(select(m.TenantKey.tenant_id, m.TenantKey.version)).all()),
        }

    rows: dict[str, list[Any]] = await server.app.state.db.read(
        all_tenants("the test inspects every stored row", read)
    )
    return rows


def versions(rows: dict[str, list[Any]]) -> set[int | None]:
    out: set[int | None] = set()
    for value in rows["text"]:
        if value:
            out.add(key_version(base64.b64decode(value[len(TEXT_MARK) :])))
    for value in rows["events"]:
        out.add(key_version(base64.b64decode(value[JSON_MARK])))
    return out


async def cli(settings: Settings, *args: str, **env: str) -> tuple[int, str]:
    full = {
        **os.environ,
        "PARLEY_DATABASE_URL": settings.effective_database_url,
        "PARLEY_DATA_DIR": str(settings.data_dir),
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", *args,
        env=full, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def write_everything(server: RunningServer) -> str:
    """Messages (REST and socket, with parts and an edit), an answer and a document."""
    sid = await server.create_session("alice", title="public title")
    async with server.http("alice") as h:
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"text": f"{MARK} one", "parts": [{"type": "note", "body": MARK}]},
        )
        mid = r.json()["message"]["id"]
        await h.patch(f"/sessions/{sid}/messages/{mid}", json={"text": f"{MARK} edited"})
        await add_assistant(
            h, sid, name="echo", provider="scripted", params={"reply": "echo: {prompt}"}
        )
    async with server.client("alice") as ws:
        watcher = Watcher(ws, sid)
        await watcher.subscribe()
        answer = await ask(ws, sid, "echo", text=f"{MARK} asked")
        await watcher.finished(answer["stream_id"])
    async with yjs_client(server, sid, "alice") as doc:
        doc.notes.insert(0, f"{MARK} in the notes")
        await doc.flushed()
    return sid


async def test_content_is_sealed_at_rest_and_plain_on_every_read_path(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=database_url, master_key=new_key(), doc_idle_seconds=0)
    async with start_server(settings) as server:
        sid = await write_everything(server)
        async with server.http("alice") as h:
            items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
            assert items[0]["text"] == f"{MARK} edited"
            assert items[0]["parts"] == [{"type": "note", "body": MARK}]
            # The assistant saw the decrypted prompt (the relay context reads through the hooks).
            assert items[-1]["text"].endswith(f"echo: {MARK} asked")
            events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
            assert f"{MARK} one" in str(events)  # the first version, as replay serves it
            assert (await h.get(f"/sessions/{sid}")).json()["title"] == "public title"
        async with server.client("bob") as ws:  # replay over the socket
            async with server.http("alice") as h:
                await h.post(
                    f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "viewer"}
                )
            await ws.subscribe(sid, since_seq=0)
            assert MARK in str(ws.backlog)
    async with start_server(settings) as server:  # a cold process reads the stored document
        async with server.http("alice") as h:
            notes = (await h.get(f"/sessions/{sid}/document")).json()["notes"]
            assert notes.startswith(f"{MARK} in the notes")
        rows = await raw_rows(server)
    stored = str(rows["text"]) + str(rows["parts"]) + str(rows["events"])
    assert MARK not in stored
    assert all(t.startswith(TEXT_MARK) for t in rows["text"] if t)
    assert all(set(e) == {JSON_MARK} for e in rows["events"])
    assert rows["doc"]
    assert all(key_version(blob) == 1 and MARK.encode() not in blob for blob in rows["doc"])
    assert rows["keys"] == [("acme", 1)]


async def test_plaintext_rows_stay_readable_and_keys_rotate(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    plain = settings_factory(database_url=database_url, doc_idle_seconds=0)
    async with start_server(plain) as server:  # encryption off: rows written in plaintext
        sid = await write_everything(server)
        assert MARK in str((await raw_rows(server))["text"])
    first, second = new_key(), new_key()
    encrypted = settings_factory(database_url=database_url, master_key=first, doc_idle_seconds=0)
    # Turned on: old rows read as they are.
    async with start_server(encrypted) as server, server.http("alice") as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": f"{MARK} sealed"})
        assert r.status_code == 201
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert [i["text"] for i in items][-1] == f"{MARK} sealed"
        assert items[0]["text"] == f"{MARK} edited"

    # Rotate the master key and the data keys; everything ends sealed under version 2.
    code, out = await cli(
        encrypted, "keys", "rotate", "--new-master-key", second, "--data-keys",
        PARLEY_MASTER_KEY=first,
    )  # fmt: skip
    assert code == 0, out
    assert "re-wrapped 1 data keys" in out
    assert "[1/1] tenant acme: key version 2" in out
    assert out.strip().splitlines()[-1].startswith("done: 1 tenants, 4 messages")

    rotated = settings_factory(database_url=database_url, master_key=second, doc_idle_seconds=0)
    async with start_server(rotated) as server:
        rows = await raw_rows(server)
        assert MARK not in str(rows["text"]) + str(rows["events"])
        assert versions(rows) == {2}
        assert all(key_version(blob) == 2 for blob in rows["doc"])
        async with server.http("alice") as h:
            items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
            assert items[0]["text"] == f"{MARK} edited"
            notes = (await h.get(f"/sessions/{sid}/document")).json()["notes"]
            assert notes.startswith(MARK)
    # The old master key opens nothing any more: `parley serve` with it refuses to start.
    code, out = await cli(rotated, "serve", "--port", "0", PARLEY_MASTER_KEY=first)
    assert code != 0
    assert "wrapped by master key" in out


async def test_imported_messages_are_sealed_too(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """Imports write in bulk, past the ORM hooks; their rows must be sealed all the same."""
    chat = "12/31/23, 9:41 PM - Ann: " + MARK + " imported\n12/31/23, 9:42 PM - Bo: plain reply\n"
    settings = settings_factory(database_url=database_url, master_key=new_key())
    async with start_server(settings) as server, server.http("alice") as h:
        r = await h.post(
            "/imports",
            params={"format": "whatsapp", "filename": "chat.txt"},
            content=chat.encode(),
        )
        assert r.status_code == 200, r.text
        sid = r.json()["sessions"][0]["id"]
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert [i["text"] for i in items] == [f"{MARK} imported", "plain reply"]
        rows = await raw_rows(server)
        assert MARK not in str(rows["text"]) + str(rows["events"])
        assert all(t.startswith(TEXT_MARK) for t in rows["text"])
        assert all(JSON_MARK in e for e in rows["events"])


async def test_sealed_message_text_is_not_indexed_but_titles_are(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """Ciphertext in the full-text index would match nothing and leak length: it is left out."""
    settings = settings_factory(database_url=database_url, master_key=new_key())
    async with start_server(settings) as server, server.http("alice") as h:
        sid = await server.create_session("alice", title="cobalt planning")
        r = await h.post(f"/sessions/{sid}/messages", json={"text": f"{MARK} secret plans"})
        assert r.status_code == 201, r.text
        found = (await h.get("/search", params={"q": "secret plans"})).json()["items"]
        assert found == []
        titled = (await h.get("/search", params={"q": "cobalt"})).json()["items"]
        assert [(i["kind"], i["session"]["id"]) for i in titled] == [("title", sid)]
