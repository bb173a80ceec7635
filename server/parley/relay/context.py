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

Attachments: a message's attachment parts reach the model as the provider's image blocks when
the file is an image, the assistant's model accepts images (:func:`accepts_images`) and the
image is among the newest ``MAX_IMAGES`` of the context (scaled down when it is over the
relay's side or byte limit: ``AttachmentService.image_for_model``); every other
attachment (and every image the model cannot take) becomes a line of text naming the file, so
the model knows something was shared.

Trimming: tokens are estimated as UTF-8 bytes / 4 (rounded up) plus 4 per message. The budget
is the context window minus the answer's token limit minus the system prompt. The prompt is
always kept (cut from the front if it alone is too long); then earlier messages are added from
the newest back while they fit; the oldest are dropped first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.attachments.refs import PART_TYPE
from parley.attachments.sniff import IMAGE_TYPES
from parley.errors import InvalidRequest, NotFound
from parley.relay.assistants import AssistantSpec
from parley.relay.providers.base import ChatMessage, ImageInput, ProviderRequest
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


MAX_IMAGES = 8  # newest images sent per request; older ones become text placeholders
IMAGE_TOKENS = 1_600  # what one image costs in the estimate (about a megapixel on either API)

# Models that accept images, by provider (a model name starting with one of these). Any
# provider's model also qualifies when it starts with a prefix of PARLEY_RELAY_VISION_MODELS.
VISION_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-4.5", "gpt-5", "o1", "o3", "o4"),
    "openai_responses": ("gpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-4.5", "gpt-5", "o1", "o3", "o4"),
    "anthropic": ("claude-3", "claude-sonnet", "claude-opus", "claude-haiku", "claude-4"),
}


def accepts_images(spec: AssistantSpec, extra_prefixes: str = "") -> bool:
    """Whether the assistant's provider and model take image input (the capability flag)."""
    prefixes = VISION_PREFIXES.get(spec.provider, ())
    extra = tuple(p.strip() for p in extra_prefixes.split(",") if p.strip())
    return spec.provider != "scripted" and spec.model.startswith(prefixes + extra)


def wanted_images(turns: list[Turn]) -> list[tuple[str, str]]:
    """(sha256, type) of the newest images of the context (at most ``MAX_IMAGES``), newest
    first: the ones worth sending."""
    out: list[tuple[str, str]] = []
    for turn in reversed(turns):
        for part in reversed(turn.attachments):
            sha, kind = part.get("sha256"), part.get("content_type")
            if kind in IMAGE_TYPES and isinstance(sha, str) and (sha, kind) not in out:
                out.append((sha, str(kind)))
                if len(out) == MAX_IMAGES:
                    return out
    return out


def placeholder(part: Mapping[str, Any]) -> str:
    """The line that stands for an attachment the model does not get as an image."""
    kind = "image" if part.get("content_type") in IMAGE_TYPES else "attachment"
    return f"[{kind}: {part.get('name')} ({part.get('content_type')}, {part.get('size')} bytes)]"


def _with_attachments(
    turn: Turn, content: str, images: Mapping[str, ImageInput]
) -> tuple[str, tuple[ImageInput, ...]]:
    sent: list[ImageInput] = []
    lines = [content] if turn.text or not turn.attachments else [content.rstrip()]
    for part in turn.attachments:
        image = images.get(str(part.get("sha256")))
        if image is not None and part.get("content_type") in IMAGE_TYPES:
            sent.append(image)
        else:
            lines.append(placeholder(part))
    return "\n".join(lines), tuple(sent)


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
    attachments: tuple[dict[str, Any], ...] = ()  # the message's attachment parts


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
    images: Mapping[str, ImageInput] | None = None,
) -> Built:
    """The provider request for ``turns`` (the branch, oldest first, the prompt last).

    ``images`` maps sha256 to the images to send as image blocks (empty when the model takes
    none); other attachments become placeholder lines."""
    images = images or {}
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
        content, pictures = _with_attachments(turn, content, images)
        if own:
            pictures = ()  # an assistant turn carries no images on any API
        cost = estimate_tokens(content) + MESSAGE_OVERHEAD + IMAGE_TOKENS * len(pictures)
        if i == 0 and cost > budget:
            keep = max(0, (budget - MESSAGE_OVERHEAD) * 4)
            content = "\u2026" + content.encode()[-keep:].decode(errors="ignore") if keep else ""
            pictures = ()
            cost = estimate_tokens(content) + MESSAGE_OVERHEAD
        elif i > 0 and used + cost > budget:
            dropped = len(turns) - i
            break
        used += cost
        messages.append(ChatMessage("assistant" if own else "user", content, pictures))
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
            attachments=tuple(p for p in msg.parts or () if p.get("type") == PART_TYPE),
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
