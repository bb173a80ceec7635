"""Session templates end to end: the built-in library, tenant templates over REST (admins
change them), sessions made from templates over REST and the CLI, and precise errors."""

from __future__ import annotations

from typing import Any

from parley.governance.auth import TenantRole
from tests.data_support import cli, messages_of
from tests.support import RunningServer


def admin_headers(server: RunningServer, user: str = "ann", tenant: str = "acme") -> dict[str, str]:
    token = server.token(user, tenant, tenant_role=TenantRole.ADMIN)
    return {"Authorization": f"Bearer {token}"}


async def test_builtin_template_makes_a_ready_session(server: RunningServer) -> None:
    async with server.http("alice") as h:
        names = {t["name"]: t for t in (await h.get("/templates")).json()["items"]}
        assert {
            "brainstorm",
            "code-review",
            "customer-support",
            "retrospective",
            "research",
        } <= set(names)
        assert names["customer-support"]["source"] == "builtin"
        r = await h.post(
            "/sessions/from-template",
            json={
                "template": "customer-support",
                "variables": {"customer": "Acme Corp", "issue": "Login fails", "priority": "high"},
            },
        )
        assert r.status_code == 201, r.text
        session = r.json()
        sid = session["id"]
        assert session["title"] == "Support: Acme Corp - Login fails"
        assert session["tags"] == ["priority-high", "support"]
        assert session["metadata"]["kind"] == "support-case"
        assert session["metadata"]["template"] == {
            "name": "customer-support",
            "variables": {"customer": "Acme Corp", "issue": "Login fails", "priority": "high"},
        }
        (assistant,) = (await h.get(f"/sessions/{sid}/assistants")).json()["items"]
        assert assistant["name"] == "drafter"
        assert assistant["system_prompt"].startswith("You draft replies to customer Acme Corp")
        people = (await h.get(f"/sessions/{sid}/participants")).json()["items"]
        assert {(p["user_id"], p["role"]) for p in people} == {
            ("alice", "owner"),
            (assistant["user_id"], "editor"),
        }
        doc = (await h.get(f"/sessions/{sid}/document")).json()
        assert (await h.get(f"/sessions/{sid}/streams")).json()["items"] == []
    notes = await messages_of(server, sid, "acme")
    assert [m["text"].splitlines()[0] for m in notes] == [
        "Customer: Acme Corp",
        "Before closing: reproduce, fix or work around, reply to the customer, record the cause.",
    ]
    assert all(m["author"] == "alice" for m in notes)
    (label,) = doc["annotations"]
    assert (label["kind"], label["body"], label["message_id"]) == (
        "label",
        "priority high",
        notes[0]["id"],
    )
    assert doc["pins"] == [notes[0]["id"]]
    async with server.http("alice") as h:
        events = [e["event"] for e in (await h.get(f"/sessions/{sid}/events")).json()["items"]]
    assert events[0] == "session.created"
    assert events.count("message.created") == 2
    assert events[-1] == "annotation.created"


async def test_template_errors_are_precise(server: RunningServer) -> None:
    async with server.http("alice") as h:
        r = await h.post(
            "/sessions/from-template",
            json={"template": "customer-support", "variables": {"issue": "x", "colour": "red"}},
        )
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert {(d["field"], d["problem"].split(" (")[0]) for d in error["details"]} == {
            ("variables.colour", "unknown variable"),
            ("variables.customer", "required"),
        }
        r = await h.post(
            "/sessions/from-template",
            json={"template": "research", "variables": {"question": ["not", "text"]}},
        )
        assert r.json()["error"]["details"] == [
            {"field": "variables.question", "problem": "must be a string"}
        ]
        r = await h.post("/sessions/from-template", json={"template": "nope"})
        assert r.status_code == 404
        assert (await h.get("/sessions")).json()["items"] == []


