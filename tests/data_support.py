"""Support for the import, export and template tests: the ``parley`` CLI run in a thread
against a running test server's store, and exports normalized for comparison."""

from __future__ import annotations

import asyncio
import logging
import zipfile
from pathlib import Path
from typing import Any

import structlog
from click.testing import CliRunner, Result

from parley.cli import main
from tests.support import RunningServer


async def cli(server: RunningServer, *args: str) -> Result:
    """Run ``parley ARGS...`` on the server's database (in a thread: the CLI runs its own
    event loop)."""
    store = [
        "--database-url",
        server.settings.effective_database_url,
        "--data-dir",
        str(server.settings.data_dir),
    ]
    runner = CliRunner()
    # The command configures logging for its process (to its captured stderr here); put the
    # test process's logging back afterwards.
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    try:
        return await asyncio.to_thread(runner.invoke, main, [*args, *store], catch_exceptions=False)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


def normalized(export: dict[str, Any]) -> dict[str, Any]:
    """What must survive an export and import: everything but ids, seqs and the times of
    the import itself. Messages are named by their position, the tree by positions too."""
    messages = export["messages"]
    index = {m["id"]: i for i, m in enumerate(messages)}
    assistants = {a["id"]: a["name"] for a in export["assistants"]}

    def meta(m: dict[str, Any]) -> dict[str, Any]:
        out = dict(m["metadata"])
        if "assistant" in out:
            out["assistant"] = assistants.get(out["assistant"], "?")
        return out

    doc = export["document"]
    return {
        "session": {
            k: export["session"][k]
            for k in ("title", "metadata", "tags", "status", "created_by", "created_at")
        },
        "participants": sorted(
            (p["user_id"], p["name"], p["kind"], p["role"]) for p in export["participants"]
        ),
        "messages": [
            {
                "author": m["author"],
                "parent": index.get(m["parent_id"]) if m["parent_id"] else None,
                "text": m["text"],
                "parts": m["parts"],
                "metadata": meta(m),
                "created_at": m["created_at"],
                "edited_at": m["edited_at"],
                "deleted_at": m["deleted_at"],
            }
            for m in messages
        ],
        "branches": [
            (index[b["message_id"]], [index[c] for c in b["children"]]) for b in export["branches"]
        ],
        "annotations": [
            {**a, "message_id": index.get(a["message_id"])} for a in doc["annotations"]
        ],
        "notes": doc["notes"],
        "labels": doc["labels"],
        "pins": [index[p] for p in doc["pins"]],
        "assistants": [{k: v for k, v in a.items() if k != "id"} for a in export["assistants"]],
        "usage": export["usage"],
    }


DATA = Path(__file__).parent / "data" / "imports"


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip ``folder``'s files (paths relative to it), as Slack's export does."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


async def sessions_of(server: RunningServer, tenant: str, user: str = "alice") -> dict[str, Any]:
    """The tenant's sessions by title."""
    async with server.http(user, tenant) as h:
        items = (await h.get("/sessions")).json()["items"]
    return {i["title"]: i for i in items}


async def messages_of(
    server: RunningServer, sid: str, tenant: str, user: str = "alice"
) -> list[dict[str, Any]]:
    async with server.http(user, tenant) as h:
        r = await h.get(f"/sessions/{sid}/messages")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items
