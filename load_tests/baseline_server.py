"""The floor: a minimal broadcast server written directly on the ``websockets`` library.

It speaks just enough of Parley's protocol v1 (msgpack frames) for the load generator to drive
it exactly as it drives Parley: ``welcome`` on connect; ``subscribe`` (with ``since_seq``
replay from an in-memory log) answered by an ``ack``; ``send`` turned into a
``message.created`` event of the same shape as Parley's, broadcast with
``websockets.broadcast()`` and then acknowledged; ``typing`` turned into an ephemeral event.

No authentication (the token is ignored), no storage, no validation, no per-connection queue:
this is the least a Python WebSocket server can do per delivered frame, which is the point.

    python -m load_tests.baseline_server --port 8765
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

_ids = itertools.count(1)


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Session:
    """Subscribers and the log of packed durable events (index ``seq - 1``)."""

    __slots__ = ("log", "subscribers")

    def __init__(self) -> None:
        self.subscribers: set[ServerConnection] = set()
        self.log: list[bytes] = []


class BaselineServer:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    def session(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session()
        return s

    async def handler(self, ws: ServerConnection) -> None:
        # The token is the user id (nothing is checked): own events are recognised by it.
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        user = query.get("token", [f"u{next(_ids)}"])[0]
        joined: list[Session] = []
        pack = msgpack.packb
        await ws.send(
            pack({"type": "welcome", "ref": None, "protocol": 1, "user": {"id": user}}),
        )
        try:
            async for data in ws:
                frame: dict[str, Any] = msgpack.unpackb(data)
                kind = frame.get("type")
                sid = frame.get("session", "")
                ref = frame.get("id")
                if kind == "send":
                    s = self.session(sid)
                    seq = len(s.log) + 1
                    now = _iso()
                    event = pack(
                        {
                            "type": "event",
                            "session": sid,
                            "seq": seq,
                            "event": "message.created",
                            "data": {
                                "message": {
                                    "id": f"m{next(_ids):032x}",
                                    "session": sid,
                                    "seq": seq,
                                    "author": user,
                                    "parent_id": None,
                                    "text": frame.get("text", ""),
                                    "parts": None,
                                    "metadata": frame.get("metadata") or {},
                                    "client_id": frame.get("client_id"),
                                    "created_at": now,
                                    "edited_at": None,
                                    "deleted_at": None,
                                }
                            },
                            "actor": user,
                            "ts": now,
                        }
                    )
                    s.log.append(event)
                    broadcast(s.subscribers, event)
                    await ws.send(
                        pack(
                            {
                                "type": "ack",
                                "ref": ref,
                                "session": sid,
                                "seq": seq,
                                "client_id": frame.get("client_id"),
                                "duplicate": False,
                            }
                        )
                    )
                elif kind == "typing":
                    s = self.session(sid)
                    event = pack(
                        {
                            "type": "event",
                            "session": sid,
                            "seq": len(s.log),
                            "event": "typing",
                            "data": {"user_id": user, "name": user, "active": True},
                            "ephemeral": True,
                            "ts": _iso(),
                        }
                    )
                    broadcast(s.subscribers, event)
                    if ref is not None:
                        await ws.send(pack({"type": "ack", "ref": ref, "session": sid}))
                elif kind == "subscribe":
                    s = self.session(sid)
                    since = frame.get("since_seq")
                    # Replay, ack and join without yielding to the loop, so no event can fall
                    # between the replay and the live stream (broadcast() writes synchronously).
                    one = (ws,)
                    replay = s.log[since:] if since is not None else []
                    for packed in replay:
                        broadcast(one, packed)
                    ack = {"type": "ack", "ref": ref, "session": sid, "seq": len(s.log)}
                    broadcast(one, pack({**ack, "replayed": len(replay)}))
                    s.subscribers.add(ws)
                    joined.append(s)
                elif kind == "unsubscribe":
                    s = self.session(sid)
                    s.subscribers.discard(ws)
                    await ws.send(pack({"type": "ack", "ref": ref, "session": sid}))
                elif kind == "ping":
                    await ws.send(pack({"type": "pong", "ref": ref, "time": _iso()}))
        except ConnectionClosed:
            pass  # clients of a load test vanish abruptly on purpose
        finally:
            for s in joined:
                s.subscribers.discard(ws)


async def serve_forever(host: str, port: int) -> None:
    server = BaselineServer()
    async with serve(
        server.handler,
        host,
        port,
        compression=None,
        max_size=256 * 1024,
        ping_interval=20.0,
        ping_timeout=20.0,
        backlog=2048,
    ) as ws_server:
        await ws_server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()
