"""What the model sees: the prompt's branch, who is speaking, the system prompt, trimmed to fit.

The branch of a prompt (docs/relay.md, "Context"): follow ``parent_id`` from the prompt until a
message without one (the *root*); the context is every message before the root, then the root,
then the chain back down to the prompt. In a plain linear chat (no ``parent_id``) that is the
whole conversation up to the prompt; answers, which point at their prompt, stay in it; an
explicit branch (a message with ``parent_id`` pointing at an older message) sees the
conversation up to its branch point and its own chain, not the messages written after the
branch point elsewhere. Deleted messages are left out.

Roles: the assistant's own earlier answers are ``assistant`` turns; everyone else's messages
are ``user`` turns that start with the speaker's name (``Alice: ...``), so the model can tell
people apart. The prompt is always a ``user`` turn and always the last one.

Trimming: tokens are estimated as UTF-8 bytes / 4 (rounded up) plus 4 per message. The budget
is the context window minus the answer's token limit minus the system prompt. The prompt is
always kept (cut from the front if it alone is too long); then earlier messages are added from
the newest back while they fit; the oldest are dropped first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import InvalidRequest, NotFound
from parley.relay.assistants import AssistantSpec
from parley.relay.providers.base import ChatMessage, ProviderRequest
from parley.sessions.queries import plausible_id
from parley.storage import models as m

MESSAGE_OVERHEAD = 4  # tokens of role and framing per message, roughly
HISTORY_LIMIT = 2000  # messages read before the root at most; older ones would not fit anyway

# Context windows of well-known model families (longest matching prefix wins). An assistant's
# own ``context_window`` overrides this; unknown models get PARLEY_RELAY_CONTEXT_WINDOW.
KNOWN_WINDOWS = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
    "claude": 200_000,
    "scripted": 1_000_000,
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message as the context builder needs it."""

    id: str
    seq: int
    author_id: str
    author_name: str
    parent_id: str | None
    text: str
    deleted: bool


def estimate_tokens(text: str) -> int:
    """A deliberately simple estimate: UTF-8 bytes / 4, rounded up (no tokenizer needed)."""
    return math.ceil(len(text.encode()) / 4)


def context_window(spec: AssistantSpec, default: int) -> int:
    """The assistant's window, else the longest known model prefix's, else ``default``."""
    if spec.context_window:
        return spec.context_window
    best = ""
    for prefix in KNOWN_WINDOWS:
        if spec.model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return KNOWN_WINDOWS[best] if best else default


def branch(turns: list[Turn], prompt: Turn) -> list[Turn]:
    """The prompt's branch, oldest first (see the module docstring). Pure."""
    by_id = {t.id: t for t in turns}
    chain = [prompt]
    seen = {prompt.id}
    cur = prompt
    while cur.parent_id is not None:
        parent = by_id.get(cur.parent_id)
        if parent is None or parent.id in seen or parent.seq >= cur.seq:
            break  # outside what was read, or a malformed link: stop here
        chain.append(parent)
        seen.add(parent.id)
        cur = parent
    root = chain[-1]
    before = [t for t in turns if t.seq < root.seq and t.id not in seen]
    out = before + list(reversed(chain))
    return [t for t in out if not t.deleted]


@dataclass(frozen=True, slots=True)
class Built:
    request: ProviderRequest
    estimated_input_tokens: int
    dropped: int  # earlier messages left out to fit the window


