"""Imports apply the tenant's PII mode, on SQLite and PostgreSQL: `parley import` (offline,
its own process state) and REST uploads write through the same step, so in ``redact`` mode the
original never reaches messages or the event log, and a tenant in ``off`` mode keeps it."""

from __future__ import annotations

from pathlib import Path

from tests.data_support import cli
from tests.e2e.gov_helpers import admin
from tests.support import RunningServer

CHAT = (
    "12/31/23, 9:41 PM - Maria: Mail me at maria.lopez@example.org\n"
    "12/31/23, 9:42 PM - Jonas: Or call +44 20 7946 0958, card 4111 1111 1111 1111\n"
    "12/31/23, 9:43 PM - Maria: <attached: ann@example.org-scan.pdf>\n"
    "12/31/23, 9:44 PM - Jonas: See you Saturday\n"
)
ORIGINALS = ("maria.lopez@example.org", "7946 0958", "4111", "ann@example.org")


async def set_mode(server: RunningServer, mode: str, tenant: str) -> None:
    async with admin(server, tenant=tenant) as root:
        r = await root.put("/tenant/pii", json={"mode": mode})
        assert r.status_code == 200, r.text


async def imported(server: RunningServer, tenant: str) -> tuple[list[dict[str, object]], str]:
    """The one imported session's messages, and its event log as text."""
    async with admin(server, tenant=tenant) as h:
        [item] = (await h.get("/sessions")).json()["items"]
        messages = (await h.get(f"/sessions/{item['id']}/messages")).json()["items"]
        events = (await h.get(f"/sessions/{item['id']}/events")).json()["items"]
    return messages, str(events)


async def test_cli_and_rest_imports_redact_in_redact_mode(
    server: RunningServer, tmp_path: Path
) -> None:
    chat = tmp_path / "WhatsApp Chat with Hiking club.txt"
    chat.write_text(CHAT)
    await set_mode(server, "redact", "acme")
    result = await cli(server, "import", "whatsapp", str(chat), "--tenant", "acme")
    assert result.exit_code == 0, result.output
    messages, events = await imported(server, "acme")
    texts = [m["text"] for m in messages if m["author"] != "admin"]
    assert texts == [
        "Mail me at [EMAIL]",
        "Or call [PHONE], card [CARD]",
        "",
        "See you Saturday",
    ]
    by_text = {m["text"]: m for m in messages}
    assert by_text["Mail me at [EMAIL]"]["metadata"]["pii"] == {
        "types": ["EMAIL"],
        "count": 1,
        "redacted": True,
    }
    assert "pii" not in by_text["See you Saturday"]["metadata"]
    attachment = next(m for m in messages if m["parts"])["parts"][0]
    assert attachment["type"] == "attachment"
    assert attachment["name"].startswith("[EMAIL]"), "file names are text people wrote"
    for original in ORIGINALS:
        assert original not in str(messages)
        assert original not in events, "the event log holds no original either"

    # Importing again changes nothing (the redacted messages are recognised).
    result = await cli(server, "import", "whatsapp", str(chat), "--tenant", "acme")
    assert "0 message(s) added, 4 already present" in result.output

    # The same file over REST into a tenant in redact mode: the same result.
    await set_mode(server, "redact", "globex")
    async with admin(server, tenant="globex") as h:
        r = await h.post(
            "/imports",
            params={"format": "whatsapp", "filename": chat.name},
            content=CHAT.encode(),
        )
        assert r.status_code == 200, r.text
    rest_messages, _ = await imported(server, "globex")
    assert [m["text"] for m in rest_messages] == [m["text"] for m in messages]

    # A tenant in the default mode (off) keeps the text as written.
    result = await cli(server, "import", "whatsapp", str(chat), "--tenant", "initech")
    assert result.exit_code == 0, result.output
    plain, _ = await imported(server, "initech")
    assert "Mail me at maria.lopez@example.org" in [m["text"] for m in plain]
