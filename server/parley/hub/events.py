"""An event on its way to clients, encoded at most once per wire format.

Broker payloads are an envelope ``[published_at, frame_bytes]`` where ``frame_bytes`` is the
msgpack encoding of the client frame. msgpack clients get ``frame_bytes`` exactly as published
(one encoding for the whole cluster); JSON clients get one JSON encoding per process.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from parley.hub.wire import frame_bytes
from parley.protocol.codec import Encoding, pack, unpack


class OutEvent:
    """One event frame, shared by every connection it goes to."""

    __slots__ = (
        "_json",
        "_wire_json",
        "_wire_msgpack",
        "durable",
        "frame",
        "msgpack",
        "published_at",
        "seq",
    )

    def __init__(self, frame: dict[str, Any], msgpack_bytes: bytes, published_at: float) -> None:
        self.frame = frame
        self.msgpack = msgpack_bytes
        self.published_at = published_at
        self.durable = not frame.get("ephemeral", False)
        self.seq: int = frame.get("seq") or 0
        self._json: str | None = None
        self._wire_json: bytes | None = None
        self._wire_msgpack: bytes | None = None

    def encoded(self, encoding: Encoding) -> bytes | str:
        if encoding is Encoding.MSGPACK:
            return self.msgpack
        if self._json is None:
            self._json = orjson.dumps(self.frame).decode()
        return self._json

    def wire(self, encoding: Encoding) -> bytes:
        """The complete WebSocket frame of this event in ``encoding`` (``hub.wire``): built
        once, written to every connection that takes it."""
        if encoding is Encoding.MSGPACK:
            if self._wire_msgpack is None:
                self._wire_msgpack = frame_bytes(self.msgpack)
            return self._wire_msgpack
        if self._wire_json is None:
            self._wire_json = frame_bytes(self.encoded(Encoding.JSON))
        return self._wire_json

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> OutEvent:
        return cls(frame, pack(frame), time.time())

    def envelope(self) -> bytes:
        """The broker payload for this event."""
        return pack((self.published_at, self.msgpack))

    @classmethod
    def from_envelope(cls, payload: bytes) -> OutEvent:
        published_at, frame_bytes = unpack(payload)
        return cls(unpack(frame_bytes), frame_bytes, published_at)
