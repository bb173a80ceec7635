"""Session exports (JSON and Markdown), the JSON export imported back, and the tenant archive:
real servers on SQLite and PostgreSQL, REST, the Yjs endpoint and the ``parley`` CLI."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import orjson
from pycrdt import Map

from parley.governance.auth import TenantRole
from tests.data_support import cli, normalized
from tests.support import RunningServer
from tests.ysupport import yjs_client


async def rich_session(server: RunningServer) -> str:
    """A session with everything: tags, metadata, two people and a viewer, a fork, an edit,
    a tombstone, an assistant's answer with usage, annotations, notes, labels and pins."""
    async with server.http("bob") as h:
        await h.get("/sessions")
    async with server.http("carol") as h:
        await h.get("/sessions")
    async with server.http("alice") as h:
        r = await h.post(
            "/sessions",
            json={"title": "Launch plan", "tags": ["launch", "q3"], "metadata": {"team": "web"}},
        )
        sid = r.json()["id"]
        r = await h.post(
            f"/sessions/{sid}/participants", json={"user_id": "carol", "role": "viewer"}
        )
        assert r.status_code in (200, 201), r.text
        root = (await h.post(f"/sessions/{sid}/messages", json={"text": "Which date?"})).json()
        root_id = root["message"]["id"]
    async with server.http("bob") as h:
        a = (
            await h.post(f"/sessions/{sid}/messages", json={"text": "Monday", "parent_id": root_id})
        ).json()
        b = (
            await h.post(
                f"/sessions/{sid}/messages", json={"text": "Tuesday?", "parent_id": root_id}
            )
        ).json()
        a_id = a["message"]["id"]
        b_id = b["message"]["id"]
        r = await h.patch(f"/sessions/{sid}/messages/{a_id}", json={"text": "Monday 9:00"})
        assert r.status_code == 200, r.text
        r = await h.delete(f"/sessions/{sid}/messages/{b_id}")
        assert r.status_code in (200, 204), r.text
    async with server.http("alice") as h:
        r = await h.post(
            f"/sessions/{sid}/assistants",
            json={
                "name": "helper",
                "provider": "scripted",
                "model": "scripted",
                "system_prompt": "Answer in one line.",
            },
        )
        assert r.status_code == 201, r.text
    async with server.client("alice") as ws:
        await ws.subscribe(sid)
        r = await ws.request(
            {"type": "send", "session": sid, "text": "@helper summarise", "parent_id": a_id}
        )
        assert r["type"] == "ack", r
        await ws.wait_for(
            lambda f: (
                f.get("event") == "message.created"
                and f["data"]["message"]["author"].startswith("assistant.")
            ),
            timeout=20,
        )
    async with yjs_client(server, sid, "alice") as y:
        with y.doc.transaction():
            y.annotations["n1"] = Map(
                {
                    "id": "n1",
                    "message_id": a_id,
                    "range": Map({"start": 0, "end": 6}),
                    "kind": "comment",
                    "body": "Check the venue",
                    "author": "alice",
                    "created": "2026-11-25T10:00:00.000Z",
                    "resolved": True,
                    "resolved_by": "bob",
                    "resolved_at": "2026-11-25T11:00:00.000Z",
                }
            )
            y.notes.insert(0, "Decide by Friday.")
            y.pins.append(root_id)
        await y.flushed()
    return sid


async def export_of(server: RunningServer, sid: str, tenant: str = "acme") -> dict[str, Any]:
    async with server.http("alice", tenant) as h:
        r = await h.get(f"/sessions/{sid}/export")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


