"""The tenant guard: every query on a tenant-owned table must filter on that table's tenant.

Tables with a ``tenant_id`` column hold one tenant's data per row. A query that reads, changes
or deletes such rows without comparing that table's ``tenant_id`` could mix tenants, so the
guard, installed as a SQLAlchemy ``do_orm_execute`` hook, refuses it (``raise``) or logs it
(``log``). The rule is checked on the statement, before it reaches the database: it costs no
round trip. The test suite runs with ``raise``, so a new unscoped query fails its tests.

A query that must span tenants, or that reads by a globally unique id another layer already
checked, says so with a reason: in its execution options, or for a whole unit of work::

    select(...).execution_options(parley_all_tenants="audit verify walks every chain")
    await db.read(all_tenants("replay: the hub checked access", work))

A table counts as scoped when its ``tenant_id`` is compared with a value, or with the
``tenant_id`` of a table that is (a join on tenants carries the filter across).

Inserts are not checked: a new row cannot be written without its ``tenant_id`` (the column
is NOT NULL everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import Column, Table, event
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter

from parley.storage.models import Base

log = structlog.get_logger("parley.tenancy")

ESCAPE = "parley_all_tenants"
TENANT_TABLES = frozenset(
    t.name for t in Base.metadata.tables.values() if "tenant_id" in t.c and t.name != "tenants"
)


T = TypeVar("T")


def all_tenants(reason: str, fn: Callable[[Session], T]) -> Callable[[Session], T]:
    """A unit of work whose queries may leave out the tenant filter, for ``reason``."""

    def work(s: Session) -> T:
        s.info[ESCAPE] = reason
        try:
            return fn(s)
        finally:
            s.info.pop(ESCAPE, None)

    return work


class UnscopedQuery(RuntimeError):
    """A query on tenant-owned rows without a tenant filter."""


def _table_name(obj: Any) -> str | None:
    """The base table name of a table or an alias of one."""
    while obj is not None and not isinstance(obj, Table):
        obj = getattr(obj, "element", None)
    return obj.name if isinstance(obj, Table) else None


def unscoped_tables(statement: Any) -> set[str]:
    """Tenant-owned tables the statement touches without comparing their ``tenant_id``."""
    touched: set[str] = set()
    scoped: set[str] = set()
    joined: list[tuple[str, str]] = []
    for element in visitors.iterate(statement):
        if isinstance(element, Table) and element.name in TENANT_TABLES:
            touched.add(element.name)
        elif isinstance(element, BinaryExpression):
            left, right = _tenant_table(element.left), _tenant_table(element.right)
            if left and right:
                joined.append((left, right))
            elif left and _is_value(element.right):
                scoped.add(left)
            elif right and _is_value(element.left):
                scoped.add(right)
    grew = True
    while grew:
        grew = False
        for a, b in joined:
            if (a in scoped) != (b in scoped):
                scoped.update((a, b))
                grew = True
    return touched - scoped


def _tenant_table(side: Any) -> str | None:
    if isinstance(side, Column) and side.key == "tenant_id":
        return _table_name(side.table)
    return None


def _is_value(side: Any) -> bool:
    """A bound value (``= :p``, ``IN (...)``), not another column."""
    return isinstance(side, BindParameter) or any(
        isinstance(e, BindParameter) for e in visitors.iterate(side)
    )


def install(mode: str) -> None:
    """Check every ORM execution from now on: ``raise``, ``log`` or ``off``."""
    uninstall()
    if mode == "off":
        return
    _state["mode"] = mode
    event.listen(Session, "do_orm_execute", _check)


def uninstall() -> None:
    if event.contains(Session, "do_orm_execute", _check):
        event.remove(Session, "do_orm_execute", _check)


_state: dict[str, str] = {"mode": "off"}


def _check(state: ORMExecuteState) -> None:
    if (
        state.execution_options.get(ESCAPE)
        or state.session.info.get(ESCAPE)
        or not (state.is_select or state.is_update or state.is_delete)
    ):
        return
    missing = unscoped_tables(state.statement)
    if not missing:
        return
    text = str(state.statement).replace("\n", " ")[:300]
    if _state["mode"] == "raise":
        raise UnscopedQuery(f"query on {sorted(missing)} without a tenant filter: {text}")
    log.error("query without a tenant filter", tables=sorted(missing), statement=text)
