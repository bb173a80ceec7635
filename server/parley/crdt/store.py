"""Document persistence: an append-only update log plus a snapshot, compacted in the background.

The failures other Yjs servers are known for, and what prevents each here:

* **Serving a document before it loaded.** :meth:`DocStore.load` returns the whole stored
  state or raises; the manager lets no client in before it returned (``manager.py``).
* **Overwriting stored state with an empty document.** Nothing writes in-memory state over
  stored state. The log only grows, and a snapshot is only ever the merge of rows already
  stored, written over the exact snapshot version it merged, and only deleting the exact rows
  it merged. A crashed or racing compaction leaves duplicates at worst, never a loss.
* **Losing updates between debounced saves.** Updates are appended as they arrive (group
  commit: one transaction per batch that piled up while the previous one was written).

Reads take the log before the snapshot: a compaction that commits between the two reads is then
seen either in neither or in the snapshot, whose content includes the rows it deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, TransactionEvent, get_update, merge_updates
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley.crdt.updates import EMPTY_UPDATE, has_structs
from parley.governance.crypto.columns import open_blob, seal_blob
from parley.governance.scoping import all_tenants
from parley.ids import utcnow
from parley.storage import models as m
from parley.storage.database import Database

DELETE_CHUNK = 500


@dataclass(slots=True)
class Stored:
    """A document as stored: the snapshot, the log rows after it, and their ids."""

    snapshot: bytes | None
    version: int | None
    rows: list[tuple[int, bytes]]

    @property
    def parts(self) -> list[bytes]:
        return ([self.snapshot] if self.snapshot else []) + [data for _, data in self.rows]

    @property
    def stored_bytes(self) -> int:
        return len(self.snapshot or b"") + sum(len(d) for _, d in self.rows)


@dataclass(frozen=True, slots=True)
class StoreStats:
    snapshot_bytes: int
    log_rows: int
    log_bytes: int

    @property
    def stored_bytes(self) -> int:
        return self.snapshot_bytes + self.log_bytes


class _Stale(Exception):
    """Another compaction won; roll back and leave the rows alone."""


def merge_parts(parts: Sequence[bytes]) -> bytes:
    """The stored parts as one update holding the document's state.

    Applying to a document (rather than ``merge_updates``) drops the content of deleted items,
    which is what keeps storage near the document's size. Structs that cannot be integrated
    yet (they wait for a change not stored) would be lost by that, so they are kept beside it.
    CPU-bound: call it in a thread. Raises ValueError if a part is corrupt.
    """
    if not parts:
        return EMPTY_UPDATE
    doc: Doc[Any] = Doc()
    for part in parts:
        doc.apply_update(part)
    state = doc.get_update()
    leftover = get_update(merge_updates(*parts), doc.get_state())
    if has_structs(leftover):
        state = merge_updates(state, leftover)
    return state


def missing_from(parts: Sequence[bytes], state: bytes) -> bytes | None:
    """What ``state`` (a document in memory) holds that the stored ``parts`` do not, as an
    update; None when storage has it all. CPU-bound: call it in a thread."""
    doc: Doc[Any] = Doc()
    for part in parts:
        doc.apply_update(part)
    missing: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        missing.append(event.update)

    doc.observe(capture)
    doc.apply_update(state)
    return missing[0] if missing else None


# Documents are read and stored by session id after the manager checked the caller's access
# (tenant-scoped) and keyed the room by its tenant-named channel; session ids are unique
# across tenants. So these units of work are exempt from the tenant guard, by name.
_WHY = "document storage by session id, after a tenant-scoped access check"


class DocStore:
    """Reads and writes of session documents (callers have checked access already)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, session_id: str) -> Stored:
        def work(s: Session) -> Stored:
            rows = s.execute(
                select(m.DocUpdate.id, m.DocUpdate.data, m.DocUpdate.tenant_id)
                .where(m.DocUpdate.session_id == session_id)
                .order_by(m.DocUpdate.id)
            ).all()
            snap = s.execute(
                select(m.DocSnapshot.state, m.DocSnapshot.version, m.DocSnapshot.tenant_id).where(
                    m.DocSnapshot.session_id == session_id
                )
            ).first()
            # Stored bytes may be sealed (encryption at rest, governance/crypto/).
            return Stored(
                snapshot=open_blob(s, snap[2], f"snapshot|{session_id}", bytes(snap[0]))
                if snap
                else None,
                version=int(snap[1]) if snap else None,
                rows=[
                    (int(i), open_blob(s, t, f"update|{session_id}", bytes(d))) for i, d, t in rows
                ],
            )

        return await self.db.read(all_tenants(_WHY, work))

    async def load(self, session_id: str) -> bytes:
        """The stored document as one update (merged in a thread). Raises on any failure."""
        return await self.merged((await self.read(session_id)).parts)

    @staticmethod
    async def merged(parts: Sequence[bytes]) -> bytes:
        """``parts`` as one update, merged in a thread when there is more than one."""
        if not parts:
            return EMPTY_UPDATE
        if len(parts) == 1:
            return parts[0]
        return await asyncio.to_thread(merge_parts, parts)

    async def append(self, tenant_id: str, session_id: str, *updates: bytes) -> None:
        """Store updates durably, in one transaction (IntegrityError once the session is
        deleted)."""
        now = utcnow()

        def work(s: Session) -> None:
            s.execute(
                insert(m.DocUpdate),
                [
                    {
                        "session_id": session_id,
                        "tenant_id": tenant_id,
                        "data": seal_blob(s, tenant_id, f"update|{session_id}", u),
                        "created_at": now,
                    }
                    for u in updates
                ],
            )

        await self.db.write(all_tenants(_WHY, work))

    async def stats(self, session_id: str) -> StoreStats:
        def work(s: Session) -> StoreStats:
            log_rows, log_bytes = s.execute(
                select(func.count(), func.coalesce(func.sum(func.length(m.DocUpdate.data)), 0))
                .select_from(m.DocUpdate)
                .where(m.DocUpdate.session_id == session_id)
            ).one()
            snap = s.scalar(
                select(func.length(m.DocSnapshot.state)).where(
                    m.DocSnapshot.session_id == session_id
                )
            )
            return StoreStats(int(snap or 0), int(log_rows), int(log_bytes))

        return await self.db.read(all_tenants(_WHY, work))

    async def compact(self, tenant_id: str, session_id: str) -> bool:
        """Merge the log into the snapshot. False when there was nothing to do or another
        process compacted at the same time (its result stands; ours is dropped)."""
        stored = await self.read(session_id)
        if not stored.rows:
            return False
        merged = await asyncio.to_thread(merge_parts, stored.parts)
        ids = [i for i, _ in stored.rows]
        now = utcnow()

        def work(s: Session) -> None:
            state = seal_blob(s, tenant_id, f"snapshot|{session_id}", merged)
            if stored.version is None:
                s.add(
                    m.DocSnapshot(
                        session_id=session_id,
                        tenant_id=tenant_id,
                        state=state,
                        version=1,
                        updated_at=now,
                    )
                )
                s.flush()  # a concurrent first snapshot fails here on the primary key
            else:
                done = s.execute(
                    update(m.DocSnapshot)
                    .where(
                        m.DocSnapshot.session_id == session_id,
                        m.DocSnapshot.version == stored.version,
                    )
                    .values(state=state, version=stored.version + 1, updated_at=now)
                )
                if getattr(done, "rowcount", 0) != 1:
                    raise _Stale
            for start in range(0, len(ids), DELETE_CHUNK):
                s.execute(
                    delete(m.DocUpdate).where(m.DocUpdate.id.in_(ids[start : start + DELETE_CHUNK]))
                )

        try:
            await self.db.write(all_tenants(_WHY, work))
        except (_Stale, IntegrityError):
            return False
        return True

    async def reconcile(self, tenant_id: str, session_id: str, state: bytes) -> bool:
        """Store whatever ``state`` holds that storage lacks (after a crash elsewhere lost an
        unflushed batch, for example). True when something was written."""
        stored = await self.read(session_id)
        missing = await asyncio.to_thread(missing_from, stored.parts, state)
        if missing is None:
            return False
        await self.append(tenant_id, session_id, missing)
        return True
