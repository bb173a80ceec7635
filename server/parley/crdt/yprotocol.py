"""The y-protocol as y-websocket speaks it: lib0 encoding, sync and awareness messages. No I/O.

One WebSocket frame carries one message::

    message        = varuint type, body
    type 0 sync    = varuint sync type, varbytes payload
                     0 step 1: payload is a state vector ("what I have")
                     1 step 2: payload is an update ("what you were missing")
                     2 update: payload is an update (a live change)
    type 1 awareness = varbytes awareness update
    type 2 auth    = varuint 0 (permission denied), varstring reason
    type 3 query awareness (no body): "send me every awareness state you know"

    awareness update = varuint count, count x (varuint client id, varuint clock,
                                               varstring state as JSON, "null" when gone)

Trailing bytes after a message are ignored, as the JavaScript implementation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

MAX_VARUINT_BYTES = 8  # 53-bit integers at most, as in JavaScript


class YProtocolError(ValueError):
    """A message that does not follow the y-protocol."""


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


# -- lib0 primitives ---------------------------------------------------------------------------


def write_varuint(value: int) -> bytes:
    """lib0 variable-length unsigned integer: 7 bits per byte, low bits first."""
    if value < 0:
        raise ValueError("varuint must not be negative")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_varbytes(data: bytes) -> bytes:
    """Length-prefixed bytes (lib0 ``writeVarUint8Array``)."""
    return write_varuint(len(data)) + data


def write_varstring(text: str) -> bytes:
    """Length-prefixed UTF-8 (lib0 ``writeVarString``)."""
    return write_varbytes(text.encode())


class Reader:
    """Reads lib0 primitives from a buffer; every overrun raises :class:`YProtocolError`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise YProtocolError("unexpected end of message")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varuint(self) -> int:
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # one byte: by far the most common case
            self.pos = pos + 1
            return data[pos]
        # Inlined rather than through byte(): client ids take eight bytes, and state vectors
        # and updates are read for every update a client sends.
        end = min(pos + MAX_VARUINT_BYTES, len(data))
        value = shift = 0
        while pos < end:
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return value
            shift += 7
        if end - self.pos == MAX_VARUINT_BYTES:
            raise YProtocolError("varuint too long")
        raise YProtocolError("unexpected end of message")

    def varint(self) -> int:
        """lib0 signed varint: the first byte holds a sign bit and 6 value bits."""
        b = self.byte()
        negative = bool(b & 0x40)
        value = b & 0x3F
        shift = 6
        more = b & 0x80
        count = 1
        while more:
            count += 1
            if count > MAX_VARUINT_BYTES + 1:
                raise YProtocolError("varint too long")
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            more = b & 0x80
        return -value if negative else value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise YProtocolError("length runs past the end of the message")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varbytes(self) -> bytes:
        return self.take(self.varuint())

    def varstring(self) -> str:
        try:
            return self.varbytes().decode()
        except UnicodeDecodeError:
            raise YProtocolError("string is not valid UTF-8") from None


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    update: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class AuthMessage:
    denied: bool
    reason: str


YMessage = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness | AuthMessage


def parse_message(data: bytes) -> YMessage:
    """Decode one y-protocol message. Raises :class:`YProtocolError`."""
    r = Reader(data)
    kind = r.varuint()
    if kind == MessageType.SYNC:
        sync = r.varuint()
        payload = r.varbytes()
        if sync == SyncType.STEP1:
            return SyncStep1(payload)
        if sync == SyncType.STEP2:
            return SyncStep2(payload)
        if sync == SyncType.UPDATE:
            return SyncUpdate(payload)
        raise YProtocolError(f"unknown sync message type {sync}")
    if kind == MessageType.AWARENESS:
        return AwarenessMessage(r.varbytes())
    if kind == MessageType.QUERY_AWARENESS:
        return QueryAwareness()
    if kind == MessageType.AUTH:
        denied = r.varuint() == 0
        return AuthMessage(denied, r.varstring() if denied else "")
    raise YProtocolError(f"unknown message type {kind}")


def sync_step1(state_vector: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncType.STEP1)) + write_varbytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncType.STEP2)) + write_varbytes(update)


def sync_update(update: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncType.UPDATE)) + write_varbytes(update)


def awareness_message(update: bytes) -> bytes:
    return bytes((MessageType.AWARENESS,)) + write_varbytes(update)


def query_awareness() -> bytes:
    return bytes((MessageType.QUERY_AWARENESS,))


def permission_denied(reason: str) -> bytes:
    """The only error a stock y-websocket client understands (it logs the reason)."""
    return bytes((MessageType.AUTH, 0)) + write_varstring(reason)


# -- awareness updates -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's presence: ``state`` is its JSON text, or None when the client is gone."""

    client_id: int
    clock: int
    state: str | None


def decode_awareness(update: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update. ``"null"`` (and an empty string) mean the client left."""
    r = Reader(update)
    count = r.varuint()
    if count > r.remaining:  # every entry takes at least three bytes; refuse absurd counts early
        raise YProtocolError("awareness entry count exceeds the message")
    entries = []
    for _ in range(count):
        client_id = r.varuint()
        clock = r.varuint()
        state = r.varstring()
        entries.append(AwarenessEntry(client_id, clock, None if state in ("", "null") else state))
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    out = [write_varuint(len(entries))]
    for e in entries:
        out.append(write_varuint(e.client_id))
        out.append(write_varuint(e.clock))
        out.append(write_varstring("null" if e.state is None else e.state))
    return b"".join(out)
