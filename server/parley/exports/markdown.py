"""A session export (``session_json``) as a readable Markdown transcript. No I/O.

Messages appear in seq order, numbered. A reply that does not follow the message it answers
names it ("reply to #3"); where the conversation forks, each reply says which branch it starts
("branch 2 of 3 from #4"). Annotations follow the message they are on; notes come last.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""])


def _when(ts: str | None) -> str:
    return (ts or "").replace("T", " ").replace("Z", " UTC").replace(".000", "")


def render(export: dict[str, Any]) -> str:
    """The transcript of one exported session."""
    session = export["session"]
    names = {p["user_id"]: p["name"] for p in export["participants"]}
    messages: list[dict[str, Any]] = export["messages"]
    number = {msg["id"]: i for i, msg in enumerate(messages, 1)}
    children: dict[str, list[str]] = defaultdict(list)
    for msg in messages:
        if msg["parent_id"]:
            children[msg["parent_id"]].append(msg["id"])
    annotations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    document = export.get("document") or {}
    for note in document.get("annotations") or []:
        annotations[note.get("message_id") or ""].append(note)

    out = [f"# {session['title'] or 'Untitled session'}", ""]
    facts = [f"Created {_when(session['created_at'])}", f"status {session['status']}"]
    if session["tags"]:
        facts.append("tags: " + ", ".join(f"`{t}`" for t in session["tags"]))
    out += ["*" + " · ".join(facts) + "*", "", "## Participants", ""]
    for part in export["participants"]:
        out.append(f"- **{part['name']}** (`{part['user_id']}`, {part['kind']}, {part['role']})")
    if export.get("assistants"):
        out += ["", "## Assistants", ""]
        for a in export["assistants"]:
            out.append(f"- **@{a['name']}**: {a['provider']} / {a['model']}")
            if a["system_prompt"]:
                out += ["", _quote(a["system_prompt"]), ""]
    out += ["", "## Transcript", ""]
    previous: str | None = None
    for msg in messages:
        n = number[msg["id"]]
        head = f"**{names.get(msg['author'], msg['author'])}** · {_when(msg['created_at'])} · #{n}"
        parent = msg["parent_id"]
        if parent:
            siblings = children[parent]
            if len(siblings) > 1:
                where = siblings.index(msg["id"]) + 1
                head += f" · branch {where} of {len(siblings)} from #{number.get(parent, '?')}"
            elif parent != previous:
                head += f" · reply to #{number.get(parent, '?')}"
        if msg["edited_at"]:
            head += " · edited"
        out += [head, ""]
        if msg["deleted_at"]:
            out.append("*(deleted)*")
        else:
            out.append(msg["text"] or "")
            for part in msg["parts"] or []:
                if part.get("type") == "attachment":
                    label = part.get("name") or part.get("url") or "attachment"
                    out.append(f"\n📎 {label}")
        for note in annotations.get(msg["id"], []):
            state = " (resolved)" if note.get("resolved") else ""
            who = names.get(note.get("author") or "", note.get("author") or "someone")
            out.append("")
            out.append(_quote(f"{note.get('kind', 'comment')} by {who}{state}: {note['body']}"))
            for reply in note.get("replies") or []:
                rwho = names.get(reply.get("author") or "", reply.get("author") or "someone")
                out.append(_quote(f"↳ {rwho}: {reply.get('body', '')}"))
        out += ["", "---", ""]
        previous = msg["id"]
    if document.get("notes"):
        out += ["## Notes", "", document["notes"], ""]
    usage = (export.get("usage") or {}).get("total") or {}
    if usage.get("messages"):
        out += [
            "## Usage",
            "",
            f"{usage['messages']} assistant answers, {usage['input_tokens']} input and "
            f"{usage['output_tokens']} output tokens, cost {usage['cost']:.4f}",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
