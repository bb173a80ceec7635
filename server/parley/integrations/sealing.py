"""Webhook signing secrets at rest: sealed with the tenant's data key when encryption at rest
is on (the key ring of governance/crypto), so a copy of the database does not let anyone sign
deliveries a receiver would trust.

Stored form: the sealed-text form of ``crypto.columns`` (``"\\x1bpenc:" + base64(blob)``),
bound to the tenant and the webhook (associated data), so a sealed secret copied to another
webhook does not open. A secret is 49 characters; sealed it is 122, within the column's 128.
Secrets stored before encryption was turned on are plaintext and are read as they are; the
next rotation seals them. Without a key ring, secrets are stored as they are.
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.orm import Session

from parley.governance.crypto.columns import TEXT_MARK, keyring_of
from parley.governance.crypto.envelope import CryptoError, key_version, open_sealed, seal


def _aad(tenant_id: str, webhook_id: str) -> bytes:
    return f"whk|{tenant_id}|{webhook_id}|secret".encode()


def seal_secret(s: Session, tenant_id: str, webhook_id: str, secret: str) -> str:
    """The secret as the ``webhooks.secret`` column stores it, inside ``s``'s unit of work."""
    ring = keyring_of(s)
    if ring is None:
        return secret
    version, key = ring.for_write(s, s.connection(), tenant_id)
    blob = seal(key, version, secret.encode(), _aad(tenant_id, webhook_id))
    return TEXT_MARK + base64.b64encode(blob).decode()


def open_secret(s: Session, tenant_id: str, webhook_id: str, stored: str) -> str:
    """The plaintext secret of a stored column value (plaintext values as they are)."""
    if not stored.startswith(TEXT_MARK):
        return stored
    try:
        blob = base64.b64decode(stored[len(TEXT_MARK) :], validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"the secret of webhook {webhook_id} is damaged") from None
    version = key_version(blob)
    ring = keyring_of(s)
    if version is None or ring is None:
        raise CryptoError(
            f"the secret of webhook {webhook_id} is sealed, and this process has no master key"
            " that opens it (set PARLEY_MASTER_KEY)"
        )
    key = ring.for_read(s.connection(), tenant_id, version)
    return open_sealed(key, blob, _aad(tenant_id, webhook_id)).decode()
