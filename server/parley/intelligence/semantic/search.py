"""Semantic search over messages and titles, and related sessions by their mean vectors; both
within the caller's read scope (``readable_sessions_filter``) and the query's filters.

Ranking is exact on both engines: NumPy over every candidate vector (``numpy``), or pgvector's
cosine distance inside PostgreSQL (``pgvector``; no approximate index, since the read scope and
filters would have to be applied after an approximate search and could drop matches).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, cast, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from parley.governance.auth import Principal
from parley.intelligence.search.base import SearchBackend
from parley.intelligence.search.engine import (
    _doc_filters,
    _facets,
    _offset,
    _session_filters,
    hit_view,
)
from parley.intelligence.search.query import SearchQuery
from parley.intelligence.semantic import store, vectors
from parley.intelligence.semantic.service import PGVECTOR
from parley.sessions.queries import readable_sessions_filter, tags_of
from parley.storage import models as m

E = m.Embedding
D = m.SearchDoc
# Cosines under this are not hits. On tests/data/semantic_labelled.jsonl, a query's best text
# in an unrelated session scores 0.12 in the median (7% reach 0.25), in a relevant one 0.57
# (90% reach 0.35).
MIN_SCORE = 0.25
MAX_HITS = 1000  # hits ranked per query (paging and facets cover these)
MAX_CANDIDATES = 50_000  # vectors read per query by the brute-force engine, newest first
# Mean vectors of two unrelated sessions of that set: 0.16 in the median.
RELATED_MIN_SCORE = 0.3
SNIPPET_CHARS = 240


class _PgVector(UserDefinedType[str]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"


def _candidates(p: Principal, query: SearchQuery, model: str) -> list[Any]:
    return [
        E.tenant_id == p.tenant_id,
        E.model == model,
        E.kind.in_(store.KINDS),
        *_session_filters(p, query),
        *_doc_filters(query),
    ]


def _joined(*columns: Any) -> Any:
    return (
        select(*columns)
        .select_from(E)
        .join(
            D,
            and_(
                D.tenant_id == E.tenant_id,
                D.session_id == E.session_id,
                D.kind == E.kind,
                D.ref_id == E.ref_id,
            ),
        )
        .join(m.Session, and_(m.Session.id == E.session_id, m.Session.tenant_id == E.tenant_id))
    )


def _hits(
    s: Session,
    p: Principal,
    query: SearchQuery,
    qvec: vectors.Vector,
    *,
    model: str,
    dims: int,
    engine: str,
) -> list[tuple[int, float]]:
    """``(search_docs.id, cosine)`` of the best hits, best first."""
    conds = _candidates(p, query, model)
    if engine == PGVECTOR:
        distance = literal_column("embeddings.pgv").op("<=>")(
            cast(bindparam("qvec", vectors.to_pg(qvec)), _PgVector())
        )
        rows = s.execute(
            _joined(D.id, distance.label("distance"))
            .where(*conds, distance <= 1.0 - MIN_SCORE)
            .order_by(distance, D.id)
            .limit(MAX_HITS)
        ).all()
        return [(r.id, round(1.0 - float(r.distance), 6)) for r in rows]
    rows = s.execute(
        _joined(D.id, E.vector).where(*conds).order_by(D.id.desc()).limit(MAX_CANDIDATES)
    ).all()
    best = vectors.top(qvec, [r.vector for r in rows], dims, MAX_HITS)
    return [(rows[i].id, round(score, 6)) for i, score in best if score >= MIN_SCORE]


def semantic_search(
    s: Session,
    p: Principal,
    query: SearchQuery,
    qvec: vectors.Vector,
    backend: SearchBackend,
    *,
    model: str,
    dims: int,
    engine: str,
) -> dict[str, Any]:
    """Like ``search.search``, ranked by meaning: hits are messages and titles whose cosine
    with the query is at least ``MIN_SCORE``; snippets are the start of the text."""
    offset = _offset(query.cursor)
    hits = _hits(s, p, query, qvec, model=model, dims=dims, engine=engine)
    page = hits[offset : offset + query.limit]
    ids = [doc_id for doc_id, _ in page]
    rows = {
        r.id: r
        for r in s.execute(
            select(
                D.id,
                D.kind,
                D.ref_id,
                D.author_id,
                D.created_at,
                D.session_id,
                D.body,
                m.Session.title,
                m.Session.status,
                m.Message.seq,
            )
            .join(m.Session, and_(m.Session.id == D.session_id, m.Session.tenant_id == D.tenant_id))
            .outerjoin(
                m.Message,
                and_(
                    D.kind == "message",
                    m.Message.id == D.ref_id,
                    m.Message.tenant_id == D.tenant_id,
                ),
            )
            .where(D.tenant_id == p.tenant_id, D.id.in_(ids))
        )
    }
    tags = tags_of(s, sorted({r.session_id for r in rows.values()}), p.tenant_id)
    items = [
        hit_view(r, score, _excerpt(r.body), tags)
        for doc_id, score in page
        if (r := rows.get(doc_id)) is not None
    ]
    matched = (
        select(D.id, D.session_id, D.created_at)
        .where(D.tenant_id == p.tenant_id, D.id.in_([doc_id for doc_id, _ in hits]))
        .subquery()
    )
    return {
        "query": query.filters(),
        "items": items,
        "next_cursor": str(offset + query.limit) if len(hits) > offset + query.limit else None,
        "facets": _facets(s, matched, backend, p.tenant_id),
        "engine": f"semantic-{engine}",
    }


def _excerpt(body: str) -> str:
    if len(body) <= SNIPPET_CHARS:
        return body
    cut = body[:SNIPPET_CHARS].rsplit(" ", 1)[0] or body[:SNIPPET_CHARS]
    return cut + " …"


def related(
    s: Session, p: Principal, session_id: str, limit: int, *, model: str, dims: int
) -> list[dict[str, Any]] | None:
    """``[{id, score}]`` of the readable sessions nearest to ``session_id``'s mean vector;
    None when that session has no vector yet (the caller falls back to TF-IDF)."""
    target = s.scalar(
        select(E.vector).where(
            E.tenant_id == p.tenant_id,
            E.session_id == session_id,
            E.kind == "session",
            E.model == model,
        )
    )
    if target is None:
        return None
    rows = s.execute(
        select(E.session_id, E.vector)
        .join(m.Session, and_(m.Session.id == E.session_id, m.Session.tenant_id == E.tenant_id))
        .where(
            E.tenant_id == p.tenant_id,
            E.kind == "session",
            E.model == model,
            E.session_id != session_id,
            readable_sessions_filter(p),
        )
        .order_by(E.embedded_at.desc())
        .limit(MAX_CANDIDATES)
    ).all()
    best = vectors.top(vectors.unpack(target, dims), [r.vector for r in rows], dims, limit)
    return [
        {"id": rows[i].session_id, "score": round(score, 4)}
        for i, score in best
        if score >= RELATED_MIN_SCORE
    ]
