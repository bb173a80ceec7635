"""Attachment files of a Parley archive being imported: checked, verified and stored before
any session is written, then given rows in the sessions they belong to.

Phase one (:meth:`FileRestorer.restore`, before the first session): every file the archive
holds is checked against the limits from the zip's directory (the attachment size limit, and
an unpack ratio that only a zip bomb reaches), then streamed from the archive into the tenant's
blob store while its SHA-256 is computed and its type sniffed from its bytes, exactly as an
upload is. A file whose bytes do not hash to the name the export gives them is refused before
it is stored, and the whole import with it: the error names the file. Thumbnails are made
again from the stored images (exports do not carry them).

Phase two (:func:`attachment_rows`, in the unit of work that opens each session): one
attachment row per exported attachment, under an id derived from the session and the exported
id, so importing the archive again finds the rows instead of adding more.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parley.attachments import images, sniff
from parley.attachments.blobs import BlobStore, BlobTooLarge
from parley.attachments.views import attachment_part
from parley.config import Settings
from parley.errors import ErrorCode, InvalidRequest, ParleyError, PayloadTooLarge
from parley.imports.model import ImportedAttachment, ImportedConversation, ImportedFile
from parley.storage import models as m

log = structlog.get_logger("parley.imports")

CHUNK = 256 * 1024
MAX_RATIO = 200  # unpacked / packed: files that shrink more than this are bombs, not photos
RATIO_FLOOR = 1024 * 1024  # files smaller than this are never refused for their ratio
_ID_NS = uuid.UUID("3b0f4d5e-9c1a-4f0e-8a57-2c6d1e7f9b10")


class FileRefused(InvalidRequest):
    """A file of the archive breaks a limit or does not match its hash; nothing was imported."""


@dataclass(frozen=True, slots=True)
class RestoredBlob:
    """A file stored in the tenant's blob store, with what its bytes say about it."""

    sha256: str
    size: int
    content_type: str
    facts: images.ImageFacts | None
    thumbnail_sha256: str | None


def restored_id(session_id: str, old_id: str) -> str:
    """The id an exported attachment gets in the session it is imported into: the same on
    every import of the same archive into the same session, so re-imports add nothing."""
    return str(uuid.uuid5(_ID_NS, f"{session_id}/{old_id}"))


