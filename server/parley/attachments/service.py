"""Attachments for authenticated principals: upload, read, list, and garbage collection.

Permissions are those of the session: whoever may read a session (any member of its tenant, as
for every REST read) may read its attachments; uploading needs the right to write messages in
it. Every lookup is tenant-scoped: another tenant's attachment answers exactly like a missing one.

Garbage collection (``collect_garbage``) is a sweep, not reference counting:

1. attachment rows that no message references and that are older than the grace period
   (uploads never sent, and files of deleted messages) are deleted; deleting a session deletes
   its attachment rows with it (foreign key cascade);
2. each blob of a tenant that no attachment row of that tenant names (as file or thumbnail)
   and that was not written within the grace period is deleted.

The grace period keeps a blob that was just written, whose row is about to be committed, from
being collected in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from parley import metrics
from parley.attachments import images, sniff
from parley.attachments.blobs import BlobMissing, BlobStore, BlobTooLarge
from parley.attachments.listing import session_attachments
from parley.attachments.views import attachment_view
from parley.config import Settings
from parley.errors import Conflict, ErrorCode, NotFound, ParleyError, PayloadTooLarge
from parley.governance.auth import Principal
from parley.governance.policy import Action
from parley.ids import new_id, utcnow
from parley.sessions import rules
from parley.sessions.queries import plausible_id, session_access, session_row
from parley.sessions.rules import SessionStatus
from parley.storage import models as m
from parley.storage.database import Database

log = structlog.get_logger("parley.attachments")

MODEL_IMAGE_CACHE = 32  # images prepared for providers, kept per process (a few MiB each)


@dataclass(frozen=True, slots=True)
class Download:
    """What a download serves: the metadata, the type and the bytes in chunks."""

    view: dict[str, Any]
    content_type: str
    size: int
    sha256: str
    chunks: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class GcReport:
    attachments: int
    blobs: int


def _used_bytes(s: Session, tenant_id: str) -> int:
    return int(
        s.scalar(
            select(func.coalesce(func.sum(m.Attachment.size), 0)).where(
                m.Attachment.tenant_id == tenant_id
            )
        )
        or 0
    )


class AttachmentService:
    """Uploads, downloads and the sweep (see the module docstring)."""

    def __init__(self, db: Database, store: BlobStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self._model_images: OrderedDict[tuple[str, str], tuple[str, bytes] | None] = OrderedDict()

    # -- upload -----------------------------------------------------------------------------

    async def upload(
        self,
        p: Principal,
        session_id: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str | None,
        declared_type: str | None,
        declared_size: int | None = None,
    ) -> dict[str, Any]:
        """Store a file of a session: sniffed, size-checked while it streams, thumbnailed."""
        try:
            view = await self._upload(p, session_id, chunks, filename, declared_type, declared_size)
        except ParleyError as exc:
            metrics.ATTACHMENT_UPLOADS.labels(result=str(exc.code)).inc()
            raise
        metrics.ATTACHMENT_UPLOADS.labels(result="stored").inc()
        metrics.ATTACHMENT_BYTES.inc(view["size"])
        return view

    async def _upload(
        self,
        p: Principal,
        session_id: str,
        chunks: AsyncIterable[bytes],
        filename: str | None,
        declared_type: str | None,
        declared_size: int | None,
    ) -> dict[str, Any]:
        name = sniff.clean_filename(filename)
        rules.check_storable("filename", name)
        max_bytes = self.settings.attachment_max_bytes
        quota = self.settings.attachment_tenant_quota_bytes

        def precheck(s: Session) -> int:
            self._check_uploader(s, p, session_id)
            return _used_bytes(s, p.tenant_id)

        used = await self.db.read(precheck)
        if declared_size is not None and declared_size > max_bytes:
            raise self._too_large(max_bytes)
        if used + (declared_size or 1) > quota:
            raise self._over_quota(used, quota)
        sniffer = sniff.Sniffer(declared_type, name)

        async def checked() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                sniffer.feed(chunk)
                yield chunk
            sniffer.finish()

        try:
            blob = await self.store.put(p.tenant_id, checked(), max_bytes=max_bytes)
        except BlobTooLarge:
            raise self._too_large(max_bytes) from None
        content_type = sniffer.finish()
        facts: images.ImageFacts | None = None
        thumb_sha: str | None = None
        if content_type in sniff.IMAGE_TYPES:
            data = await self.store.read(p.tenant_id, blob.sha256)
            facts = await asyncio.to_thread(
                images.thumbnail,
                data,
                max_side=self.settings.attachment_thumbnail_px,
                max_pixels=self.settings.attachment_max_image_pixels,
            )
            del data
            thumb = await self.store.put(
                p.tenant_id, _one(facts.thumbnail), max_bytes=len(facts.thumbnail)
            )
            thumb_sha = thumb.sha256
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            # The tenant row lock serializes uploads of one tenant, so the quota holds.
            s.scalar(select(m.Tenant.id).where(m.Tenant.id == p.tenant_id).with_for_update())
            self._check_uploader(s, p, session_id)
            now_used = _used_bytes(s, p.tenant_id)
            if now_used + blob.size > quota:
                raise self._over_quota(now_used, quota)
            row = m.Attachment(
                id=new_id(),
                tenant_id=p.tenant_id,
                session_id=session_id,
                uploader_id=p.user_id,
                filename=name,
                content_type=content_type,
                size=blob.size,
                sha256=blob.sha256,
                width=facts.width if facts else None,
                height=facts.height if facts else None,
                thumbnail_sha256=thumb_sha,
                thumbnail_type=facts.thumbnail_type if facts else None,
                thumbnail_width=facts.thumbnail_width if facts else None,
                thumbnail_height=facts.thumbnail_height if facts else None,
                created_at=now,
            )
            s.add(row)
            return attachment_view(row)

        view = await self.db.write(work)
        log.info(
            "attachment stored",
            attachment=view["id"],
            session=session_id,
            type=content_type,
            size=blob.size,
        )
        return view

    @staticmethod
    def _check_uploader(s: Session, p: Principal, session_id: str) -> None:
        row, access = session_access(s, p, session_id)
        if row.status != SessionStatus.ACTIVE.value:
            raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
        if not access.may_self_join:  # in an open session, anyone who may post may attach
            access.check(Action.POST, session_id, what="attach files")

    @staticmethod
    def _too_large(limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the file is larger than {limit} bytes, the limit per attachment",
            details={"limit": limit},
        )

    @staticmethod
    def _over_quota(used: int, quota: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the tenant's attachments would exceed its quota of {quota} bytes ({used} used)",
            code=ErrorCode.QUOTA_EXCEEDED,
            details={"quota": quota, "used": used},
        )

    # -- reads ------------------------------------------------------------------------------

    def _row(self, s: Session, p: Principal, attachment_id: str) -> m.Attachment:
        """The attachment if its session is readable by ``p``; otherwise exactly not found."""
        row = (
            s.scalar(
                select(m.Attachment).where(
                    m.Attachment.id == attachment_id, m.Attachment.tenant_id == p.tenant_id
                )
            )
            if plausible_id(attachment_id)
            else None
        )
        if row is None:
            raise NotFound(f"attachment {attachment_id[:80]!r} not found")
        session_row(s, p, row.session_id)  # the session's read permission, as for messages
        return row

    async def download(self, p: Principal, attachment_id: str, *, thumbnail: bool) -> Download:
        """The file (or its thumbnail: not found for attachments that have none)."""

        def work(s: Session) -> tuple[dict[str, Any], str, str | None, str | None]:
            row = self._row(s, p, attachment_id)
            if thumbnail:
                return attachment_view(row), row.tenant_id, row.thumbnail_sha256, row.thumbnail_type
            return attachment_view(row), row.tenant_id, row.sha256, row.content_type

        view, tenant, sha, kind = await self.db.read(work)
        if sha is None or kind is None:
            raise NotFound("this attachment has no thumbnail (only images have one)")
        if thumbnail:
            try:
                data = await self.store.read(tenant, sha)
            except BlobMissing:
                raise NotFound("the attachment's content is gone") from None
            return Download(view, kind, len(data), sha, _one(data))
        # The first chunk is read before anything is sent, so a missing blob is a clean 404.
        chunks = self.store.open(tenant, sha)
        try:
            first = await anext(chunks)
        except BlobMissing:
            raise NotFound("the attachment's content is gone") from None
        except StopAsyncIteration:
            first = b""
        return Download(view, kind, view["size"], sha, _then(first, chunks))

    async def image_for_model(
        self, tenant_id: str, sha256: str, media_type: str
    ) -> tuple[str, bytes] | None:
        """An image for a provider request (the relay found its reference in a stored
        message): the original, or a copy scaled to ``relay_image_max_side`` and
        ``relay_max_image_bytes``; None when it is gone or will not fit. Recent results are
        kept, so the answers of one conversation do not scale the same image again."""
        key = (tenant_id, sha256)
        if key in self._model_images:
            self._model_images.move_to_end(key)
            return self._model_images[key]
        try:
            data = await self.store.read(tenant_id, sha256)
        except BlobMissing:
            return None
        fitted = await asyncio.to_thread(
            images.fit_for_model,
            data,
            media_type,
            max_side=self.settings.relay_image_max_side,
            max_bytes=self.settings.relay_max_image_bytes,
            max_pixels=self.settings.attachment_max_image_pixels,
        )
        self._model_images[key] = fitted
        while len(self._model_images) > MODEL_IMAGE_CACHE:
            self._model_images.popitem(last=False)
        return fitted

    async def manifest(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        """Every attachment of a session, oldest first, with the messages referencing each
        (``message_ids``): what an export of the session needs to carry its files."""

        def work(s: Session) -> list[dict[str, Any]]:
            session_row(s, p, session_id)
            return session_attachments(s, p.tenant_id, session_id)

        return await self.db.read(work)

    # -- garbage collection -----------------------------------------------------------------

    async def collect_garbage(self, grace: float | None = None) -> GcReport:
        """The sweep of the module docstring; ``grace`` defaults to the setting."""
        grace = self.settings.attachment_orphan_grace if grace is None else grace
        cutoff = utcnow() - timedelta(seconds=grace)

        def drop_rows(s: Session) -> int:
            linked = exists().where(m.MessageAttachment.attachment_id == m.Attachment.id)
            result = s.execute(
                delete(m.Attachment)
                .where(m.Attachment.created_at < cutoff, ~linked)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

        dropped = await self.db.write(drop_rows)
        blobs = 0
        oldest = time.time() - grace
        for tenant in await self.store.tenants():

            def live(s: Session, tenant: str = tenant) -> set[str]:
                rows = s.execute(
                    select(m.Attachment.sha256, m.Attachment.thumbnail_sha256).where(
                        m.Attachment.tenant_id == tenant
                    )
                ).all()
                return {sha for pair in rows for sha in pair if sha is not None}

            listed = await self.store.entries(tenant)
            keep = await self.db.read(live)
            for sha, modified in listed:
                if sha not in keep and modified < oldest:
                    await self.store.delete(tenant, sha)
                    blobs += 1
        metrics.ATTACHMENT_COLLECTED.labels(kind="attachments").inc(dropped)
        metrics.ATTACHMENT_COLLECTED.labels(kind="blobs").inc(blobs)
        if dropped or blobs:
            log.info("attachments collected", attachments=dropped, blobs=blobs)
        return GcReport(dropped, blobs)


async def _one(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    yield first
    async for chunk in rest:
        yield chunk
