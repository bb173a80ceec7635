"""Zip archives of sessions, streamed: a whole tenant (``tenant_archive``) or one session with
its files (``session_archive``).

Layout (both)::

    files/<sha256>        the bytes of each attachment, once per content however many
                          messages, sessions or uploads share it
    sessions/<id>.json    one ``parley.session`` export per session; its ``attachments`` name
                          the file of each (``file``) and the messages that reference it
    manifest.json         last: the sessions, and every file with its size and hash

Chunks are produced as sessions are read and files are copied from the blob store, so memory
holds one session and one blob chunk at a time however large the tenant is. A file is written
before the session that references it; a blob missing from the store is left out and its
attachment's ``file`` is null (the manifest lists it under ``missing_files``). Thumbnails are
not exported: an import makes them again. ``parley import parley-json`` reads both kinds.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import structlog

from parley.attachments.blobs import BlobMissing, BlobStore
from parley.attachments.sniff import IMAGE_TYPES
from parley.errors import NotFound
from parley.exports.exporter import Exporter
from parley.governance.auth import Principal
from parley.ids import iso, utcnow

log = structlog.get_logger("parley.exports")

ARCHIVE_FORMAT = "parley.tenant-archive"
SESSION_ARCHIVE_FORMAT = "parley.session-archive"
# Already compressed: deflating them again costs CPU and saves nothing.
_STORED_TYPES = IMAGE_TYPES | {"application/zip", "application/gzip", "application/pdf"}


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


class _ArchiveWriter:
    """One archive being written: sessions with their files, then the manifest."""

    def __init__(self, tenant_id: str, store: BlobStore | None) -> None:
        self.tenant_id = tenant_id
        self.store = store
        self.sink = _Sink()
        self.zip = zipfile.ZipFile(self.sink, "w", compression=zipfile.ZIP_DEFLATED)
        self.files: dict[str, dict[str, Any]] = {}  # sha256 -> manifest entry
        self.missing: set[str] = set()
        self.sessions: list[dict[str, Any]] = []

    async def add_session(self, export: dict[str, Any]) -> AsyncIterator[bytes]:
        """The session's files not written yet, then its JSON."""
        for attachment in export.get("attachments") or []:
            sha = attachment["sha256"]
            if sha not in self.files and sha not in self.missing:
                async for chunk in self._add_file(attachment):
                    yield chunk
            if sha in self.missing:
                attachment["file"] = None
        sid = export["session"]["id"]
        name = f"sessions/{sid}.json"
        self.zip.writestr(name, orjson.dumps(export))
        self.sessions.append(
            {
                "id": sid,
                "title": export["session"]["title"],
                "messages": len(export["messages"]),
                "attachments": len(export.get("attachments") or []),
                "file": name,
            }
        )
        yield self.sink.drain()

    async def _add_file(self, attachment: dict[str, Any]) -> AsyncIterator[bytes]:
        sha, size = attachment["sha256"], int(attachment["size"])
        if self.store is None:
            self.missing.add(sha)
            return
        chunks = self.store.open(self.tenant_id, sha)
        try:
            first = await anext(chunks)
        except BlobMissing:
            log.warning("attachment content missing from the store", tenant=self.tenant_id, sha=sha)
            self.missing.add(sha)
            return
        except StopAsyncIteration:
            first = b""
        name = f"files/{sha}"
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = (
            zipfile.ZIP_STORED
            if attachment.get("content_type") in _STORED_TYPES
            else zipfile.ZIP_DEFLATED
        )
        info.file_size = size  # decides zip64 up front: the entry is streamed, never sought
        with self.zip.open(info, "w") as entry:
            entry.write(first)
            yield self.sink.drain()
            async for chunk in chunks:
                entry.write(chunk)
                yield self.sink.drain()
        self.files[sha] = {"sha256": sha, "size": size, "file": name}
        yield self.sink.drain()

    def finish(self, fmt: str, **fields: Any) -> bytes:
        """The manifest, the zip's directory: the archive's last bytes."""
        manifest = {
            "format": fmt,
            "version": 1,
            "tenant": self.tenant_id,
            "exported_at": iso(utcnow()),
            **fields,
            "sessions": self.sessions,
            "files": list(self.files.values()),
            "missing_files": sorted(self.missing),
        }
        self.zip.writestr("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        self.zip.close()
        return self.sink.drain()


async def tenant_archive(
    exporter: Exporter,
    p: Principal,
    *,
    store: BlobStore | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[bytes]:
    """The tenant's sessions (and, with ``store``, their files) as zip bytes, chunk by chunk."""
    writer = _ArchiveWriter(p.tenant_id, store)
    async for sid in exporter.session_ids(p):
        try:
            export = await exporter.session(p, sid)
        except NotFound:  # deleted while the archive was written
            continue
        async for chunk in writer.add_session(export):
            if chunk:
                yield chunk
        if progress is not None:
            progress(writer.sessions[-1])
    yield writer.finish(ARCHIVE_FORMAT)


async def session_archive(
    export: dict[str, Any], tenant_id: str, store: BlobStore
) -> AsyncIterator[bytes]:
    """One session's export (already read, so a missing session fails before any byte is
    sent) with its files, as zip bytes chunk by chunk."""
    writer = _ArchiveWriter(tenant_id, store)
    async for chunk in writer.add_session(export):
        if chunk:
            yield chunk
    yield writer.finish(SESSION_ARCHIVE_FORMAT, session=export["session"]["id"])
