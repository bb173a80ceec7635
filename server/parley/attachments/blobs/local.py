"""Blobs as files on local disk: ``<root>/<tenant>/<sha[:2]>/<sha256>``.

A write goes to a temporary file under ``<root>/.tmp`` (same file system), is flushed to disk,
then renamed to its content address: a reader sees the whole blob or none. File I/O runs in
threads so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from parley.attachments.blobs.base import BlobMissing, BlobTooLarge, StoredBlob
from parley.governance.auth import valid_identifier

CHUNK = 256 * 1024
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class LocalBlobStore:
    """The embedded blob store (see ``blobs.base`` for the contract)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    def _path(self, tenant_id: str, sha256: str) -> Path:
        # Tenant ids are validated identifiers (letters, digits, ._@+-, starting
        # alphanumeric) and addresses are hex: neither can climb out of the root.
        if not valid_identifier(tenant_id) or not _SHA_RE.match(sha256):
            raise BlobMissing(sha256)
        return self.root / tenant_id / sha256[:2] / sha256

    async def put(
        self, tenant_id: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredBlob:
        """Stream into a temporary file with a running size check, then rename into place."""
        await asyncio.to_thread(self.tmp.mkdir, parents=True, exist_ok=True)
        tmp = self.tmp / f"{secrets.token_hex(12)}.part"
        fh = await asyncio.to_thread(open, tmp, "xb")
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                digest.update(chunk)
                await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(_flush, fh)
            fh.close()
            sha = digest.hexdigest()
            await asyncio.to_thread(self._install, tmp, self._path(tenant_id, sha))
        except BaseException:
            fh.close()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(tmp.unlink)
            raise
        return StoredBlob(sha, size)

    @staticmethod
    def _install(tmp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
            os.utime(final)  # a fresh reference: keeps garbage collection off it for a while
        else:
            os.replace(tmp, final)

    async def open(self, tenant_id: str, sha256: str) -> AsyncIterator[bytes]:
        path = self._path(tenant_id, sha256)
        try:
            fh = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            fh.close()

    async def read(self, tenant_id: str, sha256: str) -> bytes:
        path = self._path(tenant_id, sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    async def delete(self, tenant_id: str, sha256: str) -> None:
        try:
            path = self._path(tenant_id, sha256)
        except BlobMissing:
            return
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def entries(self, tenant_id: str) -> list[tuple[str, float]]:
        if not valid_identifier(tenant_id):
            return []
        return await asyncio.to_thread(self._list, self.root / tenant_id)

    @staticmethod
    def _list(folder: Path) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        if not folder.is_dir():
            return out
        for path in folder.glob("??/*"):
            if _SHA_RE.match(path.name):
                with contextlib.suppress(FileNotFoundError):
                    out.append((path.name, path.stat().st_mtime))
        return out

    async def tenants(self) -> list[str]:
        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            return [p.name for p in self.root.iterdir() if p.is_dir() and valid_identifier(p.name)]

        return await asyncio.to_thread(scan)


def _flush(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
