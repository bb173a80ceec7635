"""The object types of the GraphQL schema, built from the same wire views REST returns."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NewType, TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from parley.errors import InvalidRequest
from parley.gql.context import Context
from parley.relay.context import HISTORY_LIMIT, Turn, branch
from parley.storage.event_log import MAX_PAGE

Info = strawberry.Info[Context, None]

# Token and byte totals outgrow GraphQL's 32-bit Int; this scalar is a plain JSON number
# (registered in the schema's scalar_map, schema.py).
Long = NewType("Long", int)
LONG_SCALAR = strawberry.scalar(
    name="Long",
    serialize=int,
    parse_value=int,
    description="An integer that may exceed 32 bits (a JSON number).",
)


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def from_view(cls: type[T], view: Mapping[str, Any], **given: Any) -> T:
    """An object type filled from the REST wire view of the same thing: every data field
    takes the view's value of its name (a view missing one is a bug, so KeyError), except
    those ``given`` explicitly. IDs need no conversion: ``strawberry.ID`` is a ``str``."""
    fields = (f.name for f in dataclasses.fields(cls) if f.init)  # type: ignore[arg-type]
    return cls(**{name: view[name] for name in fields if name not in given}, **given)


def described(text: str) -> Callable[[F], F]:
    """``@strawberry.field(description=...)`` with its type kept for mypy."""
    return cast(Callable[[F], F], strawberry.field(description=text))


def encode_cursor(kind: str, value: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The value inside a cursor of ``kind``; a precise error for anything else."""
    if cursor is None:
        return None
    try:
        found, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        found, value = "", ""
    if found != kind or not value:
        raise InvalidRequest(f"after: {cursor[:80]!r} is not a cursor of this list")
    return value


def check_first(first: int, limit: int) -> int:
    if not 1 <= first <= limit:
        raise InvalidRequest(f"first must be between 1 and {limit} (the largest page)")
    return first


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class Attachment:
    id: strawberry.ID
    name: str
    content_type: str
    size: Long
    sha256: str
    width: int | None
    height: int | None
    url: str
    thumbnail_url: str | None

    @classmethod
    def of(cls, v: dict[str, Any]) -> Attachment:
        return from_view(
            cls,
            v,
            id=v.get("attachment_id") or v["id"],
            width=v.get("width"),
            height=v.get("height"),
            thumbnail_url=v.get("thumbnail_url"),
        )


@strawberry.type
class Participant:
    user_id: str
    name: str
    kind: str
    role: str
    joined_at: str

    @classmethod
    def of(cls, v: dict[str, Any]) -> Participant:
        return from_view(cls, v)


@strawberry.type
class Message:
    id: strawberry.ID
    session_id: strawberry.ID
    seq: Long
    author: str
    text: str
    parts: JSON | None
    metadata: JSON
    parent_id: strawberry.ID | None
    created_at: str
    edited_at: str | None
    deleted_at: str | None

    @classmethod
    def of(cls, v: dict[str, Any]) -> Message:
        return from_view(
            cls,
            v,
            session_id=v["session"],
            parent_id=v["parent_id"] or None,
        )

    @strawberry.field
    def edited(self) -> bool:
        return self.edited_at is not None

    @strawberry.field
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @described("The files this message carries (from its parts).")
    def attachments(self) -> list[Attachment]:
        parts: list[dict[str, Any]] = self.parts if isinstance(self.parts, list) else []
        return [Attachment.of(p) for p in parts if p.get("type") == "attachment"]

    @described("The message this one replies to.")
    async def parent(self, info: Info) -> Message | None:
        if self.parent_id is None:
            return None
        found = await info.context.messages.load(str(self.parent_id))
        return Message.of(found) if found is not None else None


@strawberry.type
class MessageConnection:
    nodes: list[Message]
    page_info: PageInfo


@strawberry.type
class Annotation:
    id: strawberry.ID
    message_id: str | None
    kind: str
    body: str
    author: str | None
    created: str | None
    resolved: bool
    resolved_by: str | None
    resolved_at: str | None
    range: JSON | None
    replies: JSON

    @classmethod
    def of(cls, v: dict[str, Any]) -> Annotation:
        return from_view(cls, v)


@strawberry.type
class Assistant:
    id: strawberry.ID
    name: str
    user_id: str
    provider: str
    model: str
    trigger: str
    busy_policy: str

    @classmethod
    def of(cls, v: dict[str, Any]) -> Assistant:
        return from_view(cls, v)


