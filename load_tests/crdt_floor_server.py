"""The floor for collaborative documents: the least a Python server can do per update.

A minimal y-websocket server written directly on the ``websockets`` library, for
``load_tests.crdt_merge --floor``: one pycrdt ``Doc`` per path, sync step 1 answered with
step 2, and every update applied to the document and relayed to the other clients of the path.
With ``--merge`` the relays wait for the end of the loop iteration and each client gets the
others' updates as one merged update, as Parley relays them.

No authentication, no checks (schema, permissions, missing dependencies, limits), no storage,
no presence, no metrics: the distance from Parley is what those cost.

    python -m load_tests.crdt_floor_server --port 8766 [--merge]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pycrdt import Doc, create_update_message, handle_sync_message, merge_updates
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

MERGE_CHUNK = 64  # as Parley's updates.merged_chunks: merging is superlinear


class Document:
    """One document, its clients, and the relays waiting for the end of the loop iteration."""

    def __init__(self, merge: bool) -> None:
        self.doc: Doc[Any] = Doc()
        self.clients: set[ServerConnection] = set()
        self.merge = merge
        self.pending: list[tuple[ServerConnection, bytes]] = []

    def relay(self, origin: ServerConnection, message: bytes) -> None:
        if not self.merge:
            broadcast([c for c in self.clients if c is not origin], message)
            return
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append((origin, _payload(message[2:])))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for client in self.clients:
            mine = [u for o, u in pending if o is not client]
            for i in range(0, len(mine), MERGE_CHUNK):
                chunk = mine[i : i + MERGE_CHUNK]
                merged = merge_updates(*chunk) if len(chunk) > 1 else chunk[0]
                broadcast([client], create_update_message(merged))


def _payload(body: bytes) -> bytes:
    """The update in what follows a sync message's two type bytes: a varuint length, then it."""
    pos = length = shift = 0
    while True:
        b = body[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        if b < 0x80:
            return body[pos : pos + length]
        shift += 7


class FloorServer:
    def __init__(self, merge: bool) -> None:
        self.merge = merge
        self.documents: dict[str, Document] = {}

    async def handler(self, ws: ServerConnection) -> None:
        path = (ws.request.path if ws.request else "/").split("?", 1)[0]
        document = self.documents.get(path)
        if document is None:
            document = self.documents[path] = Document(self.merge)
        document.clients.add(ws)
        try:
            async for data in ws:
                if not isinstance(data, bytes) or len(data) < 2 or data[0] != 0:
                    continue
                reply = handle_sync_message(data[1:], document.doc)
                if reply is not None:
                    await ws.send(reply)
                if data[1] != 0:  # step 2 or update: applied above, now relayed
                    document.relay(ws, data)
        except ConnectionClosed:
            pass
        finally:
            document.clients.discard(ws)


async def main(port: int, merge: bool) -> None:
    server = FloorServer(merge)
    async with serve(server.handler, "127.0.0.1", port, max_size=None, compression=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--merge", action="store_true", help="merge relays per loop iteration")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.merge))