class FileRestorer:
    """Phase one of the module docstring, for one tenant's blob store and limits."""

    def __init__(self, store: BlobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def restore(
        self, tenant_id: str, conversations: list[ImportedConversation], *, dry_run: bool
    ) -> dict[str, RestoredBlob]:
        """Check and (unless ``dry_run``) store every file the conversations carry, each
        content once. Raises :class:`FileRefused` naming the first file that breaks a limit
        or its hash."""
        files: dict[str, tuple[ImportedAttachment, ImportedFile]] = {}
        for conv in conversations:
            for a in conv.files:
                if a.file is not None and a.sha256 not in files:
                    files[a.sha256] = (a, a.file)
        for sha, (_a, file) in files.items():
            self._check_limits(sha, file)
        out: dict[str, RestoredBlob] = {}
        for sha, (a, file) in files.items():
            out[sha] = await self._restore_one(tenant_id, sha, a, file, dry_run=dry_run)
        if out and not dry_run:
            log.info("attachment files restored", tenant=tenant_id, files=len(out))
        return out

    def _check_limits(self, sha: str, file: ImportedFile) -> None:
        limit = self.settings.attachment_max_bytes
        if file.unpacked_size > limit:
            raise FileRefused(
                f"{file.where}: the file is {file.unpacked_size} bytes; the limit per "
                f"attachment is {limit}",
                details=[{"field": file.where, "problem": "over the attachment size limit"}],
            )
        ratio = file.unpacked_size / max(file.packed_size, 1)
        if file.unpacked_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise FileRefused(
                f"{file.where}: the entry would unpack to {file.unpacked_size} bytes from "
                f"{file.packed_size} (more than {MAX_RATIO} times); refused as unsafe",
                details=[{"field": file.where, "problem": "unpack ratio over the limit"}],
            )

    async def _restore_one(
        self, tenant_id: str, sha: str, a: ImportedAttachment, file: ImportedFile, *, dry_run: bool
    ) -> RestoredBlob:
        sniffer = sniff.Sniffer(a.content_type, sniff.clean_filename(a.name))
        digest = hashlib.sha256()
        size = 0
        limit = min(file.unpacked_size, self.settings.attachment_max_bytes)

        async def checked() -> AsyncIterator[bytes]:
            nonlocal size
            fh: IO[bytes] = await asyncio.to_thread(file.open)
            try:
                while chunk := await asyncio.to_thread(fh.read, CHUNK):
                    size += len(chunk)
                    if size > limit:  # the directory understated the entry: never trust it
                        raise FileRefused(f"{file.where}: the file is larger than {limit} bytes")
                    digest.update(chunk)
                    sniffer.feed(chunk)
                    yield chunk
            finally:
                fh.close()
            if digest.hexdigest() != sha:
                # Raised inside the stream: the blob store drops what it wrote.
                raise FileRefused(
                    f"{file.where}: the content's SHA-256 is {digest.hexdigest()}, not the "
                    f"{sha} the export names it by: the archive was altered or damaged; "
                    "nothing was imported",
                    details=[{"field": file.where, "problem": "content does not match its hash"}],
                )
            sniffer.finish()

        try:
            if dry_run:
                async for _chunk in checked():
                    pass
            else:
                await self.store.put(tenant_id, checked(), max_bytes=limit)
        except BlobTooLarge:
            raise FileRefused(f"{file.where}: the file is larger than {limit} bytes") from None
        except FileRefused:
            raise
        except ParleyError as exc:  # the sniffer refused the type, or the file is empty
            raise FileRefused(f"{file.where}: {exc.message}", details=exc.details) from None
        except (OSError, ValueError, EOFError) as exc:  # zipfile: bad CRC, truncated entry
            raise FileRefused(f"{file.where}: unreadable: {exc}") from None
        content_type = sniffer.content_type  # decided by the stream's last step
        assert content_type is not None
        facts: images.ImageFacts | None = None
        thumb: str | None = None
        if content_type in sniff.IMAGE_TYPES and not dry_run:
            facts, thumb = await self._thumbnail(tenant_id, sha, file.where)
        return RestoredBlob(sha, size, content_type, facts, thumb)

    async def _thumbnail(
        self, tenant_id: str, sha: str, where: str
    ) -> tuple[images.ImageFacts, str]:
        data = await self.store.read(tenant_id, sha)
        try:
            facts = await asyncio.to_thread(
                images.thumbnail,
                data,
                max_side=self.settings.attachment_thumbnail_px,
                max_pixels=self.settings.attachment_max_image_pixels,
            )
        except ParleyError as exc:
            raise FileRefused(f"{where}: {exc.message}") from None
        del data

        async def one() -> AsyncIterator[bytes]:
            yield facts.thumbnail

        stored = await self.store.put(tenant_id, one(), max_bytes=len(facts.thumbnail))
        return facts, stored.sha256


def attachment_rows(
    s: Session,
    tenant_id: str,
    session_id: str,
    uploader: str,
    attachments: list[ImportedAttachment],
    blobs: dict[str, RestoredBlob],
    quota: int,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Rows for the conversation's restored attachments (those present already are kept);
    returns exported attachment id -> the message part that now names it."""
    wanted = [(a, blobs[a.sha256]) for a in attachments if a.sha256 in blobs]
    if not wanted:
        return {}
    ids = {a.old_id: restored_id(session_id, a.old_id) for a, _ in wanted}
    rows = {
        r.id: r
        for r in s.scalars(
            select(m.Attachment).where(
                m.Attachment.tenant_id == tenant_id,
                m.Attachment.session_id == session_id,
                m.Attachment.id.in_(list(ids.values())),
            )
        )
    }
    new = [(a, blob) for a, blob in wanted if ids[a.old_id] not in rows]
    if new:
        # The tenant row lock serializes attachment writes of one tenant, so the quota holds.
        s.scalar(select(m.Tenant.id).where(m.Tenant.id == tenant_id).with_for_update())
        used = int(
            s.scalar(
                select(func.coalesce(func.sum(m.Attachment.size), 0)).where(
                    m.Attachment.tenant_id == tenant_id
                )
            )
            or 0
        )
        adding = sum(blob.size for _, blob in new)
        if used + adding > quota:
            raise PayloadTooLarge(
                f"the tenant's attachments would exceed its quota of {quota} bytes ({used} "
                f"used, {adding} to import)",
                code=ErrorCode.QUOTA_EXCEEDED,
                details={"quota": quota, "used": used, "importing": adding},
            )
    for a, blob in new:
        facts = blob.facts
        row = m.Attachment(
            id=ids[a.old_id],
            tenant_id=tenant_id,
            session_id=session_id,
            uploader_id=a.uploaded_by or uploader,
            filename=sniff.clean_filename(a.name),
            content_type=blob.content_type,
            size=blob.size,
            sha256=blob.sha256,
            width=facts.width if facts else None,
            height=facts.height if facts else None,
            thumbnail_sha256=blob.thumbnail_sha256,
            thumbnail_type=facts.thumbnail_type if facts else None,
            thumbnail_width=facts.thumbnail_width if facts else None,
            thumbnail_height=facts.thumbnail_height if facts else None,
            created_at=a.created_at or now,
        )
        s.add(row)
        rows[row.id] = row
    s.flush()
    return {old: attachment_part(rows[new_id]) for old, new_id in ids.items()}


def relink_parts(
    parts: list[dict[str, Any]] | None, restored: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """A message's parts with each restored attachment's part replaced by the one naming its
    new row; and the new attachment ids it references (for ``message_attachments``)."""
    if not parts or not restored:
        return parts, []
    out: list[dict[str, Any]] = []
    linked: list[str] = []
    for part in parts:
        old = part.get("attachment_id") if part.get("type") == "attachment" else None
        if isinstance(old, str) and old in restored:
            new = restored[old]
            out.append(new)
            if new["attachment_id"] not in linked:
                linked.append(new["attachment_id"])
        else:
            out.append(part)
    return out, linked
