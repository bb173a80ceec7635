"""Encryption at rest (docs/privacy.md): envelope encryption of message content, event payloads
and documents with per-tenant data keys wrapped by a master key.

Encryption is on when a master key is configured: ``PARLEY_MASTER_KEY`` (base64 of 32 bytes)
or a ``master.key`` file in the data folder. ``PARLEY_MASTER_KEY_PREVIOUS`` names the key being
rotated away from, so processes read data keys wrapped by either during a rotation.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.crypto.columns import KEYRING
from parley.governance.crypto.envelope import CryptoError, MasterKey
from parley.governance.crypto.keyring import KeyRing
from parley.governance.scoping import all_tenants
from parley.storage import models as m
from parley.storage.database import Database

__all__ = ["CryptoError", "KeyRing", "MasterKey", "check", "enable", "master_key"]

KEY_FILE = "master.key"


def master_key(settings: Settings) -> MasterKey | None:
    """The configured master key, or None when encryption at rest is off."""
    if settings.master_key is not None:
        return MasterKey.from_base64(settings.master_key.get_secret_value())
    path = settings.data_dir / KEY_FILE
    if path.exists():
        return MasterKey.from_base64(path.read_text())
    return None


async def check(db: Database, ring: KeyRing) -> None:
    """Refuse to run with a master key that cannot open the stored data keys (a wrong or
    rotated-away key would otherwise fail every read of encrypted content)."""

    def foreign(s: Session) -> list[str]:
        return list(
            s.scalars(
                select(m.TenantKey.master_id)
                .where(m.TenantKey.master_id.not_in(list(ring.masters)))
                .distinct()
            ).all()
        )

    unknown = await db.read(
        all_tenants("the master key must open every tenant's data keys", foreign)
    )
    if unknown:
        raise CryptoError(
            "stored data keys are wrapped by master key(s) "
            + ", ".join(sorted(unknown))
            + f" but this process has {', '.join(sorted(ring.masters))}: "
            "set PARLEY_MASTER_KEY (and PARLEY_MASTER_KEY_PREVIOUS during a rotation)"
        )


async def open_database(settings: Settings) -> Database:
    """The database of ``settings`` with encryption at rest on when a master key is configured
    (and checked to open the stored data keys): commands that read or write content outside a
    server use this, so they seal and open content exactly as the server does."""
    db = Database(settings.effective_database_url)
    ring = enable(db, settings)
    if ring is not None:
        await check(db, ring)
    return db


def enable(db: Database, settings: Settings) -> KeyRing | None:
    """Turn on encryption for every unit of work of ``db`` when a master key is configured."""
    master = master_key(settings)
    if master is None:
        return None
    previous = (
        [MasterKey.from_base64(settings.master_key_previous.get_secret_value())]
        if settings.master_key_previous is not None
        else []
    )
    ring = KeyRing(master, previous)
    db.info[KEYRING] = ring
    return ring
