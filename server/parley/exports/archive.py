"""A whole tenant as one zip archive, streamed: ``sessions/<id>.json`` (each a ``parley.session``
export) and ``manifest.json`` last. Chunks are produced as sessions are read, so memory holds
one session at a time however large the tenant is. ``parley import parley-json`` reads it."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from parley.errors import NotFound
from parley.exports.exporter import Exporter
from parley.governance.auth import Principal
from parley.ids import iso, utcnow

ARCHIVE_FORMAT = "parley.tenant-archive"


class _Sink:
    """A write-only file for ZipFile: it has no ``tell``, so ZipFile streams (data
    descriptors) instead of seeking back; what was written is taken out with ``drain``."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


async def tenant_archive(
    exporter: Exporter,
    p: Principal,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[bytes]:
    """The tenant's sessions as zip bytes, chunk by chunk."""
    sink = _Sink()
    listing: list[dict[str, Any]] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        async for sid in exporter.session_ids(p):
            try:
                export = await exporter.session(p, sid)
            except NotFound:  # deleted while the archive was written
                continue
            archive.writestr(f"sessions/{sid}.json", orjson.dumps(export))
            entry = {
                "id": sid,
                "title": export["session"]["title"],
                "messages": len(export["messages"]),
                "file": f"sessions/{sid}.json",
            }
            listing.append(entry)
            if progress is not None:
                progress(entry)
            chunk = sink.drain()
            if chunk:
                yield chunk
        manifest = {
            "format": ARCHIVE_FORMAT,
            "version": 1,
            "tenant": p.tenant_id,
            "exported_at": iso(utcnow()),
            "sessions": listing,
        }
        archive.writestr("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    yield sink.drain()
