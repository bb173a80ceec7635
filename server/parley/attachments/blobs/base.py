"""The blob store interface: the bytes of attachments, content-addressed per tenant.

Contract (``tests/e2e/test_attachments.py`` exercises it through the API):

* A blob is named by the sha256 of its bytes inside a tenant; the same bytes uploaded twice in
  one tenant are stored once. Tenants never share blobs, so deleting one tenant's blob can never
  affect another's.
* :meth:`BlobStore.put` stores all of a stream or nothing: a stream longer than ``max_bytes``
  raises ``BlobTooLarge`` as soon as the limit is passed (the rest is never read), and any
  exception raised by the stream itself aborts the write the same way. Readers never see a
  partial blob. Storing existing content again refreshes its ``modified`` time, which garbage
  collection relies on (a blob modified recently is never collected).
* :meth:`BlobStore.open` and :meth:`BlobStore.read` raise ``BlobMissing`` for unknown blobs.
* :meth:`BlobStore.delete` of a missing blob is not an error.

The embedded implementation keeps files on local disk (``local.py``); an object store (S3 and
the like) fits the same five methods: put = multipart upload then copy to the content address,
entries = list by prefix with ``LastModified``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class BlobTooLarge(Exception):
    """More than ``max_bytes`` arrived; nothing was stored."""


class BlobMissing(Exception):
    """No blob with this address in this tenant."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


class BlobStore(Protocol):
    """Where attachment bytes live (see the module contract)."""

    async def put(
        self, tenant_id: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredBlob:
        """Store the stream under its sha256; all or nothing."""
        ...

    def open(self, tenant_id: str, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks (raises ``BlobMissing`` on the first read if absent)."""
        ...

    async def read(self, tenant_id: str, sha256: str) -> bytes:
        """The whole blob (for thumbnails and provider requests: callers bound the size)."""
        ...

    async def delete(self, tenant_id: str, sha256: str) -> None:
        """Remove a blob; missing is fine."""
        ...

    async def entries(self, tenant_id: str) -> list[tuple[str, float]]:
        """Every blob of a tenant as (sha256, modified time in epoch seconds)."""
        ...

    async def tenants(self) -> list[str]:
        """Tenants that have blobs."""
        ...