async def test_tenant_templates_crud_for_admins_and_scoped_to_the_tenant(
    server: RunningServer,
) -> None:
    definition: dict[str, Any] = {
        "name": "incident",
        "description": "Incident war room",
        "title": "Incident ${id}: $summary",
        "variables": {"id": {}, "summary": {"default": "under investigation"}},
        "tags": ["incident"],
        "assistants": [{"name": "scribe", "system_prompt": "Keep a timeline of incident ${id}."}],
        "notes": [{"text": "Incident ${id} opened. Costs $$0 so far.", "pin": True}],
        "annotations": [{"note": 0, "kind": "highlight", "body": "Severity?"}],
        "document_notes": "Timeline for ${id}\n",
    }
    async with server.http("alice") as h:
        r = await h.post("/templates", json=definition)
        assert r.status_code == 403
        admin = admin_headers(server)
        r = await h.post("/templates", json=definition, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "tenant"
        assert r.json()["created_by"] == "ann"
        assert (await h.post("/templates", json=definition, headers=admin)).status_code == 409
        bad = {**definition, "name": "bad", "title": "Incident ${nope}"}
        r = await h.post("/templates", json=bad, headers=admin)
        assert r.status_code == 422
        assert r.json()["error"]["details"] == [
            {"field": "title", "problem": "variable 'nope' is not declared"}
        ]
        bad = {**definition, "name": "bad", "annotations": [{"note": 3, "body": "x"}]}
        r = await h.post("/templates", json=bad, headers=admin)
        assert r.json()["error"]["details"] == [
            {"field": "annotations.0.note", "problem": "there is no note 3"}
        ]
        bad = {**definition, "name": "Bad Name!"}
        r = await h.post("/templates", json=bad, headers=admin)
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "name"
        r = await h.post("/templates", json={**definition, "name": "brainstorm"}, headers=admin)
        assert r.status_code == 409
        r = await h.post(
            "/sessions/from-template",
            json={"template": "incident", "variables": {"id": "INC-7"}},
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert r.json()["title"] == "Incident INC-7: under investigation"
        (note,) = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert note["text"] == "Incident INC-7 opened. Costs $0 so far."
        doc = (await h.get(f"/sessions/{sid}/document")).json()
        assert doc["notes"] == "Timeline for INC-7\n"
        changed = {**definition, "title": "INC ${id}"}
        del changed["name"]
        r = await h.put("/templates/incident", json=changed, headers=admin)
        assert r.status_code == 200, r.text
        assert (await h.get("/templates/incident")).json()["title"] == "INC ${id}"
    async with server.http("mallory", "evil") as h:
        assert (await h.get("/templates/incident")).status_code == 404
        r = await h.post(
            "/sessions/from-template", json={"template": "incident", "variables": {"id": "1"}}
        )
        assert r.status_code == 404
        evil_admin = admin_headers(server, "eve", "evil")
        assert (await h.delete("/templates/incident", headers=evil_admin)).status_code == 404
    async with server.http("alice") as h:
        assert (await h.delete("/templates/incident")).status_code == 403
        assert (await h.delete("/templates/incident", headers=admin)).status_code == 204
        assert (await h.get("/templates/incident")).status_code == 404
        assert (await h.delete("/templates/brainstorm", headers=admin)).status_code == 409


async def test_cli_creates_a_session_from_a_template(server: RunningServer) -> None:
    result = await cli(
        server,
        "session",
        "from-template",
        "retrospective",
        "--tenant",
        "acme",
        "--as-user",
        "alice",
        "--var",
        "period=Sprint 42",
        "--var",
        "team=Platform",
    )
    assert result.exit_code == 0, result.output
    sid, title = result.output.strip().split("  ", 1)
    assert title == "Retrospective: Sprint 42"
    async with server.http("alice") as h:
        (assistant,) = (await h.get(f"/sessions/{sid}/assistants")).json()["items"]
        assert "for Platform about Sprint 42" in assistant["system_prompt"]
    notes = await messages_of(server, sid, "acme")
    assert [m["text"] for m in notes][1:] == [
        "What went well?",
        "What did not go well?",
        "Actions (owner, due date):",
    ]
    result = await cli(
        server, "session", "from-template", "retrospective", "--tenant", "acme", "--var", "x"
    )
    assert result.exit_code == 2
    assert "'x' is not NAME=VALUE" in result.output
    result = await cli(server, "session", "from-template", "retrospective", "--tenant", "acme")
    assert result.exit_code == 1
    assert "variables.period: required" in result.output
    result = await cli(server, "template", "list", "--tenant", "acme")
    assert "retrospective" in result.output
    assert "team=the team" in result.output
