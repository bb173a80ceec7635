"""Client frame schemas of protocol v1.

Every client frame is an object with a string ``type`` and an optional ``id`` (string or integer
chosen by the client) that the server echoes as ``ref`` in the ``ack`` or ``error`` answering it.
Unknown fields are refused so that typos surface as errors instead of silently doing nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PROTOCOL_VERSION = 1

FrameId = (
    Annotated[str, StringConstraints(min_length=1, max_length=128)]
    | Annotated[int, Field(ge=0, le=2**53)]
)
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Seq = Annotated[int, Field(ge=0, le=2**53)]


class Part(BaseModel):
    """One structured part of a message (text, image, file, tool call...)."""

    model_config = ConfigDict(strict=True, extra="allow")
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]


Parts = Annotated[list[Part], Field(max_length=64)]
Metadata = Annotated[dict[str, Any], Field(max_length=64)]


class _Frame(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    id: FrameId | None = None


class Hello(_Frame):
    type: Literal["hello"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    protocol: Literal[1] = 1


class Auth(_Frame):
    """A fresh token for an authenticated connection (same user and tenant), before the old
    one expires; the connection then lives until the new token's expiry."""

    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class Subscribe(_Frame):
    type: Literal["subscribe"]
    session: SessionId
    since_seq: Seq | None = None


class Unsubscribe(_Frame):
    type: Literal["unsubscribe"]
    session: SessionId


class Send(_Frame):
    type: Literal["send"]
    session: SessionId
    client_id: ClientId | None = None
    text: str = ""
    parts: Parts | None = None
    parent_id: MessageId | None = None
    metadata: Metadata | None = None


class Edit(_Frame):
    type: Literal["edit"]
    session: SessionId
    message_id: MessageId
    text: str | None = None
    parts: Parts | None = None
    metadata: Metadata | None = None


class Delete(_Frame):
    type: Literal["delete"]
    session: SessionId
    message_id: MessageId


class Typing(_Frame):
    type: Literal["typing"]
    session: SessionId
    active: bool = True


class Ping(_Frame):
    type: Literal["ping"]


# Collaborative documents multiplexed on this socket (docs/documents.md): ``data`` is one
# y-protocol message, bytes in msgpack, base64 text in JSON.
DocData = bytes | Annotated[str, StringConstraints(min_length=1)]


class DocJoin(_Frame):
    type: Literal["doc_join"]
    session: SessionId


class DocLeave(_Frame):
    type: Literal["doc_leave"]
    session: SessionId


class Doc(_Frame):
    type: Literal["doc"]
    session: SessionId
    data: DocData


# The LLM relay (docs/relay.md): ask an assistant, stop a generation, get the text so far of
# a session's running generations (a ``stream.snapshot`` event, then the ack).
StreamId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Ask(_Frame):
    type: Literal["ask"]
    session: SessionId
    assistant: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    text: str | None = None  # posted as the caller's prompt; or answer message_id
    message_id: MessageId | None = None
    parent_id: MessageId | None = None  # of the posted prompt
    client_id: ClientId | None = None  # of the posted prompt (idempotent asks)


class Stop(_Frame):
    type: Literal["stop"]
    session: SessionId
    stream_id: StreamId


class Streams(_Frame):
    type: Literal["streams"]
    session: SessionId


# Messages a client streams (docs/protocol.md, "Streaming a message"): the relay's stream
# events, written by a bot instead of an LLM.
class StreamStart(_Frame):
    type: Literal["stream_start"]
    session: SessionId
    parent_id: MessageId | None = None  # of the message being written
    client_id: ClientId | None = None  # of the message being written (idempotent store)


class StreamDelta(_Frame):
    type: Literal["stream_delta"]
    session: SessionId
    stream_id: StreamId
    text: Annotated[str, StringConstraints(min_length=1)]


class StreamEnd(_Frame):
    type: Literal["stream_end"]
    session: SessionId
    stream_id: StreamId
    cancel: bool = False  # store what was written with finish reason "cancelled"
    metadata: Metadata | None = None  # of the stored message


# -- live tenant feed (integrations/live.py, docs/integrations.md) ----------------------------

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
EventPattern = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class FeedSubscribe(_Frame):
    type: Literal["feed_subscribe"]
    types: Annotated[list[EventPattern], Field(max_length=50)] = []
    sessions: Annotated[list[SessionId], Field(max_length=100)] = []
    tags: Annotated[list[Tag], Field(max_length=50)] = []
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=48)] | None = None


class FeedUnsubscribe(_Frame):
    type: Literal["feed_unsubscribe"]


ClientFrame = Annotated[
    Hello
    | Auth
    | Subscribe
    | Unsubscribe
    | Send
    | Edit
    | Delete
    | Typing
    | Ping
    | DocJoin
    | DocLeave
    | Doc
    | Ask
    | Stop
    | Streams
    | StreamStart
    | StreamDelta
    | StreamEnd
    | FeedSubscribe
    | FeedUnsubscribe,
    Field(discriminator="type"),
]

CLIENT_FRAME_TYPES = frozenset(
    {"hello", "auth", "subscribe", "unsubscribe", "send", "edit", "delete", "typing", "ping"}
    | {"doc_join", "doc_leave", "doc"}
    | {"ask", "stop", "streams"}
    | {"stream_start", "stream_delta", "stream_end"}
    | {"feed_subscribe", "feed_unsubscribe"}
)
