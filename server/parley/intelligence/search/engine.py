"""One search: hits ranked by the engine with snippets, facets over every match, read scope.

Dates: a message or annotation hit is in a range when it was written in it; a title or tag hit
(and a session, when there is no text) when the session was active in it (created before its
end, last changed after its start).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from parley.errors import InvalidRequest
from parley.governance.auth import Principal
from parley.ids import iso
from parley.intelligence import snippets
from parley.intelligence.search.base import SearchBackend
from parley.intelligence.search.query import SearchQuery
from parley.intelligence.textquery import TextQuery, parse
from parley.sessions.queries import readable_sessions_filter, tags_of
from parley.storage import models as m

FACET_VALUES = 20
MAX_OFFSET = 10_000


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or int(cursor) > MAX_OFFSET:
        raise InvalidRequest("cursor is not one this endpoint returned")
    return int(cursor)


def _session_filters(p: Principal, query: SearchQuery) -> list[ColumnElement[bool]]:
    """Conditions on ``sessions`` (read scope first)."""
    conds: list[ColumnElement[bool]] = [readable_sessions_filter(p)]
    if query.status is not None:
        conds.append(m.Session.status == query.status.value)
    if query.tag is not None:
        conds.append(
            m.Session.id.in_(
                select(m.SessionTag.session_id).where(
                    m.SessionTag.tenant_id == p.tenant_id,
                    m.SessionTag.tag == query.tag.strip().lower(),
                )
            )
        )
    for user, roles in ((query.participant, None), (query.owner, ["owner"])):
        if user is None:
            continue
        sub = select(m.Participant.session_id).where(
            m.Participant.tenant_id == p.tenant_id, m.Participant.user_id == user
        )
        if roles:
            sub = sub.where(m.Participant.role.in_(roles))
        conds.append(m.Session.id.in_(sub))
    if query.assistant is not None or query.model is not None:
        sub = select(m.Assistant.session_id).where(m.Assistant.tenant_id == p.tenant_id)
        if query.assistant is not None:
            sub = sub.where(func.lower(m.Assistant.name) == query.assistant.lower())
        if query.model is not None:
            sub = sub.where(m.Assistant.model == query.model)
        conds.append(m.Session.id.in_(sub))
    return conds


def _active_in(query: SearchQuery) -> list[ColumnElement[bool]]:
    conds = []
    if query.from_ is not None:
        conds.append(m.Session.updated_at >= query.from_)
    if query.to is not None:
        conds.append(m.Session.created_at <= query.to)
    return conds


def _doc_filters(query: SearchQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if query.kinds:
        conds.append(m.SearchDoc.kind.in_(query.kinds))
    if query.author is not None:
        conds.append(m.SearchDoc.author_id == query.author)
    if query.from_ is not None or query.to is not None:
        written: list[ColumnElement[bool]] = [m.SearchDoc.created_at.is_not(None)]
        if query.from_ is not None:
            written.append(m.SearchDoc.created_at >= query.from_)
        if query.to is not None:
            written.append(m.SearchDoc.created_at <= query.to)
        conds.append(
            or_(
                and_(m.SearchDoc.kind.in_(["message", "annotation"]), *written),
                and_(m.SearchDoc.kind.in_(["title", "tag"]), *_active_in(query)),
            )
        )
    # Deleted messages keep their row (a tombstone) with an empty body: nothing to find.
    conds.append(m.SearchDoc.body != "")
    return conds


def search(s: Session, p: Principal, query: SearchQuery, backend: SearchBackend) -> dict[str, Any]:
    """Run ``query`` for ``p``: ``{"query", "items", "next_cursor", "facets", "engine"}``."""
    offset = _offset(query.cursor)
    tq = parse(query.q)
    if query.q.strip() and tq.empty:
        raise InvalidRequest("q has no word to search for (only punctuation or exclusions)")
    if tq.empty:
        items, more, facets = _sessions_only(s, p, query, offset, backend)
    else:
        items, more, facets = _text_search(s, p, query, tq, backend, offset)
    return {
        "query": query.filters(),
        "items": items,
        "next_cursor": str(offset + query.limit) if more else None,
        "facets": facets,
        "engine": backend.name if not tq.empty else "filters",
    }


def _text_search(
    s: Session,
    p: Principal,
    query: SearchQuery,
    tq: TextQuery,
    backend: SearchBackend,
    offset: int,
) -> tuple[list[dict[str, Any]], bool, dict[str, Any]]:
    scope = [
        m.SearchDoc.tenant_id == p.tenant_id,
        *_session_filters(p, query),
        *_doc_filters(query),
    ]
    rank = backend.rank(tq).label("rank")
    stmt: Select[Any] = (
        select(
            m.SearchDoc.kind,
            m.SearchDoc.ref_id,
            m.SearchDoc.author_id,
            m.SearchDoc.created_at,
            m.SearchDoc.session_id,
            m.Session.title,
            m.Session.status,
            m.Message.seq,
            rank,
            backend.snippet(tq).label("snippet"),
        )
        .select_from(m.SearchDoc)
        .join(m.Session, m.Session.id == m.SearchDoc.session_id)
        .outerjoin(
            m.Message,
            and_(
                m.SearchDoc.kind == "message",
                m.Message.id == m.SearchDoc.ref_id,
                m.Message.tenant_id == m.Session.tenant_id,
            ),
        )
    )
    stmt = backend.ranked(stmt, tq).where(*scope)
    stmt = stmt.order_by(rank.desc(), m.SearchDoc.id.desc()).limit(query.limit + 1).offset(offset)
    rows = s.execute(stmt).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    tags = tags_of(s, sorted({r.session_id for r in rows}), p.tenant_id)
    items = [hit_view(r, round(float(r.rank), 6), r.snippet or "", tags) for r in rows]
    matched = (
        select(m.SearchDoc.id, m.SearchDoc.session_id, m.SearchDoc.created_at)
        .join(m.Session, m.Session.id == m.SearchDoc.session_id)
        .where(backend.matches(tq), *scope)
        .subquery()
    )
    facets = _facets(s, matched, backend, p.tenant_id)
    return items, more, facets


def hit_view(r: Any, score: float, snippet: str, tags: dict[str, list[str]]) -> dict[str, Any]:
    """One search hit on the wire, from a row of search documents joined with their session
    (keyword and semantic search answer alike)."""
    return {
        "kind": r.kind,
        "score": score,
        "session": {
            "id": r.session_id,
            "title": r.title,
            "status": r.status,
            "tags": sorted(tags[r.session_id]),
        },
        "message": ({"id": r.ref_id, "seq": r.seq} if r.kind == "message" else None),
        "ref_id": r.ref_id,
        "author": r.author_id,
        "created_at": iso(r.created_at),
        "snippet": snippets.render(snippet),
    }


def _sessions_only(
    s: Session, p: Principal, query: SearchQuery, offset: int, backend: SearchBackend
) -> tuple[list[dict[str, Any]], bool, dict[str, Any]]:
    conds = [*_session_filters(p, query), *_active_in(query)]
    if query.author is not None:
        conds.append(
            m.Session.id.in_(
                select(m.Message.session_id).where(
                    m.Message.tenant_id == p.tenant_id, m.Message.author_id == query.author
                )
            )
        )
    stmt = (
        select(m.Session)
        .where(*conds)
        .order_by(m.Session.updated_at.desc(), m.Session.id.desc())
        .limit(query.limit + 1)
        .offset(offset)
    )
    rows = list(s.scalars(stmt).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    tags = tags_of(s, [r.id for r in rows], p.tenant_id)
    items = [
        {
            "kind": "session",
            "score": None,
            "session": {
                "id": r.id,
                "title": r.title,
                "status": r.status,
                "tags": sorted(tags[r.id]),
            },
            "message": None,
            "ref_id": r.id,
            "author": r.created_by,
            "created_at": iso(r.updated_at),
            "snippet": None,
        }
        for r in rows
    ]
    matched = select(m.Session.id.label("session_id"), m.Session.updated_at.label("created_at"))
    sub = matched.where(*conds).subquery()
    return items, more, _facets(s, sub, backend, p.tenant_id)


def _facets(s: Session, matched: Any, backend: SearchBackend, tenant_id: str) -> dict[str, Any]:
    """Counts of matching sessions per value of each facet, and matches per day.

    ``matched`` is a subquery of the matches with ``session_id`` and ``created_at`` columns.
    """
    sessions = select(matched.c.session_id).distinct().scalar_subquery()

    def top(column: Any, session_column: Any) -> list[dict[str, Any]]:
        tenant_column = column.class_.tenant_id
        stmt = (
            select(column, func.count(distinct(session_column)))
            .where(tenant_column == tenant_id, session_column.in_(sessions))
            .group_by(column)
            .order_by(func.count(distinct(session_column)).desc(), column)
            .limit(FACET_VALUES)
        )
        return [{"value": value, "count": count} for value, count in s.execute(stmt)]

    total = s.scalar(select(func.count()).select_from(matched)) or 0
    first, last = s.execute(
        select(func.min(matched.c.created_at), func.max(matched.c.created_at))
    ).one()
    day = backend.day(matched.c.created_at).label("day")
    days = s.execute(
        select(day, func.count())
        .where(matched.c.created_at.is_not(None))
        .group_by(day)
        .order_by(day.desc())
        .limit(62)
    ).all()
    return {
        "total": total,
        "status": top(m.Session.status, m.Session.id),
        "tag": top(m.SessionTag.tag, m.SessionTag.session_id),
        "participant": top(m.Participant.user_id, m.Participant.session_id),
        "assistant": top(m.Assistant.name, m.Assistant.session_id),
        "model": top(m.Assistant.model, m.Assistant.session_id),
        "date": {
            "from": _iso_any(first),
            "to": _iso_any(last),
            "days": [{"day": d, "count": c} for d, c in days],
        },
    }


def _iso_any(value: Any) -> str | None:
    """min()/max() over a subquery lose the column type on SQLite: parse the stored text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return iso(value)