async def test_json_export_holds_everything_and_imports_back_the_same_session(
    server: RunningServer, tmp_path: Path
) -> None:
    sid = await rich_session(server)
    export = await export_of(server, sid)
    assert export["format"] == "parley.session"
    assert export["version"] == 1
    assert export["session"]["tags"] == ["launch", "q3"]
    texts = [m["text"] for m in export["messages"]]
    assert texts[:3] == ["Which date?", "Monday 9:00", ""]
    assert export["messages"][1]["edited_at"]
    assert export["messages"][2]["deleted_at"]
    assert export["branches"] == [
        {
            "message_id": export["messages"][0]["id"],
            "children": [m["id"] for m in export["messages"][1:3]],
        }
    ]
    assert {p["user_id"]: p["role"] for p in export["participants"]}["carol"] == "viewer"
    (assistant,) = export["assistants"]
    assert assistant["system_prompt"] == "Answer in one line."
    assert export["usage"]["total"]["messages"] == 1
    assert export["usage"]["total"]["output_tokens"] > 0
    assert export["document"]["notes"] == "Decide by Friday."
    (note,) = export["document"]["annotations"]
    assert note["message_id"] == export["messages"][1]["id"]
    assert note["resolved_by"] == "bob"

    path = tmp_path / "session.json"
    path.write_bytes(orjson.dumps(export))
    result = await cli(
        server, "import", "parley-json", str(path), "--tenant", "other", "--as-user", "alice"
    )
    assert result.exit_code == 0, result.output
    assert "1 new session(s)" in result.output
    async with server.http("alice", "other") as h:
        (copy,) = (await h.get("/sessions")).json()["items"]
    again = await export_of(server, copy["id"], "other")
    assert normalized(again) == normalized(export)

    # A second import of the same file adds nothing.
    result = await cli(
        server, "import", "parley-json", str(path), "--tenant", "other", "--as-user", "alice"
    )
    assert result.exit_code == 0, result.output
    assert "0 new session(s)" in result.output
    assert "0 message(s) added" in result.output
    async with server.http("alice", "other") as h:
        assert len((await h.get("/sessions")).json()["items"]) == 1
    assert normalized(await export_of(server, copy["id"], "other")) == normalized(export)


async def test_markdown_export_is_a_readable_transcript_with_branches(
    server: RunningServer,
) -> None:
    sid = await rich_session(server)
    async with server.http("bob") as h:
        r = await h.get(f"/sessions/{sid}/export", params={"format": "md"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/markdown")
        md = r.text
    assert md.startswith("# Launch plan\n")
    assert "tags: `launch`, `q3`" in md
    assert "**bob** · " in md
    assert "· #2 · branch 1 of 2 from #1 · edited" in md
    assert "· #3 · branch 2 of 2 from #1" in md
    assert "*(deleted)*" in md
    assert "> comment by alice (resolved): Check the venue" in md
    assert "## Notes\n\nDecide by Friday." in md
    assert "- **@helper**: scripted / scripted" in md
    # The CLI writes the same transcript.
    result = await cli(server, "export", "session", sid, "--tenant", "acme", "--format", "md")
    assert result.exit_code == 0, result.output
    assert "branch 2 of 2 from #1" in result.output


async def test_exports_are_tenant_scoped_and_formats_checked(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with server.http("mallory", "evil") as h:
        r = await h.get(f"/sessions/{sid}/export")
        assert r.status_code == 404
        missing = await h.get("/sessions/0192aaaa-0000-7000-8000-000000000000/export")
        assert missing.status_code == 404
        assert r.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    async with server.http("alice") as h:
        r = await h.get(f"/sessions/{sid}/export", params={"format": "pdf"})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_request"
        assert (await h.get("/export")).status_code == 403
    result = await cli(server, "export", "session", sid, "--tenant", "evil")
    assert result.exit_code == 1
    assert "not_found" in result.output


async def test_tenant_archive_streams_every_session_and_imports_back(
    server: RunningServer, tmp_path: Path
) -> None:
    first = await rich_session(server)
    second = await server.create_session("alice", title="Second")
    await server.create_session("mallory", tenant="evil", title="Not yours")
    token = server.token("alice", "acme", tenant_role=TenantRole.ADMIN)
    async with server.http("alice") as h:
        r = await h.get("/export", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = orjson.loads(archive.read("manifest.json"))
    assert manifest["tenant"] == "acme"
    assert sorted(s["id"] for s in manifest["sessions"]) == sorted([first, second])
    assert sorted(archive.namelist()) == sorted(
        ["manifest.json", f"sessions/{first}.json", f"sessions/{second}.json"]
    )
    # The CLI writes the same archive, and importing it restores every session elsewhere.
    out = tmp_path / "acme.zip"
    result = await cli(server, "export", "tenant", "--tenant", "acme", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 2 session(s)" in result.output
    result = await cli(
        server, "import", "parley-json", str(out), "--tenant", "restored", "--as-user", "alice"
    )
    assert result.exit_code == 0, result.output
    assert "2 new session(s)" in result.output
    async with server.http("alice", "restored") as h:
        items = (await h.get("/sessions")).json()["items"]
    restored = {i["title"]: i["id"] for i in items}
    assert set(restored) == {"Launch plan", "Second"}
    assert normalized(await export_of(server, restored["Launch plan"], "restored")) == normalized(
        await export_of(server, first)
    )
