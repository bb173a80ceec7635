"""The client rule for streamed answers, as a small sans-I/O class any Python client can use
(the tests and the benchmark do). docs/protocol.md states the rule; this is it in code.

Per stream the client keeps the text so far and ``end``, the server's byte offset of its end:

* ``stream.started``: a new stream, ``end`` 0.
* ``stream.snapshot`` (after a subscribe ack, or in answer to ``streams``): for each stream, if
  its ``length`` is beyond ``end``, take its text and length.
* ``stream.delta``: ``end`` at or below yours: a duplicate, drop it. ``offset`` equal to yours:
  append. ``offset`` beyond yours, or a stream you do not know yet: hold it, and (once) ask the
  server with a ``streams`` frame; the snapshot that answers closes the gap and the held deltas
  that follow it are applied.
* ``stream.finished``, or the answer's ``message.created`` (its ``metadata.stream_id``): the
  stream is over; the stored message is the final text (``final``). Later frames of it are
  ignored.

Offsets are the server's (UTF-8 bytes): clients compare them, never count them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AssembledStream:
    stream_id: str
    text: str = ""
    end: int = 0
    finished: bool = False
    finish_reason: str | None = None
    final: str | None = None  # the stored answer, once its message.created arrived
    info: dict[str, Any] = field(default_factory=dict)


class StreamAssembler:
    """Feed it every event frame of one session; read ``streams[id].text``."""

    def __init__(self) -> None:
        self.streams: dict[str, AssembledStream] = {}
        self.held: dict[str, list[dict[str, Any]]] = {}
        self.awaiting_snapshot = False
        self.duplicates = 0  # deltas dropped because a snapshot already had them
        self.gaps = 0  # times a delta could not be applied in order

    def text(self, stream_id: str) -> str:
        """The text assembled so far for ``stream_id`` ("" for an unknown stream)."""
        stream = self.streams.get(stream_id)
        return stream.text if stream is not None else ""

    def feed(self, frame: dict[str, Any]) -> bool:
        """Take one server frame. True when the client should now send
        ``{"type": "streams", "session": ...}`` to resynchronise."""
        if frame.get("type") != "event":
            return False
        name, data = frame.get("event"), frame.get("data") or {}
        if name == "stream.started":
            stream = self._get(data["stream_id"])
            stream.info = data
            self._drain(stream)
        elif name == "stream.snapshot":
            self.awaiting_snapshot = False
            for snap in data.get("streams", []):
                stream = self._get(snap["stream_id"])
                if stream.finished:
                    continue
                stream.info = {k: v for k, v in snap.items() if k not in ("text", "length")}
                if snap["length"] > stream.end:
                    stream.text, stream.end = snap["text"], snap["length"]
                self._drain(stream)
        elif name == "stream.delta":
            return self._delta(data)
        elif name == "stream.finished":
            stream = self._get(data["stream_id"])
            stream.finished, stream.finish_reason = True, data.get("finish_reason")
            self.held.pop(stream.stream_id, None)
        elif name == "message.created":
            sid = ((data.get("message") or {}).get("metadata") or {}).get("stream_id")
            if isinstance(sid, str):
                stream = self._get(sid)
                stream.finished = True
                stream.final = data["message"]["text"]
                self.held.pop(sid, None)
        return False

    def _get(self, stream_id: str) -> AssembledStream:
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self.streams[stream_id] = AssembledStream(stream_id)
        return stream

    def _delta(self, delta: dict[str, Any]) -> bool:
        stream = self.streams.get(delta["stream_id"])
        if stream is not None and stream.finished:
            return False
        if stream is not None and delta["end"] <= stream.end:
            self.duplicates += 1
            return False
        if stream is not None and delta["offset"] == stream.end:
            stream.text += delta["text"]
            stream.end = delta["end"]
            self._drain(stream)
            return False
        self.held.setdefault(delta["stream_id"], []).append(delta)
        self.gaps += 1
        if self.awaiting_snapshot:
            return False
        self.awaiting_snapshot = True
        return True

    def _drain(self, stream: AssembledStream) -> None:
        """Apply held deltas that now follow on; drop those already covered."""
        held = self.held.get(stream.stream_id)
        if not held:
            return
        held.sort(key=lambda d: d["offset"])
        keep: list[dict[str, Any]] = []
        for delta in held:
            if delta["end"] <= stream.end:
                self.duplicates += 1
            elif delta["offset"] == stream.end:
                stream.text += delta["text"]
                stream.end = delta["end"]
            else:
                keep.append(delta)
        if keep:
            self.held[stream.stream_id] = keep
        else:
            self.held.pop(stream.stream_id, None)
