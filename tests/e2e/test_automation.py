"""Automation rules end to end through REST: text-pattern triggers that tag and post, assistants
and summaries, webhooks, a scheduled digest, and loops between rules detected and stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.governance.auth import TenantRole
from parley.ids import iso, new_id, utcnow
from parley.integrations.automation.engine import _Rule
from parley.integrations.automation.service import rule_row
from parley.storage import models as m
from tests.fakes.webhook_receiver import running_receiver
from tests.support import RunningServer, start_server

BOT = "parley-automation"


@pytest.fixture
async def auto(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    settings = settings_factory(
        database_url=database_url, feed_poll_interval=0.1, webhook_allow_private=True
    )
    async with start_server(settings) as running:
        yield running


def admin(server: RunningServer, tenant: str = "acme") -> httpx.AsyncClient:
    token = server.token("root", tenant, tenant_role=TenantRole.ADMIN)
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


async def make_rule(h: httpx.AsyncClient, rule: dict[str, Any]) -> dict[str, Any]:
    r = await h.post("/automations", json=rule)
    assert r.status_code == 201, r.text
    view: dict[str, Any] = r.json()
    return view


async def eventually(probe: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll ``probe`` (async) until it returns something truthy (rules run in the background)."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.05)


async def runs(h: httpx.AsyncClient, rule_id: str) -> list[dict[str, Any]]:
    r = await h.get(f"/automations/{rule_id}/runs")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def finished_runs(h: httpx.AsyncClient, rule_id: str) -> list[dict[str, Any]]:
    """The rule's runs that have an outcome (a claimed occurrence is ``running`` until then)."""
    return [run for run in await runs(h, rule_id) if run["status"] != "running"]


