"""Transparent encryption of content columns, through SQLAlchemy ORM events.

Encrypted: ``messages.text`` and ``messages.parts``, ``events.data`` (it carries message
views), ``webhook_deliveries.payload`` (the event a receiver gets, message text included),
document snapshots and updates (``seal_blob``/``open_blob``, called by the document store).
Every session of a :class:`~parley.storage.database.Database` that has a key ring in
``db.info[KEYRING]`` encrypts before INSERT/UPDATE and decrypts on load; objects in memory
always hold plaintext. Without a key ring nothing changes, and plaintext rows (written before
encryption was turned on) are read as they are.

Stored forms: text ``"\\x1bpenc:" + base64(blob)``; JSON ``{"$enc": base64(blob)}`` (message
parts are lists, and event data and delivery payloads never have that key, so none can be
mistaken for it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session, attributes

from parley.governance.crypto.envelope import key_version, open_sealed, seal
from parley.governance.crypto.keyring import KeyRing
from parley.storage import models as m

KEYRING = "parley_keyring"
TEXT_MARK = "\x1bpenc:"
JSON_MARK = "$enc"
_PLAIN = "parley_plaintext"  # InstanceState.info: plaintext to restore after a flush

# Per model: the encrypted attributes, and how each row names itself in associated data.
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    m.Message: ("text", "parts"),
    m.Event: ("data",),
    m.WebhookDelivery: ("payload",),
}


def _row_name(model: type[Any], row: Mapping[str, Any]) -> str:
    if model is m.Message:
        return f"msg|{row['tenant_id']}|{row['id']}"
    if model is m.WebhookDelivery:
        return f"whd|{row['tenant_id']}|{row['id']}"
    return f"evt|{row['tenant_id']}|{row['session_id']}|{row['seq']}"


def _aad(target: Any, column: str) -> bytes:
    row = {name: getattr(target, name) for name in ("tenant_id", "id", "session_id", "seq")
           if hasattr(target, name)}  # fmt: skip
    return f"{_row_name(type(target), row)}|{column}".encode()


def seal_values(
    session: Session, model: type[Any], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows for a Core ``insert(model)`` of an encrypted model, sealed as the ORM hooks would
    seal them (bulk inserts skip those hooks). Unchanged without a key ring."""
    ring = keyring_of(session)
    if ring is None:
        return rows
    conn = session.connection()
    sealed = []
    for row in rows:
        row = dict(row)
        for column in _FIELDS[model]:
            encoded = _encode(row.get(column), column)
            if encoded is None:
                continue
            version, key = ring.for_write(session, conn, row["tenant_id"])
            aad = f"{_row_name(model, row)}|{column}".encode()
            row[column] = _stored(seal(key, version, encoded[0], aad), encoded[1])
        sealed.append(row)
    return sealed


def keyring_of(session: Session) -> KeyRing | None:
    ring = session.info.get(KEYRING)
    return ring if isinstance(ring, KeyRing) else None


def _encode(value: Any, column: str) -> tuple[bytes, bool] | None:
    """Plaintext bytes of a column value; None when there is nothing to hide."""
    if value is None or value == "":
        return None
    if column == "text":
        return str(value).encode(), True
    return orjson.dumps(value), False


def _stored(blob: bytes, is_text: bool) -> Any:
    text = base64.b64encode(blob).decode()
    return TEXT_MARK + text if is_text else {JSON_MARK: text}


def _blob_of(value: Any) -> bytes | None:
    """The sealed blob inside a stored value, or None when the value is plaintext."""
    if isinstance(value, str) and value.startswith(TEXT_MARK):
        raw = value[len(TEXT_MARK) :]
    elif isinstance(value, dict) and len(value) == 1 and isinstance(value.get(JSON_MARK), str):
        raw = value[JSON_MARK]
    else:
        return None
    try:
        blob = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return blob if key_version(blob) is not None else None


