"""The tenant guard: every query on a tenant-owned table must filter on that table's tenant.

Tables with a ``tenant_id`` column hold one tenant's data per row. A query that reads, changes
or deletes such rows without comparing that table's ``tenant_id`` could mix tenants, so the
guard, installed as a SQLAlchemy ``do_orm_execute`` hook, refuses it (``raise``) or logs it
(``log``). The rule is checked on the statement, before it reaches the database: it costs no
round trip. The test suite runs with ``raise``, so a new unscoped query fails its tests.

A query that must span tenants (operator tools such as ``parley audit verify``, the relay's
reaper) says so, with a reason, in its execution options::

    select(...).execution_options(parley_all_tenants="audit verify walks every chain")

Inserts are not checked: a new row cannot be written without its ``tenant_id`` (the column
is NOT NULL everywhere).
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Column, Table, event
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BinaryExpression

from parley.storage.models import Base

log = structlog.get_logger("parley.tenancy")

ESCAPE = "parley_all_tenants"
TENANT_TABLES = frozenset(
    t.name for t in Base.metadata.tables.values() if "tenant_id" in t.c and t.name != "tenants"
)


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
    for element in visitors.iterate(statement):
        if isinstance(element, Table) and element.name in TENANT_TABLES:
            touched.add(element.name)
        elif isinstance(element, BinaryExpression):
            for side in (element.left, element.right):
                if isinstance(side, Column) and side.key == "tenant_id":
                    name = _table_name(side.table)
                    if name is not None:
                        scoped.add(name)
    return touched - scoped


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
    if state.execution_options.get(ESCAPE) or not (
        state.is_select or state.is_update or state.is_delete
    ):
        return
    missing = unscoped_tables(state.statement)
    if not missing:
        return
    text = str(state.statement).replace("\n", " ")[:300]
    if _state["mode"] == "raise":
        raise UnscopedQuery(f"query on {sorted(missing)} without a tenant filter: {text}")
    log.error("query without a tenant filter", tables=sorted(missing), statement=text)
