"""Writing WebSocket frames straight to the socket, each event framed once for everyone.

Server frames are not masked, so the bytes of one event's frame (header and payload) are the
same for every subscriber. Through ASGI, every ``send`` of every subscriber ran the websockets
library's framing and a task switch; here the hub frames an event once (``OutEvent.wire``)
and writes those bytes to each socket whose queue is empty, synchronously, the way
``websockets.broadcast()`` does. Queues and writer tasks are only used under backpressure.

:class:`WireProtocol` is uvicorn's ``websockets-sansio`` protocol that hands the application a
:class:`Wire` (scope extension ``parley.wire``). A connection that negotiated an extension
(permessage-deflate) gets none: its frames must go through the library's compressor.
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

WIRE_EXTENSION = "parley.wire"
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def frame_bytes(payload: bytes | str) -> bytes:
    """One complete unmasked WebSocket frame (FIN set): text for ``str``, binary for bytes."""
    if isinstance(payload, str):
        data, head = payload.encode(), 0x81
    else:
        data, head = payload, 0x82
    n = len(data)
    if n < 126:
        return bytes((head, n)) + data
    if n < 65536:
        return _LEN16.pack(head, 126, n) + data
    return _LEN64.pack(head, 127, n) + data


class Wire:
    """The write side of one accepted WebSocket, for frames built by :func:`frame_bytes`."""

    __slots__ = ("_proto",)

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self._proto = proto

    def ready(self) -> bool:
        """Whether a frame written now goes out at once (open, not paused by backpressure)."""
        p = self._proto
        return (
            p.handshake_complete and not p.close_sent and not p.disconnected and p.writable.is_set()
        )

    @property
    def gone(self) -> bool:
        """The peer went away or the close frame was sent: nothing more may be written."""
        p = self._proto
        return p.disconnected or p.close_sent

    async def wait_writable(self) -> None:
        """Until the transport takes writes again (set on loss too: check :attr:`gone`)."""
        await self._proto.writable.wait()

    def write(self, data: bytes) -> None:
        self._proto.transport.write(data)


class WireProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, plus the :class:`Wire` in the scope."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The handshake's response is made: the extensions the client negotiated are known.
        if scope is not None and self.response.status_code == 101 and not self.conn.extensions:
            scope["extensions"][WIRE_EXTENSION] = Wire(self)


def wire_of(scope: Any) -> Wire | None:
    """The scope's :class:`Wire`, if the server runs :class:`WireProtocol`."""
    wire = (scope.get("extensions") or {}).get(WIRE_EXTENSION)
    return wire if isinstance(wire, Wire) else None