def _seal_row(ring: KeyRing, session: Session, conn: Any, target: Any, only_changed: bool) -> None:
    plain: dict[str, Any] = {}
    for column in _FIELDS[type(target)]:
        if only_changed and not attributes.get_history(target, column).has_changes():
            continue
        value = getattr(target, column)
        encoded = _encode(value, column)
        if encoded is None or _blob_of(value) is not None:
            continue
        version, key = ring.for_write(session, conn, target.tenant_id)
        plain[column] = value
        setattr(target, column, _stored(seal(key, version, encoded[0], _aad(target, column)),
                                        encoded[1]))  # fmt: skip
    if plain:
        attributes.instance_state(target).info[_PLAIN] = plain


def _restore(target: Any) -> None:
    plain = attributes.instance_state(target).info.pop(_PLAIN, None)
    for column, value in (plain or {}).items():
        attributes.set_committed_value(target, column, value)


def _open_row(ring: KeyRing, session: Session, target: Any) -> None:
    for column in _FIELDS[type(target)]:
        value = target.__dict__.get(column)
        blob = _blob_of(value)
        if blob is None:
            continue
        version = key_version(blob)
        assert version is not None
        key = ring.for_read(session.connection(), target.tenant_id, version)
        raw = open_sealed(key, blob, _aad(target, column))
        attributes.set_committed_value(
            target, column, raw.decode() if column == "text" else orjson.loads(raw)
        )


def seal_blob(session: Session, tenant_id: str, name: str, data: bytes) -> bytes:
    """Document bytes as stored: sealed when the database has a key ring."""
    ring = keyring_of(session)
    if ring is None:
        return data
    version, key = ring.for_write(session, session.connection(), tenant_id)
    return seal(key, version, data, f"doc|{tenant_id}|{name}".encode())


def open_blob(session: Session, tenant_id: str, name: str, stored: bytes) -> bytes:
    """Stored document bytes as plaintext (sealed ones opened, plaintext ones as they are)."""
    ring = keyring_of(session)
    version = key_version(stored)
    if ring is None or version is None:
        return stored
    key = ring.for_read(session.connection(), tenant_id, version)
    return open_sealed(key, stored, f"doc|{tenant_id}|{name}".encode())


def is_sealed(stored: bytes) -> bool:
    return key_version(stored) is not None


def _install() -> None:
    for model in _FIELDS:

        @event.listens_for(model, "before_insert")
        def _before_insert(mapper: Mapper[Any], conn: Any, target: Any) -> None:
            session = Session.object_session(target)
            ring = keyring_of(session) if session is not None else None
            if ring is not None and session is not None:
                _seal_row(ring, session, conn, target, only_changed=False)

        @event.listens_for(model, "before_update")
        def _before_update(mapper: Mapper[Any], conn: Any, target: Any) -> None:
            session = Session.object_session(target)
            ring = keyring_of(session) if session is not None else None
            if ring is not None and session is not None:
                _seal_row(ring, session, conn, target, only_changed=True)

        @event.listens_for(model, "after_insert")
        @event.listens_for(model, "after_update")
        def _after_write(mapper: Mapper[Any], conn: Any, target: Any) -> None:
            _restore(target)

        @event.listens_for(model, "load")
        def _on_load(target: Any, context: Any) -> None:
            ring = keyring_of(context.session)
            if ring is not None:
                _open_row(ring, context.session, target)

        @event.listens_for(model, "refresh")
        def _on_refresh(target: Any, context: Any, attrs: Any) -> None:
            ring = keyring_of(context.session)
            if ring is not None:
                _open_row(ring, context.session, target)

    @event.listens_for(Session, "after_commit")
    def _committed(session: Session) -> None:
        ring = keyring_of(session)
        if ring is not None:
            ring.committed(session)

    @event.listens_for(Session, "after_rollback")
    def _rolled_back(session: Session) -> None:
        ring = keyring_of(session)
        if ring is not None:
            ring.rolled_back(session)


_install()