def build_request(
    spec: AssistantSpec,
    turns: list[Turn],
    participants: list[str],
    *,
    default_window: int,
    default_max_output: int,
) -> Built:
    """The provider request for ``turns`` (the branch, oldest first, the prompt last)."""
    max_out = spec.max_output_tokens or default_max_output
    window = context_window(spec, default_window)
    max_out = min(max_out, max(1, window // 2))
    system = system_prompt(spec, participants)
    budget = window - max_out - estimate_tokens(system) - MESSAGE_OVERHEAD
    messages: list[ChatMessage] = []
    used = 0
    dropped = 0
    for i, turn in enumerate(reversed(turns)):
        own = turn.author_id == spec.user_id and i > 0
        content = turn.text if own else f"{turn.author_name}: {turn.text}"
        cost = estimate_tokens(content) + MESSAGE_OVERHEAD
        if i == 0 and cost > budget:
            keep = max(0, (budget - MESSAGE_OVERHEAD) * 4)
            content = "\u2026" + content.encode()[-keep:].decode(errors="ignore") if keep else ""
            cost = estimate_tokens(content) + MESSAGE_OVERHEAD
        elif i > 0 and used + cost > budget:
            dropped = len(turns) - i
            break
        used += cost
        messages.append(ChatMessage("assistant" if own else "user", content))
    messages.reverse()
    request = ProviderRequest(
        model=spec.model,
        system=system,
        messages=messages,
        max_output_tokens=max_out,
        params=dict(spec.params),
    )
    return Built(request, used + estimate_tokens(system), dropped)


def system_prompt(spec: AssistantSpec, participants: list[str]) -> str:
    """The assistant's own system prompt, then who it is and who else is in the room."""
    lines = [spec.system_prompt.strip()] if spec.system_prompt.strip() else []
    lines.append(
        f"You are {spec.name}, an assistant in a shared conversation with several "
        "participants. Each of their messages starts with the speaker's name. "
        "Answer the last message."
    )
    if participants:
        lines.append("Participants: " + ", ".join(participants) + ".")
    return "\n\n".join(lines)


def read_branch(
    s: Session, spec: AssistantSpec, prompt_id: str | None
) -> tuple[list[Turn], list[str]]:
    """Inside a read unit of work: the prompt's branch and the participants' names.

    ``prompt_id`` None means the session's latest message.
    """
    q = (
        select(m.Message, m.User.display_name)
        .outerjoin(
            m.User,
            (m.User.tenant_id == m.Message.tenant_id) & (m.User.id == m.Message.author_id),
        )
        .where(m.Message.tenant_id == spec.tenant_id, m.Message.session_id == spec.session_id)
    )
    if prompt_id is not None:
        if not plausible_id(prompt_id):
            raise NotFound(f"message {prompt_id[:80]!r} not found in this session")
        prompt_seq = s.scalar(
            select(m.Message.seq).where(
                m.Message.tenant_id == spec.tenant_id,
                m.Message.id == prompt_id,
                m.Message.session_id == spec.session_id,
            )
        )
        if prompt_seq is None:
            raise NotFound(f"message {prompt_id!r} not found in this session")
        q = q.where(m.Message.seq <= prompt_seq)
    rows = s.execute(q.order_by(m.Message.seq.desc()).limit(HISTORY_LIMIT)).all()
    turns = [
        Turn(
            id=msg.id,
            seq=msg.seq,
            author_id=msg.author_id,
            author_name=name or msg.author_id,
            parent_id=msg.parent_id,
            text=msg.text,
            deleted=msg.deleted_at is not None,
        )
        for msg, name in reversed(rows)
    ]
    if not turns:
        raise InvalidRequest("the session has no message to answer")
    prompt = turns[-1]
    if prompt_id is not None and prompt.deleted:
        raise InvalidRequest("the prompt message was deleted")
    if prompt_id is None:
        live = [t for t in turns if not t.deleted]
        if not live:
            raise InvalidRequest("the session has no message to answer")
        prompt = live[-1]
    names = s.execute(
        select(m.User.display_name, m.User.kind)
        .join(
            m.Participant,
            (m.Participant.tenant_id == m.User.tenant_id) & (m.Participant.user_id == m.User.id),
        )
        .where(
            m.Participant.tenant_id == spec.tenant_id, m.Participant.session_id == spec.session_id
        )
        .order_by(m.Participant.joined_at)
    ).all()
    people = [f"{n} (assistant)" if k == "assistant" else n for n, k in names]
    return branch(turns, prompt), people
