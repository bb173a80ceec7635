"""Idempotency keys of imports: a conversation by (source, external id), a message by
(source, conversation, message id). Stable across imports of the same export."""

from __future__ import annotations

import hashlib

CLIENT_ID_PREFIX = "import:"


def conversation_key(source: str, external_id: str) -> str:
    return hashlib.sha256(f"{source}\x00{external_id}".encode()).hexdigest()


def message_key(source: str, conversation: str, message: str) -> str:
    """The ``client_id`` of an imported message: stable across imports of the same export."""
    digest = hashlib.sha256(f"{source}\x00{conversation}\x00{message}".encode()).hexdigest()
    return CLIENT_ID_PREFIX + digest[:48]
