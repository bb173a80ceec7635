"""Imports end to end through the ``parley import`` CLI against real servers (SQLite and
PostgreSQL), with sample exports of each tool in ``tests/data/imports``: what lands in the
sessions, errors that name file and line (or record), and re-imports that add nothing."""

from __future__ import annotations

import asyncio
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from parley.config import Settings
from tests.conftest import redis_url_or_skip
from tests.data_support import DATA, cli, messages_of, sessions_of, zip_folder
from tests.support import RunningServer, start_server


async def test_chatgpt_keeps_every_branch_and_reimports_add_only_what_is_new(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "conversations.json"
    shutil.copy(DATA / "chatgpt_conversations.json", path)
    args = ("import", "chatgpt", str(path), "--tenant", "acme", "--as-user", "alice")
    result = await cli(server, *args)
    assert result.exit_code == 1, result.output  # two bad records
    assert "2 new session(s)" in result.output
    assert "7 message(s) added" in result.output
    assert (
        "conversations.json: record 1 (id=c0ffee00-0000-4000-8000-000000000002): a conversation "
        "needs a 'mapping' object of nodes" in result.output
    )
    assert (
        "record 2 (id=9d7e6b1a-3f2c-4e8d-b5a4-7c6d5e4f3a21) node x: content type "
        "'hologram' is not supported" in result.output
    )

    sessions = await sessions_of(server, "acme")
    reverse = sessions["Reverse a list in Python"]
    assert reverse["tags"] == ["chatgpt"]
    assert reverse["created_at"] == "2023-12-30T21:40:00.000Z"
    msgs = await messages_of(server, reverse["id"], "acme")
    by_text = {m["text"][:20]: m for m in msgs}
    assert [m["text"][:20] for m in msgs] == [
        "How do I reverse a l",
        "Use `my_list.reverse",
        "`reversed(my_list)` ",
        "And how do I reverse",
        "[3, 2, 1]",
    ]
    question = by_text["How do I reverse a l"]
    assert question["author"] == "alice"
    assert question["created_at"] == "2023-12-30T21:40:01.500Z"
    # Both answers (the first and the regenerated one) hang off the question: a branch.
    assert by_text["Use `my_list.reverse"]["parent_id"] == question["id"]
    assert by_text["`reversed(my_list)` "]["parent_id"] == question["id"]
    assert by_text["Use `my_list.reverse"]["author"] == "chatgpt.assistant"
    assert by_text["Use `my_list.reverse"]["metadata"]["model"] == "gpt-4"
    edited_prompt = by_text["And how do I reverse"]
    assert edited_prompt["parts"] == [
        {
            "type": "attachment",
            "name": "file-service://file-abc123",
            "content_type": "image_asset_pointer",
        }
    ]
    assert by_text["[3, 2, 1]"]["author"] == "chatgpt.tool"
    assert by_text["[3, 2, 1]"]["parent_id"] == edited_prompt["id"]
    shell = await messages_of(server, sessions["Shell one-liner"]["id"], "acme")
    assert shell[1]["text"] == "```\nfind . -name '*.py' | xargs wc -l\n```"

    # The same export again: nothing new.
    result = await cli(server, *args)
    assert "0 new session(s), 0 updated; 0 message(s) added, 7 already present" in result.output
    # The conversation grew: only the new answer is added, as a reply in its branch.
    doc = orjson.loads(path.read_bytes())
    doc[0]["mapping"]["a1b"]["children"] = ["u3"]
    doc[0]["mapping"]["u3"] = {
        "id": "u3",
        "message": {
            "id": "u3",
            "author": {"role": "user"},
            "create_time": 1703990000.0,
            "content": {"content_type": "text", "parts": ["Thanks!"]},
        },
        "parent": "a1b",
        "children": [],
    }
    path.write_bytes(orjson.dumps(doc))
    result = await cli(server, *args)
    assert "0 new session(s), 1 updated; 1 message(s) added, 7 already present" in result.output
    msgs = await messages_of(server, reverse["id"], "acme")
    assert msgs[-1]["text"] == "Thanks!"
    assert msgs[-1]["parent_id"] == by_text["`reversed(my_list)` "]["id"]
    assert len(await sessions_of(server, "acme")) == 2


async def test_slack_channels_threads_files_and_skipped_notices(
    server: RunningServer, tmp_path: Path
) -> None:
    export = zip_folder(DATA / "slack", tmp_path / "slack-export.zip")
    args = ("import", "slack", str(export), "--tenant", "acme", "--as-user", "alice")
    result = await cli(server, *args)
    assert result.exit_code == 1, result.output
    assert "2 new session(s)" in result.output
    assert "6 message(s) added" in result.output
    assert "2 record(s) skipped on purpose" in result.output  # a join and a topic change
    assert (
        "slack-export.zip!general/2023-12-31.json:18: a message needs a numeric 'ts'"
        in result.output
    )
    sessions = await sessions_of(server, "acme")
    assert set(sessions) == {"#general", "#random"}
    general = sessions["#general"]
    assert general["metadata"]["purpose"] == "Company-wide announcements"
    msgs = await messages_of(server, general["id"], "acme")
    root, reply, ok, deploy, shot = msgs
    assert root["text"] == "Release 2.4 goes out Monday. @Bob Chen can you check the changelog?"
    assert root["author"] == "slack.U01ALICE"
    assert reply["text"] == "On it. Draft is at the wiki (https://wiki.example.com/changelog)"
    assert reply["parent_id"] == root["id"]
    assert ok["parent_id"] == root["id"]
    assert reply["edited_at"] == "2023-12-30T09:57:30.000Z"
    assert deploy["author"] == "slack.B0DEPLOY"
    assert shot["parts"][0]["name"] == "dashboard.png"
    assert shot["parts"][0]["content_type"] == "image/png"
    async with server.http("alice") as h:
        people = (await h.get(f"/sessions/{general['id']}/participants")).json()["items"]
    names = {p["user_id"]: (p["name"], p["kind"]) for p in people}
    assert names["slack.U02BOB"] == ("Bob Chen", "human")
    assert names["slack.B0DEPLOY"] == ("Deploy Bot", "bot")
    assert names["alice"][0] == "alice"

    again = await cli(server, *args)
    assert "0 new session(s), 0 updated; 0 message(s) added, 6 already present" in again.output


async def test_dry_run_writes_nothing_and_bad_files_are_clear_errors(
    server: RunningServer, tmp_path: Path
) -> None:
    path = DATA / "chatgpt_conversations.json"
    result = await cli(server, "import", "chatgpt", str(path), "--tenant", "acme", "--dry-run")
    assert "would import 2 conversation(s)" in result.output
    assert await sessions_of(server, "acme") == {}
    garbage = tmp_path / "conversations.json"
    garbage.write_text("{not json")
    result = await cli(server, "import", "chatgpt", str(garbage), "--tenant", "acme")
    assert result.exit_code == 1
    assert "conversations.json: not valid JSON" in result.output
    result = await cli(server, "import", "slack", str(garbage), "--tenant", "acme")
    assert result.exit_code == 1
    assert "not a Slack export zip" in result.output
    result = await cli(server, "import", "chatgpt", str(path), "--tenant", "bad tenant!")
    assert result.exit_code == 2
    assert "is not a valid id" in result.output


async def test_whatsapp_date_formats_multiline_media_and_system_lines(
    server: RunningServer, tmp_path: Path
) -> None:
    hiking = DATA / "whatsapp" / "WhatsApp Chat with Hiking club.txt"
    result = await cli(server, "import", "whatsapp", str(hiking), "--tenant", "acme")
    assert result.exit_code == 1, result.output
    assert (
        "WhatsApp Chat with Hiking club.txt:9: unreadable date or time: month must be in 1..12"
        in result.output
    )
    assert "5 message(s) added" in result.output
    assert "2 record(s) skipped on purpose" in result.output
    sessions = await sessions_of(server, "acme")
    chat = sessions["WhatsApp Chat with Hiking club"]
    msgs = await messages_of(server, chat["id"], "acme")
    assert [(m["created_at"], m["text"]) for m in msgs] == [
        ("2023-12-31T21:41:00.000Z", "Who is in for Saturday?"),
        (
            "2023-12-31T21:41:00.000Z",
            "Trail: Eagle Peak loop\nStart: 8:00 at the parking lot\nBring water!",
        ),
        ("2023-12-31T21:45:00.000Z", "I am in 🙌"),
        ("2023-12-31T22:02:00.000Z", ""),
        ("2024-01-01T00:15:00.000Z", "Happy new year! 🎆"),
    ]
    assert msgs[3]["parts"] == [{"type": "attachment", "name": "media omitted from the export"}]
    assert msgs[2]["author"].startswith("whatsapp.+1-555-123-4567-")
    assert msgs[0]["author"] == "whatsapp.Maria"

    for name in ("WhatsApp Chat - Jonas.txt", "iso-chat.txt"):
        result = await cli(
            server, "import", "whatsapp", str(DATA / "whatsapp" / name), "--tenant", "acme"
        )
        assert result.exit_code == 0, result.output
    sessions = await sessions_of(server, "acme")
    jonas = await messages_of(server, sessions["WhatsApp Chat - Jonas"]["id"], "acme")
    assert [(m["created_at"], m["text"]) for m in jonas] == [
        ("2023-12-31T21:41:05.000Z", "Hast du die Schlüssel?"),
        ("2023-12-31T21:42:10.000Z", "Ja, liegen im Flur."),
        ("2023-12-31T21:42:31.000Z", ""),
        ("2024-01-01T09:03:00.000Z", "Danke!"),
    ]
    assert jonas[2]["parts"][0]["name"] == "00000012-PHOTO-2023-12-31-21-42-31.jpg"
    iso = await messages_of(server, sessions["iso-chat"]["id"], "acme")
    assert [m["text"] for m in iso] == ["Reunião amanhã às 10h", "Combinado", "Levo o projetor"]

    # A grown export of the same chat adds only the new line; the same export adds nothing.
    grown = tmp_path / "WhatsApp Chat with Hiking club.txt"
    grown.write_text(hiking.read_text() + "1/1/24, 8:00 AM - Tom Baker: See you there\n")
    result = await cli(server, "import", "whatsapp", str(grown), "--tenant", "acme")
    assert "0 new session(s), 1 updated; 1 message(s) added, 5 already present" in result.output
    result = await cli(server, "import", "whatsapp", str(grown), "--tenant", "acme")
    assert "0 message(s) added, 6 already present" in result.output


async def test_mbox_threads_charsets_attachments_and_quoted_replies(
    server: RunningServer, tmp_path: Path
) -> None:
    path = DATA / "mail.mbox"
    result = await cli(server, "import", "mbox", str(path), "--tenant", "acme")
    assert result.exit_code == 1, result.output
    assert "mail.mbox:67: no Date header" in result.output
    assert "2 new session(s)" in result.output
    sessions = await sessions_of(server, "acme")
    assert set(sessions) == {"Q1 roadmap review", "Grüße aus Berlin"}
    thread = await messages_of(server, sessions["Q1 roadmap review"]["id"], "acme")
    first, bob, carol = thread
    assert first["author"] == "email.alice@example.com"
    assert "The café budget is on page 3." in first["text"]
    assert first["created_at"] == "2024-01-08T08:15:00.000Z"
    assert bob["text"].startswith("Looks good. One question on the café budget.")
    assert "> Please review the Q1 roadmap before Thursday." in bob["text"]
    assert "\nFrom the last review" in bob["text"]
    assert bob["parent_id"] == first["id"]
    assert carol["parent_id"] == first["id"]
    assert carol["parts"] == [
        {"type": "attachment", "name": "budget.pdf", "content_type": "application/pdf", "size": 16}
    ]
    assert bob["metadata"]["message_id"] == "roadmap-2@example.com"
    berlin = await messages_of(server, sessions["Grüße aus Berlin"]["id"], "acme")
    assert berlin[0]["text"] == "Viele Grüße!\nErin"
    async with server.http("alice") as h:
        people = (
            await h.get(f"/sessions/{sessions['Q1 roadmap review']['id']}/participants")
        ).json()
    assert {p["name"] for p in people["items"]} >= {"Alice Martin", "Bob Chen", "Carol Diaz"}

    # A later reply in the thread joins the same session.
    grown = tmp_path / "mail.mbox"
    grown.write_bytes(
        path.read_bytes() + b"\nFrom alice@example.com Wed Jan 10 09:00:00 2024\n"
        b"From: Alice Martin <alice@example.com>\nSubject: Re: Q1 roadmap review\n"
        b"Date: Wed, 10 Jan 2024 09:00:00 +0100\nMessage-ID: <roadmap-4@example.com>\n"
        b"In-Reply-To: <roadmap-3@example.com>\n"
        b"References: <roadmap-1@example.com> <roadmap-3@example.com>\n\nThanks Carol!\n"
    )
    result = await cli(server, "import", "mbox", str(grown), "--tenant", "acme")
    assert "0 new session(s), 1 updated; 1 message(s) added, 4 already present" in result.output
    thread = await messages_of(server, sessions["Q1 roadmap review"]["id"], "acme")
    assert thread[-1]["text"] == "Thanks Carol!"
    assert thread[-1]["parent_id"] == carol["id"]


async def test_discord_replies_bots_attachments_and_edits(server: RunningServer) -> None:
    path = DATA / "discord_general.json"
    result = await cli(server, "import", "discord", str(path), "--tenant", "acme")
    assert result.exit_code == 1, result.output
    assert (
        "discord_general.json:63: timestamp 'yesterday-ish' is not an ISO 8601 time"
        in result.output
    )
    assert "3 message(s) added" in result.output
    assert "1 record(s) skipped on purpose" in result.output
    sessions = await sessions_of(server, "acme")
    chat = sessions["#general (Open Source Club)"]
    assert chat["metadata"]["topic"] == "Talk about anything"
    welcome, question, answer = await messages_of(server, chat["id"], "acme")
    assert welcome["author"] == "discord.770000000000000001"
    assert welcome["edited_at"] == "2023-12-31T21:42:00.000Z"
    assert welcome["metadata"]["pinned"] is True
    assert welcome["parts"][0]["name"] == "notes.md"
    assert question["parent_id"] == welcome["id"]
    assert answer["parent_id"] == question["id"]
    async with server.http("alice") as h:
        people = (await h.get(f"/sessions/{chat['id']}/participants")).json()["items"]
    kinds = {p["name"]: p["kind"] for p in people}
    assert kinds["ci-bot"] == "bot"
    assert kinds["Mia (maintainer)"] == "human"
    result = await cli(server, "import", "discord", str(path), "--tenant", "acme")
    assert "0 message(s) added, 3 already present" in result.output


async def test_cli_imports_reach_a_running_server_live_over_redis(
    pg_database: str,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_url = redis_url_or_skip()
    settings = settings_factory(database_url=pg_database, broker_url=redis_url)
    async with start_server(settings) as server:
        path = DATA / "whatsapp" / "iso-chat.txt"
        await cli(server, "import", "whatsapp", str(path), "--tenant", "acme", "--as-user", "alice")
        sid = (await sessions_of(server, "acme"))["iso-chat"]["id"]
        async with server.client("alice") as ws:
            await ws.subscribe(sid)
            monkeypatch.setenv("PARLEY_BROKER_URL", redis_url)
            text = path.read_text() + "2024-01-01 09:00 - Rui: Bom dia\n"
            target = settings.data_dir / "iso-chat.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            result = await cli(
                server, "import", "whatsapp", str(target), "--tenant", "acme", "--as-user", "alice"
            )
            assert "1 message(s) added" in result.output
            (event,) = await ws.events(1)
            assert event["data"]["message"]["text"] == "Bom dia"


async def test_json_report_on_stdout_is_machine_readable(server: RunningServer) -> None:
    path = DATA / "discord_general.json"
    result = await cli(server, "import", "discord", str(path), "--tenant", "acme", "--json")
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    assert report["format"] == "discord"
    assert report["messages_added"] == 3
    assert report["errors"][0]["where"] == "discord_general.json:63"


async def test_the_installed_command_imports_and_exports(tmp_path: Path) -> None:
    """The real program in its own process: progress on stderr, the summary on stdout."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    store = ["--database-url", url, "--data-dir", str(tmp_path)]

    async def parley(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "parley.cli",
            *args,
            *store,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    path = DATA / "whatsapp" / "iso-chat.txt"
    code, out, err = await parley("import", "whatsapp", str(path), "--tenant", "t1")
    assert code == 0, err
    assert out.startswith("imported 1 conversation(s): 1 new session(s)")
    assert "importing iso-chat.txt" in err
    archive = tmp_path / "t1.zip"
    code, out, err = await parley("export", "tenant", "--tenant", "t1", "-o", str(archive))
    assert code == 0, err
    assert "exported 1 session(s)" in out
    with zipfile.ZipFile(archive) as z:
        (name,) = [n for n in z.namelist() if n.startswith("sessions/")]
        export = orjson.loads(z.read(name))
    assert [m["text"] for m in export["messages"]] == [
        "Reunião amanhã às 10h",
        "Combinado",
        "Levo o projetor",
    ]


async def test_messages_that_cannot_be_stored_are_named_by_line(
    server: RunningServer, tmp_path: Path
) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(
        "2024-01-01 10:00 - Ann: fine\n2024-01-01 10:01 - Ann: bad \x00 byte\n"
        "2024-01-01 10:02 - Ann: " + "x" * 40_000 + "\n"
    )
    result = await cli(server, "import", "whatsapp", str(chat), "--tenant", "acme")
    assert result.exit_code == 1
    assert "chat.txt:2: text contains a NUL character (U+0000)" in result.output
    assert "chat.txt:3: text is 40000 characters; the limit is 32000" in result.output
    assert "1 message(s) added" in result.output
