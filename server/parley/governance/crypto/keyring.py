"""Per-tenant data keys: created on first use, stored wrapped, cached unwrapped in memory.

All lookups run inside the caller's unit of work, on its connection, so they see its
transaction. A key created in a transaction is used by that transaction only until it
commits (a rolled-back key must never encrypt anything that stays); two processes creating a
tenant's first key at once insert with ON CONFLICT DO NOTHING and both use the winner.

The newest version of a tenant's key encrypts; every stored version decrypts. Which version
is newest is cached for ``CURRENT_TTL`` seconds, so after ``parley keys rotate --data-keys``
other processes switch within that time (rows they write meanwhile stay readable).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from parley.governance.crypto.envelope import CryptoError, MasterKey, new_data_key
from parley.ids import utcnow
from parley.storage import models as m

CURRENT_TTL = 60.0
PENDING = "parley_pending_data_keys"  # Session.info: keys created in its open transaction


class KeyRing:
    """Data keys of every tenant for one process, unwrapped by the master key(s)."""

    def __init__(self, master: MasterKey, previous: list[MasterKey] | None = None) -> None:
        self.master = master
        self.masters = {k.id: k for k in [master, *(previous or [])]}
        self._keys: dict[tuple[str, int], bytes] = {}
        self._current: dict[str, tuple[float, int]] = {}

    def unwrap(self, row: Any) -> bytes:
        """The plaintext data key of a ``tenant_keys`` row, by whichever master wrapped it."""
        master = self.masters.get(row.master_id)
        if master is None:
            raise CryptoError(
                f"data key {row.tenant_id}/{row.version} is wrapped by master key "
                f"{row.master_id}, which this process does not have"
            )
        return master.unwrap(row.tenant_id, row.version, row.wrapped)

    def for_write(self, session: Session, conn: Connection, tenant_id: str) -> tuple[int, bytes]:
        """The (version, key) that encrypts the tenant's new content; created if none."""
        pending: dict[str, tuple[int, bytes]] = session.info.setdefault(PENDING, {})
        if tenant_id in pending:
            return pending[tenant_id]
        hit = self._current.get(tenant_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], self._keys[(tenant_id, hit[1])]
        row = self._newest(conn, tenant_id)
        if row is None:
            key = new_data_key()
            self._insert(conn, tenant_id, 1, key)
            row = self._newest(conn, tenant_id)
            assert row is not None
            if row.wrapped is not None and self.unwrap(row) == key:
                pending[tenant_id] = (1, key)  # ours: usable once committed (commit hook)
                return 1, key
        key = self.unwrap(row)
        self._remember(tenant_id, row.version, key)
        return row.version, key

    def for_read(self, conn: Connection, tenant_id: str, version: int) -> bytes:
        """The key of ``version`` for the tenant (any version ever stored)."""
        key = self._keys.get((tenant_id, version))
        if key is not None:
            return key
        row = conn.execute(
            select(m.TenantKey).where(
                m.TenantKey.tenant_id == tenant_id, m.TenantKey.version == version
            )
        ).first()
        if row is None:
            raise CryptoError(f"no data key {tenant_id}/{version}")
        key = self.unwrap(row)
        self._keys[(tenant_id, version)] = key
        return key

    def committed(self, session: Session) -> None:
        """The session's transaction committed: keys it created are now everyone's."""
        for tenant_id, (version, key) in session.info.pop(PENDING, {}).items():
            self._remember(tenant_id, version, key)

    def rolled_back(self, session: Session) -> None:
        session.info.pop(PENDING, None)

    def _remember(self, tenant_id: str, version: int, key: bytes) -> None:
        self._keys[(tenant_id, version)] = key
        self._current[tenant_id] = (time.monotonic() + CURRENT_TTL, version)

    def forget_current(self) -> None:
        """Forget which versions are newest (after a rotation in this process)."""
        self._current.clear()

    @staticmethod
    def _newest(conn: Connection, tenant_id: str) -> Any:
        return conn.execute(
            select(m.TenantKey)
            .where(m.TenantKey.tenant_id == tenant_id)
            .order_by(m.TenantKey.version.desc())
            .limit(1)
        ).first()

    def _insert(self, conn: Connection, tenant_id: str, version: int, key: bytes) -> None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(m.TenantKey)
            .values(
                tenant_id=tenant_id,
                version=version,
                wrapped=self.master.wrap(tenant_id, version, key),
                master_id=self.master.id,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )

    def add_version(self, conn: Connection, tenant_id: str) -> int:
        """Create the tenant's next data key version (``parley keys rotate --data-keys``)."""
        row = self._newest(conn, tenant_id)
        version = (row.version if row is not None else 0) + 1
        key = new_data_key()
        self._insert(conn, tenant_id, version, key)
        self._keys[(tenant_id, version)] = key
        return version
