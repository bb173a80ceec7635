"""The audit trail end to end, on SQLite and PostgreSQL: what is recorded, who may read it,
the hash chain (``parley audit verify``), export, and appends racing from two processes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from click.testing import CliRunner
from sqlalchemy import text

from parley.cli import main
from parley.governance import audit
from parley.governance.auth import Principal, TenantRole
from parley.storage.database import Database
from parley.storage.migrate import upgrade
from tests.support import DEFAULT_TIMEOUT, RunningServer


def admin(server: RunningServer) -> httpx.AsyncClient:
    token = server.token("root", tenant_role=TenantRole.ADMIN)
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=DEFAULT_TIMEOUT,
    )


async def entries(h: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await h.get("/audit", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def until(h: httpx.AsyncClient, predicate: Any, **params: Any) -> list[dict[str, Any]]:
    """The entries once ``predicate`` holds for them (the recorder flushes every 0.1 s)."""
    for _ in range(200):
        items = await entries(h, **params)
        if predicate(items):
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"audit entries never matched: {items}")


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


async def test_reads_writes_and_denials_are_recorded(server: RunningServer) -> None:
    async with server.http("alice") as h:
        sid = (await h.post("/sessions", json={"title": "t", "visibility": "private"})).json()["id"]
        await h.post(f"/sessions/{sid}/messages", json={"text": "secret"})
        await h.get(f"/sessions/{sid}/messages")
        await h.post(f"/sessions/{sid}/participants", json={"user_id": "alice", "role": "owner"})
    async with server.http("bob") as h:
        assert (await h.get(f"/sessions/{sid}/messages")).status_code == 404
    async with server.client("alice") as ws:
        await ws.subscribe(sid, since_seq=0)
        await ws.say(sid, "over the socket")
    async with server.client("bob") as ws:
        assert (await ws.request({"type": "subscribe", "session": sid}))["code"] == "not_found"

    def complete(items: list[dict[str, Any]]) -> bool:
        return {("bob", "session.subscribe"), ("alice", "message.create")} <= {
            (e["actor"], e["action"]) for e in items
        } and sum(e["action"] == "message.create" for e in items) == 2

    async with admin(server) as h:
        everything = await until(h, complete)
        # Reading the audit trail is audited too.
        reads = await until(h, lambda found: bool(found), actor="root")
        assert {e["action"] for e in reads} == {"audit.read"}
        items = [e for e in everything if e["actor"] != "root"]
        seen = sorted((e["actor"], e["action"], e["result"], e["code"] or "") for e in items)
        assert seen == sorted(
            [
                ("alice", "session.create", "ok", ""),
                ("alice", "message.create", "ok", ""),
                ("alice", "message.list", "ok", ""),
                ("alice", "participant.grant", "ok", ""),
                ("bob", "message.list", "denied", "not_found"),
                ("alice", "session.subscribe", "ok", ""),
                ("alice", "message.create", "ok", ""),
                ("bob", "session.subscribe", "denied", "not_found"),
            ]
        )
        for e in items:
            assert e["client"] == "127.0.0.1"
            assert e["tenant"] == "acme"
            assert e["target_type"] == "session"
        assert {e["target_id"] for e in items} == {sid}
        assert sorted(e["seq"] for e in everything) == list(range(1, len(everything) + 1))
        await until(h, lambda found: len(found) > len(everything))
        # Filters and paging.
        bobs = await entries(h, actor="bob")
        assert sorted(e["action"] for e in bobs) == ["message.list", "session.subscribe"]
        assert len(await entries(h, action="message.create", target=sid)) == 2
        page = await h.get("/audit", params={"limit": 3})
        first = page.json()["items"]
        rest = await entries(h, cursor=page.json()["next_cursor"], limit=1000)
        seqs = [e["seq"] for e in first + rest]
        assert len(first) == 3
        assert seqs == list(range(seqs[0], 0, -1))
        r = await h.get("/audit", params={"since": "not a time"})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
        # Export: JSON Lines, oldest first, every entry.
        r = await h.get("/audit/export")
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
        assert lines[0]["prev_hash"] == "0" * 64
    async with server.http("alice") as h:  # only tenant admins read the audit trail
        r = await h.get("/audit")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")


async def test_verify_finds_the_first_tampered_entry(server: RunningServer) -> None:
    url = server.settings.effective_database_url
    async with server.http("alice") as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        for i in range(3):
            await h.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
    async with admin(server) as h:
        await until(h, lambda items: len(items) >= 4)
    await server.app.state.audit.flush()

    code, out = await asyncio.to_thread(
        cli, "audit", "export", "--tenant", "acme", "--database-url", url
    )
    assert code == 0, out
    seqs = [orjson.loads(x)["seq"] for x in out.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 4
    code, out = await asyncio.to_thread(cli, "audit", "verify", "--database-url", url)
    assert code == 0, out
    assert "tenant acme: " in out
    assert out.strip().endswith("entries, chain intact")

    db: Database = server.app.state.db
    await db.write(
        lambda s: s.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = 'acme' AND seq = 3")
        )
    )
    code, out = await asyncio.to_thread(
        cli, "audit", "verify", "--tenant", "acme", "--database-url", url
    )
    assert code == 1, out
    assert "BROKEN at entry 3: hash does not match the entry" in out
    await db.write(
        lambda s: s.execute(text("DELETE FROM audit_log WHERE tenant_id = 'acme' AND seq = 2"))
    )
    checked, broken = await audit.verify(db, "acme")
    assert broken is not None
    assert (checked, broken.seq, broken.problem) == (1, 2, "entry 2 is missing")


async def test_appenders_in_two_processes_extend_one_chain(database_url: str) -> None:
    """Two databases handles and recorders (two processes' worth) append to one tenant's chain
    at the same time: no seq is taken twice, and the chain verifies."""
    await asyncio.to_thread(upgrade, database_url)
    dbs = [Database(database_url), Database(database_url)]
    recorders = [audit.AuditRecorder(db, interval=0.01) for db in dbs]
    p = Principal("acme", "alice", "Alice", "human")  # type: ignore[arg-type]
    try:

        async def burst(recorder: audit.AuditRecorder, n: int) -> None:
            for i in range(40):
                await recorder.record(p, "message.create", "session", f"s{n}", details={"i": i})
                if i % 5 == 4:
                    await recorder.flush()

        await asyncio.gather(*(burst(r, n) for n, r in enumerate(recorders)))
        for recorder in recorders:
            await recorder.flush()
        checked, broken = await audit.verify(dbs[0], "acme")
        assert broken is None
        assert checked == 80
    finally:
        for db in dbs:
            await db.close()
