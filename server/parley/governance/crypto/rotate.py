"""Key rotation: re-wrap data keys under a new master key; new data key versions with every
row re-encrypted (``parley keys rotate``). Both are idempotent and resumable: run again after
an interruption and they continue where they stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session, attributes

from parley.governance.crypto.columns import KEYRING, open_blob, seal_blob
from parley.governance.crypto.envelope import MasterKey
from parley.governance.crypto.keyring import KeyRing
from parley.integrations.sealing import open_secret, seal_secret
from parley.storage import models as m
from parley.storage.database import Database

BATCH = 200
Progress = Callable[[str], None]
# Each encrypted table, walked in the order of a unique key (so a resumed run continues).
_ORDER: dict[Any, tuple[str, ...]] = {
    m.Message: ("session_id", "id"),
    m.Event: ("session_id", "seq"),
    m.WebhookDelivery: ("id",),
}


async def rewrap(db: Database, new: MasterKey, old: list[MasterKey], say: Progress) -> int:
    """Wrap every data key with ``new``; returns how many were re-wrapped."""
    ring = KeyRing(new, old)

    def work(s: Session) -> int:
        done = 0
        for row in s.scalars(select(m.TenantKey).order_by(m.TenantKey.tenant_id)).all():
            if row.master_id == new.id:
                continue
            key = ring.unwrap(row)
            row.wrapped = new.wrap(row.tenant_id, row.version, key)
            row.master_id = new.id
            done += 1
        return done

    count = await db.write(work)  # one transaction: all keys move together, or none
    say(f"re-wrapped {count} data keys under master key {new.id}")
    return count


async def rotate_data_keys(db: Database, ring: KeyRing, say: Progress) -> dict[str, int]:
    """A new data key version per tenant, then every row re-encrypted under it."""
    db.info[KEYRING] = ring
    tenants = await db.read(lambda s: list(s.scalars(select(m.Tenant.id)).all()))
    totals = {
        "tenants": 0,
        "messages": 0,
        "events": 0,
        "deliveries": 0,
        "secrets": 0,
        "documents": 0,
    }
    for number, tenant_id in enumerate(sorted(tenants), start=1):

        def add(s: Session, tenant_id: str = tenant_id) -> int:
            return ring.add_version(s.connection(), tenant_id)

        version = await db.write(add)
        ring.forget_current()
        counts = {
            "messages": await _reseal_rows(db, tenant_id, m.Message, ("text", "parts")),
            "events": await _reseal_rows(db, tenant_id, m.Event, ("data",)),
            "deliveries": await _reseal_rows(db, tenant_id, m.WebhookDelivery, ("payload",)),
            "secrets": await _reseal_secrets(db, tenant_id),
            "documents": await _reseal_docs(db, tenant_id),
        }
        for name, value in counts.items():
            totals[name] += value
        totals["tenants"] += 1
        say(
            f"[{number}/{len(tenants)}] tenant {tenant_id}: key version {version}, "
            f"{counts['messages']} messages, {counts['events']} events, "
            f"{counts['deliveries']} webhook deliveries, {counts['secrets']} webhook secrets, "
            f"{counts['documents']} document rows re-encrypted"
        )
    return totals


async def _reseal_rows(db: Database, tenant_id: str, model: Any, columns: tuple[str, ...]) -> int:
    names = _ORDER[model]
    keys = [getattr(model, name) for name in names]
    after: tuple[Any, ...] | None = None
    total = 0
    while True:

        def work(s: Session, after: tuple[Any, ...] | None = after) -> tuple[Any, ...] | None:
            q = select(model).where(model.tenant_id == tenant_id)
            if after is not None:
                q = q.where(tuple_(*keys) > tuple_(*after))
            rows = s.scalars(q.order_by(*keys).limit(BATCH)).all()
            for row in rows:
                for column in columns:
                    if getattr(row, column) not in (None, ""):
                        attributes.flag_modified(row, column)
            s.flush()
            last = rows[-1] if rows else None
            if last is None:
                return None
            return (*(getattr(last, name) for name in names), len(rows))

        result = await db.write(work)
        if result is None:
            return total
        after = result[:-1]
        total += result[-1]


async def _reseal_secrets(db: Database, tenant_id: str) -> int:
    """Webhook signing secrets, sealed under the newest version (plaintext ones sealed too)."""

    def work(s: Session) -> int:
        hooks = s.scalars(select(m.Webhook).where(m.Webhook.tenant_id == tenant_id)).all()
        for hook in hooks:
            secret = open_secret(s, tenant_id, hook.id, hook.secret)
            hook.secret = seal_secret(s, tenant_id, hook.id, secret)
        return len(hooks)

    return await db.write(work)


async def _reseal_docs(db: Database, tenant_id: str) -> int:
    def work(s: Session) -> int:
        count = 0
        for sid, state in s.execute(
            select(m.DocSnapshot.session_id, m.DocSnapshot.state).where(
                m.DocSnapshot.tenant_id == tenant_id
            )
        ).all():
            name = f"snapshot|{sid}"
            plain = open_blob(s, tenant_id, name, bytes(state))
            s.execute(
                update(m.DocSnapshot)
                .where(m.DocSnapshot.session_id == sid)
                .values(state=seal_blob(s, tenant_id, name, plain))
            )
            count += 1
        for uid, sid, data in s.execute(
            select(m.DocUpdate.id, m.DocUpdate.session_id, m.DocUpdate.data).where(
                m.DocUpdate.tenant_id == tenant_id
            )
        ).all():
            name = f"update|{sid}"
            plain = open_blob(s, tenant_id, name, bytes(data))
            s.execute(
                update(m.DocUpdate)
                .where(m.DocUpdate.id == uid)
                .values(data=seal_blob(s, tenant_id, name, plain))
            )
            count += 1
        return count

    return await db.write(work)