async def messages(h: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
    return items


async def test_text_pattern_tags_and_answers(auto: RunningServer) -> None:
    async with admin(auto) as h, auto.http("ann") as ann:
        rule = await make_rule(
            h,
            {
                "name": "urgent",
                "trigger": {"events": ["message.created"], "text": "(?i)\\burgent\\b"},
                "actions": [
                    {"type": "tag", "tags": ["Urgent"]},
                    {"type": "post_message", "text": "On it."},
                ],
            },
        )
        sid = await auto.create_session("ann")
        assert (await ann.post(f"/sessions/{sid}/messages", json={"text": "all calm"})).is_success
        r = await ann.post(f"/sessions/{sid}/messages", json={"text": "URGENT: db down"})
        assert r.status_code == 201
        [run] = await eventually(lambda: runs(h, rule["id"]))
        assert run["status"] == "ok", run
        assert run["cause"] == "event"
        assert run["seq"] == r.json()["seq"]
        assert [a["type"] for a in run["detail"]["actions"]] == ["tag", "post_message"]
        assert run["detail"]["actions"][0]["added"] == ["urgent"]
        session = (await ann.get(f"/sessions/{sid}")).json()
        assert session["tags"] == ["urgent"]
        texts = [(m["author"], m["text"]) for m in await messages(ann, sid)]
        assert texts == [("ann", "all calm"), ("ann", "URGENT: db down"), (BOT, "On it.")]
        bot_msg = (await messages(ann, sid))[-1]
        assert bot_msg["metadata"]["automation"]["chain"] == [rule["id"]]
        assert len(await runs(h, rule["id"])) == 1, "the bot's own answer does not match"


async def test_loops_between_rules_are_stopped(auto: RunningServer) -> None:
    async with admin(auto) as h, auto.http("ann") as ann:
        ping = await make_rule(
            h,
            {
                "name": "ping",
                "trigger": {"text": "^ping$"},
                "actions": [{"type": "post_message", "text": "pong"}],
            },
        )
        pong = await make_rule(
            h,
            {
                "name": "pong",
                "trigger": {"text": "^pong$"},
                "actions": [{"type": "post_message", "text": "ping"}],
            },
        )
        sid = await auto.create_session("ann")
        await ann.post(f"/sessions/{sid}/messages", json={"text": "ping"})
        got = await eventually(lambda: _statuses(h, ping["id"], lambda s: "loop_stopped" in s))
        assert got == ["ok", "loop_stopped"]
        assert [r["status"] for r in await runs(h, pong["id"])] == ["ok"]
        stopped = (await runs(h, ping["id"]))[0]
        assert "its own output" in stopped["detail"]["reason"]
        texts = [(m["author"], m["text"]) for m in await messages(ann, sid)]
        assert texts == [("ann", "ping"), (BOT, "pong"), (BOT, "ping")]

        # A rule that reacts to what it does itself is stopped on the first echo.
        echo = await make_rule(
            h,
            {
                "name": "echo",
                "trigger": {"events": ["session.updated"]},
                "actions": [{"type": "tag", "tags": ["touched"]}],
            },
        )
        assert (await ann.patch(f"/sessions/{sid}", json={"title": "renamed"})).is_success
        got = await eventually(lambda: _statuses(h, echo["id"], lambda s: len(s) == 2))
        assert got == ["ok", "loop_stopped"]


async def _statuses(
    h: httpx.AsyncClient, rule_id: str, done: Callable[[list[str]], bool]
) -> list[str] | None:
    statuses = [r["status"] for r in reversed(await runs(h, rule_id))]
    return statuses if done(statuses) else None


async def test_assistant_summary_and_webhook_actions(auto: RunningServer) -> None:
    async with running_receiver() as rx, admin(auto) as h, auto.http("ann") as ann:
        r = await h.post("/webhooks", json={"url": rx.url, "events": ["automation.*"]})
        hook = r.json()
        rx.secret = hook["secret"]
        rule = await make_rule(
            h,
            {
                "name": "support desk",
                "trigger": {"events": ["message.created"], "tag": "support", "participant": "ann"},
                "actions": [
                    {"type": "add_assistant", "name": "helper"},
                    {"type": "summarize"},
                    {"type": "call_webhook", "webhook": hook["id"]},
                ],
            },
        )
        sid = await auto.create_session("ann", title="printer", tags=["support"])
        other = await auto.create_session("ann", title="no tag")
        await ann.post(f"/sessions/{other}/messages", json={"text": "ignored here"})
        for text in (
            "The printer on floor two jams on every duplex job.",
            "Replacing the printer roller fixed the jams last year.",
            "Lunch is at noon.",
        ):
            await ann.post(f"/sessions/{sid}/messages", json={"text": text})
        done = await eventually(lambda: _statuses(h, rule["id"], lambda s: len(s) == 3))
        assert done == ["ok", "ok", "ok"]
        assistants = (await ann.get(f"/sessions/{sid}/assistants")).json()["items"]
        assert [a["name"] for a in assistants] == ["helper"]
        summaries = [m["text"] for m in await messages(ann, sid) if m["author"] == BOT]
        assert len(summaries) == 3
        assert summaries[-1].startswith("Summary: ")
        assert "printer" in summaries[-1]
        got = await rx.wait_for(3)
        assert all(g.signature_ok for g in got)
        assert {g.json["type"] for g in got} == {"automation.rule"}
        assert got[0].json["data"]["rule"] == {"id": rule["id"], "name": "support desk"}
        assert got[0].json["data"]["event"]["event"] == "message.created"
        assert [m["author"] for m in await messages(ann, other)] == ["ann"], "no tag: no rule"


async def test_scheduled_digest(auto: RunningServer) -> None:
    async with admin(auto) as h, auto.http("ann") as ann:
        digest_to = await auto.create_session("ann", title="digests")
        busy = await auto.create_session("ann", title="Release planning")
        await ann.post(f"/sessions/{busy}/messages", json={"text": "We ship the release Friday."})
        rule = await make_rule(
            h,
            {
                "name": "every second",
                "schedule": "* * * * * *",
                "actions": [{"type": "digest", "session": digest_to, "hours": 24}],
            },
        )
        assert rule["next_run_at"] is not None
        [run, *_] = await eventually(lambda: finished_runs(h, rule["id"]))
        assert run["cause"] == "schedule"
        assert run["status"] == "ok", run
        assert run["detail"]["scheduled_for"] is not None
        digest = next(m for m in await messages(ann, digest_to) if m["author"] == BOT)
        assert "Release planning (1 messages)" in digest["text"]
        assert "ship the release" in digest["text"]
        r = await h.patch(f"/automations/{rule['id']}", json={"enabled": False})
        assert r.status_code == 200
        assert r.json()["next_run_at"] is None

        daily = await make_rule(
            h,
            {
                "name": "daily",
                "schedule": "0 9 * * *",
                "actions": [{"type": "digest", "session": digest_to}],
            },
        )
        r = await h.post(f"/automations/{daily['id']}/run")
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "ok"
        assert r.json()["detail"]["actions"][0]["sessions"] >= 1


async def test_rules_are_validated_admin_only_and_tenant_scoped(auto: RunningServer) -> None:
    good = {"name": "x", "trigger": {"text": "a"}, "actions": [{"type": "tag", "tags": ["t"]}]}
    async with admin(auto) as h, admin(auto, tenant="globex") as g, auto.http("ann") as ann:
        rule = await make_rule(h, good)
        for bad, problem in (
            ({**good, "trigger": {"text": "(unclosed"}}, "not a valid regular expression"),
            ({**good, "schedule": "* * * * *"}, "either a trigger or a schedule"),
            ({"name": "x", "actions": good["actions"]}, "either a trigger or a schedule"),
            (
                {
                    "name": "x",
                    "schedule": "every day",
                    "actions": [{"type": "digest", "session": "s"}],
                },
                "not a cron expression",
            ),
            (
                {"name": "x", "schedule": "0 9 * * *", "actions": [{"type": "tag", "tags": ["a"]}]},
                "not an action of scheduled rules",
            ),
            ({**good, "actions": [{"type": "explode"}]}, "actions.0"),
            ({**good, "trigger": {"events": ["Bad Name"]}}, "trigger.events"),
            ({**good, "trigger": {"text": "x" * 501}}, "trigger.text"),
            ([1, 2], "JSON object"),
        ):
            r = await h.post("/automations", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert problem in r.json()["error"]["message"], (bad, r.json())
        assert (await ann.get("/automations")).status_code == 403
        assert (await ann.post("/automations", json=good)).status_code == 403
        missing = await g.get("/automations/0190a0a0-0000-7000-8000-000000000000")
        foreign = await g.get(f"/automations/{rule['id']}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == "not_found"
        for method, path in (
            ("PATCH", f"/automations/{rule['id']}"),
            ("DELETE", f"/automations/{rule['id']}"),
            ("GET", f"/automations/{rule['id']}/runs"),
            ("POST", f"/automations/{rule['id']}/run"),
        ):
            r = await g.request(method, path, json={} if method == "PATCH" else None)
            assert r.status_code == 404, (method, path, r.text)
        r = await h.post(f"/automations/{rule['id']}/run")
        assert r.status_code == 422, "event rules run on events only"
        r = await h.patch(f"/automations/{rule['id']}", json={"trigger": {"text": "[z-a]"}})
        assert r.status_code == 422
        assert (await h.delete(f"/automations/{rule['id']}")).status_code == 204
        assert (await h.get(f"/automations/{rule['id']}")).status_code == 404


async def test_an_occurrence_whose_process_died_is_run_again(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """A process claimed a scheduled occurrence (its run is ``running``) and died before the
    outcome: after the claim lease another process runs it, once, with the same keys."""
    settings = settings_factory(
        database_url=database_url, feed_poll_interval=0.1, automation_claim_lease=1.0
    )
    async with start_server(settings) as server, admin(server) as h, server.http("ann") as ann:
        digest_to = await server.create_session("ann", title="digests")
        busy = await server.create_session("ann", title="Incident review")
        await ann.post(f"/sessions/{busy}/messages", json={"text": "The pager fired twice."})
        rule = await make_rule(
            h,
            {
                "name": "daily",
                "schedule": "0 9 * * *",  # not due during the test: only the orphan runs
                "actions": [{"type": "digest", "session": digest_to, "hours": 24}],
            },
        )
        scheduled_for = datetime(2026, 1, 5, 9, tzinfo=UTC)
        orphan = m.AutomationRun(
            id=new_id(),
            tenant_id="acme",
            rule_id=rule["id"],
            cause="schedule",
            status="running",
            detail={"scheduled_for": iso(scheduled_for)},
            created_at=utcnow() - timedelta(seconds=30),  # claimed 30 s ago by a dead process
        )
        await server.app.state.db.write(lambda s: s.add(orphan))

        [run] = await eventually(lambda: finished_runs(h, rule["id"]))
        assert run["id"] == orphan.id, "the claimed run gets the outcome, no second run row"
        assert run["status"] == "ok", run
        assert run["detail"]["scheduled_for"] == iso(scheduled_for)
        assert run["detail"]["actions"][0]["type"] == "digest"
        digests = [x for x in await messages(ann, digest_to) if x["author"] == BOT]
        assert len(digests) == 1
        assert "Incident review (1 messages)" in digests[0]["text"]

        # Finished runs are never taken again, and a repeat of the same occurrence (a claimer
        # that was only slow) posts nothing new: the post's client_id comes from the occurrence.
        await asyncio.sleep(1.5)
        assert [x["id"] for x in await runs(h, rule["id"])] == [orphan.id]
        await server.app.state.integrations.engine._run_scheduled(
            _Rule.of(await server.app.state.db.read(lambda s: rule_row(s, "acme", rule["id"]))),
            scheduled_for,
        )
        assert len([x for x in await messages(ann, digest_to) if x["author"] == BOT]) == 1
