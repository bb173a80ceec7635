"""The tenant guard (governance/scoping.py): a query on tenant-owned rows without a tenant
filter is refused before it reaches the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import and_, create_engine, delete, select, update
from sqlalchemy.orm import Session

from parley.governance import scoping
from parley.storage import models as m


def test_statements_without_a_tenant_filter_are_found() -> None:
    unscoped = scoping.unscoped_tables
    assert unscoped(select(m.Message).where(m.Message.session_id == "s")) == {"messages"}
    assert unscoped(select(m.Message).where(m.Message.tenant_id == "t")) == set()
    assert unscoped(select(m.Session).where(m.Session.tenant_id.in_(["t"]))) == set()
    assert unscoped(delete(m.Event).where(m.Event.session_id == "s")) == {"events"}
    assert unscoped(update(m.Participant).values(role="owner")) == {"participants"}
    joined = select(m.Message, m.User).join(
        m.User, and_(m.User.tenant_id == m.Message.tenant_id, m.User.id == m.Message.author_id)
    )
    # A join on tenants carries a filter across, but is no filter by itself.
    assert unscoped(joined) == {"messages", "users"}
    assert unscoped(joined.where(m.Message.tenant_id == "t")) == set()
    # Comparing with another table's tenant column does not count as a value.
    assert unscoped(select(m.Tenant.id)) == set()


def test_the_guard_refuses_unscoped_queries_and_honours_named_exceptions(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    m.Base.metadata.create_all(engine)
    scoping.install("raise")
    try:
        with Session(engine) as s:
            with pytest.raises(scoping.UnscopedQuery):
                s.scalars(select(m.Message).where(m.Message.session_id == "s")).all()
            s.scalars(select(m.Message).where(m.Message.tenant_id == "t")).all()
            s.scalars(
                select(m.Message).execution_options(parley_all_tenants="test: every tenant")
            ).all()
            scoping.all_tenants("test", lambda s: s.scalars(select(m.Event)).all())(s)
            with pytest.raises(scoping.UnscopedQuery):
                s.scalars(select(m.Event)).all()  # the exception ended with its unit of work
    finally:
        scoping.uninstall()
        engine.dispose()
