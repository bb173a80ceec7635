"""Blob stores: the interface (``base``) and the embedded local-disk implementation."""

from parley.attachments.blobs.base import BlobMissing, BlobStore, BlobTooLarge, StoredBlob
from parley.attachments.blobs.local import LocalBlobStore

__all__ = ["BlobMissing", "BlobStore", "BlobTooLarge", "LocalBlobStore", "StoredBlob"]
