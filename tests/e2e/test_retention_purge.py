"""Retention (tenant and session policies, `parley retention run`) and the purge of one user
(REST and `parley purge-user`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.scoping import all_tenants
from parley.storage import models as m
from tests.e2e.gov_helpers import admin
from tests.support import RunningServer, start_server

INSPECTS = "the test inspects and ages rows directly"

MARK = "zebra-secret-content"


async def cli(server: RunningServer, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": server.settings.effective_database_url,
        "PARLEY_DATA_DIR": str(server.settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")


async def test_retention_archives_then_purges_idle_sessions(server: RunningServer) -> None:
    keep = await server.create_session("alice", title="keep")
    short = await server.create_session("alice", title="short")
    async with admin(server) as root:
        r = await root.put(
            "/tenant/retention", json={"archive_after_days": 30, "purge_after_days": 90}
        )
        assert r.status_code == 200, r.text
        assert (await root.get("/tenant/retention")).json() == {
            "archive_after_days": 30,
            "purge_after_days": 90,
        }
        bad = await root.put("/tenant/retention", json={"archive_after_days": 0})
        assert bad.status_code == 422
    async with server.http("alice") as h:
        r = await h.put(f"/sessions/{short}/retention", json={"purge_after_days": 5})
        assert r.status_code == 200, r.text
        view = (await h.get(f"/sessions/{short}/retention")).json()
        assert view["session"] == {"archive_after_days": None, "purge_after_days": 5}
        assert view["tenant"]["purge_after_days"] == 90
        await h.post(f"/sessions/{keep}/messages", json={"text": "hello"})
    async with server.http("bob") as bob:  # not an owner of the session
        r = await bob.put(f"/sessions/{short}/retention", json={"purge_after_days": 1})
        assert r.status_code == 403
    other = await server.create_session("zed", "globex")  # globex has no retention

    code, out = await cli(server, "retention", "run", "--as-of", in_days(10))
    assert code == 0, out
    assert "tenant acme: archived 0, purged 1" in out
    async with server.http("alice") as h:
        assert (await h.get(f"/sessions/{short}")).status_code == 404
        assert (await h.get(f"/sessions/{keep}")).json()["status"] == "active"

    code, out = await cli(server, "retention", "run", "--as-of", in_days(31))
    assert code == 0, out
    assert "archived 1, purged 0" in out
    async with server.http("alice") as h:
        session = (await h.get(f"/sessions/{keep}")).json()
        assert session["status"] == "archived"
        events = (await h.get(f"/sessions/{keep}/events")).json()["items"]
        assert events[-1]["event"] == "session.updated"
        assert events[-1]["actor"] == "parley.retention"

    code, out = await cli(server, "retention", "run", "--as-of", in_days(91))
    assert code == 0, out
    assert "done: 0 archived, 1 purged" in out
    async with server.http("alice") as h:
        assert (await h.get(f"/sessions/{keep}")).status_code == 404
    async with server.http("zed", "globex") as z:
        assert (await z.get(f"/sessions/{other}")).status_code == 200

    def leftovers(s: Session) -> list[Any]:
        return list(
            s.scalars(select(m.Message.id).where(m.Message.session_id.in_([keep, short]))).all()
        ) + list(s.scalars(select(m.Event.seq).where(m.Event.session_id.in_([keep, short]))).all())

    assert await server.app.state.db.read(all_tenants(INSPECTS, leftovers)) == []


async def everything_stored(server: RunningServer) -> str:
    """Every message and event row, as text: what a purge must leave no trace in."""

    def read(s: Session) -> str:
        rows: list[Any] = []
        for table in (m.Message, m.Event, m.Participant, m.User, m.ApiKey):
            for row in s.scalars(select(table)).all():
                rows.append({c: getattr(row, c) for c in row.__mapper__.attrs.keys()})  # noqa: SIM118
        return str(rows)

    text: str = await server.app.state.db.read(all_tenants(INSPECTS, read))
    return text


async def seed(server: RunningServer) -> tuple[str, str]:
    """alice and bob talk; alice edits a message; an admin-made key for a bot named alice2."""
    sid = await server.create_session("bob", title="shared")
    async with server.http("bob") as bob:
        await bob.post(f"/sessions/{sid}/participants", json={"user_id": "alice", "role": "editor"})
    async with server.http("alice") as h, server.http("bob") as bob:
        first = (await h.post(f"/sessions/{sid}/messages", json={"text": f"{MARK} v1"})).json()
        await h.patch(
            f"/sessions/{sid}/messages/{first['message']['id']}", json={"text": f"{MARK} v2"}
        )
        await bob.post(
            f"/sessions/{sid}/messages",
            json={"text": "bob stays", "parent_id": first["message"]["id"]},
        )
        await h.post(
            f"/sessions/{sid}/messages", json={"text": MARK, "parts": [{"type": "x", "v": MARK}]}
        )
    own = await server.create_session("alice", title="alice alone")
    async with server.http("alice") as h:
        await h.post(f"/sessions/{own}/messages", json={"text": MARK})
    return sid, own


async def test_purge_user_over_rest_leaves_no_content(server: RunningServer) -> None:
    sid, own = await seed(server)
    same_name = await server.create_session("alice", "globex")  # another tenant's alice
    async with server.http("alice", "globex") as g:
        await g.post(f"/sessions/{same_name}/messages", json={"text": MARK})
    assert MARK in await everything_stored(server)

    async with server.http("bob") as bob:
        r = await bob.post("/tenant/users/alice/purge")
        assert r.status_code == 403
    async with admin(server) as root:
        r = await root.post("/tenant/users/alice/purge")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["actor"] == "root"
        assert (report["tenant_id"], report["user_id"]) == ("acme", "alice")
        assert report["sessions"] == 2
        assert report["messages"] == 3
        assert report["events"] >= 5  # 3 created, 1 edited, 1 participant.joined at least
        assert report["user_row"] is True
        assert MARK not in str(report)
        # The audit trail keeps a record of the purge with its counts, not the content.
        trail = (await root.get("/audit", params={"action": "user.purge"})).json()["items"]
        assert [(e["actor"], e["target_id"], e["details"]["messages"]) for e in trail] == [
            ("root", "alice", 3)
        ]
        assert MARK not in str(trail)
        bad = await root.post("/tenant/users/not a user/purge")
        assert bad.status_code == 422

    async with server.http("bob") as bob:
        items = (await bob.get(f"/sessions/{sid}/messages")).json()["items"]
        alice = [i for i in items if i["author"] == "alice"]
        assert all(i["text"] == "" and i["parts"] is None for i in alice)
        assert all(i["deleted_at"] is not None for i in alice)
        assert all(i["metadata"] == {"purged": True} for i in alice)
        assert [i["text"] for i in items if i["author"] == "bob"] == ["bob stays"]
        events = (await bob.get(f"/sessions/{sid}/events")).json()["items"]
        assert MARK not in str(events)
        people = (await bob.get(f"/sessions/{sid}/participants")).json()
        assert "alice" not in str(people)
        # Her own session stays (a shared object), without her content.
        mine = (await bob.get(f"/sessions/{own}/messages")).json()["items"]
        assert [i["text"] for i in mine] == [""]
    stored = await everything_stored(server)
    # Only globex's alice, who is someone else: her message row and its event.
    assert stored.count(MARK) == 2
    async with server.http("alice", "globex") as g:
        items = (await g.get(f"/sessions/{same_name}/messages")).json()["items"]
        assert items[0]["text"] == MARK


async def test_purge_user_command_prints_progress_and_a_summary(server: RunningServer) -> None:
    await seed(server)
    code, out = await cli(server, "purge-user", "--tenant", "acme", "--user", "alice", "--yes")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == "purging alice in tenant acme: 2 sessions"
    assert lines[1].startswith("  [1/2] session ")
    assert lines[-1].startswith("done: 3 messages and ")
    assert MARK not in await everything_stored(server)
    code, out = await cli(server, "purge-user", "--tenant", "acme", "--user", "bad id", "--yes")
    assert code == 2
    assert "not a valid id" in out


async def test_the_server_applies_retention_on_its_interval(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        database_url=sqlite_url, retention_interval=0.2, retention_purge_after_days=3
    )
    async with start_server(settings) as server:
        old = await server.create_session("alice", title="old")
        fresh = await server.create_session("alice", title="fresh")

        def age(s: Session) -> None:  # test set-up: the session was last touched 4 days ago
            row = s.get(m.Session, old)
            assert row is not None
            row.updated_at = datetime.now(UTC) - timedelta(days=4)

        async with server.client("alice") as ws, server.http("alice") as h:
            await ws.subscribe(old)  # before aging it: the next run may come at any moment
            await server.app.state.db.write(all_tenants(INSPECTS, age))
            gone = await ws.wait_for(lambda f: f.get("event") == "session.deleted")
            assert gone["data"]["reason"] == "retention"
            assert (await h.get(f"/sessions/{old}")).status_code == 404
            assert (await h.get(f"/sessions/{fresh}")).status_code == 200