@strawberry.type
class Usage:
    answers: int
    input_tokens: Long
    output_tokens: Long
    cost: float | None = strawberry.field(
        description="Total cost of the answers with a known price; null when none had one."
    )
    currency: str | None

    @classmethod
    def of(cls, v: dict[str, Any]) -> Usage:
        return from_view(cls, v)


@strawberry.type
class Session:
    id: strawberry.ID
    title: str
    tags: list[str]
    status: str
    metadata: JSON
    created_by: str
    created_at: str
    updated_at: str
    last_seq: Long

    @classmethod
    def of(cls, v: dict[str, Any]) -> Session:
        return from_view(cls, v)

    @strawberry.field
    async def participants(self, info: Info) -> list[Participant]:
        return [Participant.of(v) for v in await info.context.participants.load(str(self.id))]

    @described(
        "Messages oldest first, deleted ones as tombstones. With `branch` (a"
        " message id): only the messages on that message's branch, up to it."
    )
    async def messages(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        branch: strawberry.ID | None = None,
    ) -> MessageConnection:
        ctx = info.context
        first = check_first(first, ctx.max_page)
        after_value = decode_cursor("seq", after)
        if after_value is not None and not after_value.isdigit():
            raise InvalidRequest(f"after: {after!r} is not a cursor of this list")
        after_seq = int(after_value or 0)
        if branch is not None:
            items = await self._branch(info, str(branch))
            items = [v for v in items if v["seq"] > after_seq][: first + 1]
        else:
            items = await ctx.message_pages.load((str(self.id), after_seq, first + 1))
        more = len(items) > first
        items = items[:first]
        end = encode_cursor("seq", items[-1]["seq"]) if items else None
        return MessageConnection(
            nodes=[Message.of(v) for v in items],
            page_info=PageInfo(end_cursor=end, has_next_page=more),
        )

    async def _branch(self, info: Info, leaf_id: str) -> list[dict[str, Any]]:
        """The leaf's branch as the relay defines it (relay/context.py), tombstones kept."""
        ctx = info.context
        leaf = await ctx.messages.load(leaf_id)
        if leaf is None or leaf["session"] != str(self.id):
            raise InvalidRequest(f"branch: message {leaf_id[:80]!r} is not in this session")
        history: list[dict[str, Any]] = []
        after = 0
        while len(history) < HISTORY_LIMIT:
            page = await ctx.service.list_messages(
                ctx.principal,
                str(self.id),
                after_seq=after,
                before_seq=leaf["seq"] + 1,
                limit=MAX_PAGE,
            )
            history += page
            if len(page) < MAX_PAGE:
                break
            after = page[-1]["seq"]
        by_id = {v["id"]: v for v in history}
        turns = [
            Turn(v["id"], v["seq"], v["author"], v["author"], v["parent_id"], "", False)
            for v in history
        ]
        prompt = next(t for t in turns if t.id == leaf_id)
        return [by_id[t.id] for t in branch(turns, prompt)]

    @described("Annotations of the session's document, oldest first.")
    async def annotations(self, info: Info, message_id: str | None = None) -> list[Annotation]:
        ctx = info.context
        view = await ctx.docs.document(ctx.principal, str(self.id))
        items = view["annotations"]
        if message_id is not None:
            items = [a for a in items if a["message_id"] == message_id]
        return [Annotation.of(a) for a in items]

    @strawberry.field
    async def assistants(self, info: Info) -> list[Assistant]:
        ctx = info.context
        return [
            Assistant.of(v) for v in await ctx.relay.assistants.list(ctx.principal, str(self.id))
        ]

    @described("Tokens and cost of the assistants' answers in this session.")
    async def usage(self, info: Info) -> Usage:
        return Usage.of(await info.context.session_usage.load(str(self.id)))

    @described("Every file uploaded to the session, oldest first.")
    async def attachments(self, info: Info) -> list[Attachment]:
        ctx = info.context
        return [
            Attachment.of(v) for v in await ctx.attachments.manifest(ctx.principal, str(self.id))
        ]


@strawberry.type
class SessionConnection:
    nodes: list[Session]
    page_info: PageInfo


@strawberry.type
class AssistantUsage:
    assistant_id: str | None
    name: str | None
    provider: str | None
    model: str | None
    answers: int
    input_tokens: Long
    output_tokens: Long
    cost: float | None
    currency: str | None


@strawberry.type
class Analytics:
    sessions: int
    messages: Long
    active_users: int
    active_days: int
    assistants: list[AssistantUsage]


@strawberry.type
class Viewer:
    user_id: str
    tenant_id: str
    name: str
    kind: str
    tenant_role: str
