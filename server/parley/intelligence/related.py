"""Sessions related to a session, among those the caller may read: TF-IDF over the terms the
analysis stored (``tfidf``); with the ``semantic`` extra installed and vectors stored, by
embedding similarity instead (``semantic``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.governance.auth import Principal
from parley.intelligence import keywords as kw
from parley.intelligence import tfidf
from parley.sessions.queries import readable_sessions_filter, session_row, tags_of
from parley.storage import models as m

MAX_CANDIDATES = 5000


def related_sessions(
    s: Session,
    p: Principal,
    session_id: str,
    limit: int,
    semantic: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """``{"session", "method", "items": [{"session", "score", "shared_terms"}]}``.

    With ``semantic`` (the model's name and dimensions: the extra is installed and on), the
    sessions nearest by their mean embedding, if this session has one yet; TF-IDF otherwise.
    ``method`` says which ranked the items."""
    session_row(s, p, session_id)
    found: list[dict[str, Any]] | None = None
    if semantic is not None:
        from parley.intelligence.semantic import search as semantic_search

        found = semantic_search.related(
            s, p, session_id, limit, model=semantic[0], dims=semantic[1]
        )
    method = "tfidf" if found is None else "semantic"
    insight = s.scalar(
        select(m.SessionInsight).where(
            m.SessionInsight.tenant_id == p.tenant_id, m.SessionInsight.session_id == session_id
        )
    )
    if insight is not None:
        target: dict[str, int] = insight.terms
    else:  # not analysed yet: its terms, counted now
        texts = s.scalars(
            select(m.Message.text)
            .where(
                m.Message.tenant_id == p.tenant_id,
                m.Message.session_id == session_id,
                m.Message.deleted_at.is_(None),
            )
            .order_by(m.Message.seq.desc())
            .limit(2000)
        )
        target = kw.top_terms(kw.term_counts(texts))
    candidates = select(m.SessionInsight.session_id, m.SessionInsight.terms)
    if found is not None:  # only the terms that explain the matches
        candidates = candidates.where(m.SessionInsight.session_id.in_([f["id"] for f in found]))
    rows = s.execute(
        candidates.join(
            m.Session,
            (m.Session.id == m.SessionInsight.session_id)
            & (m.Session.tenant_id == m.SessionInsight.tenant_id),
        )
        .where(readable_sessions_filter(p), m.SessionInsight.session_id != session_id)
        .order_by(m.SessionInsight.analyzed_at.desc())
        .limit(MAX_CANDIDATES)
    ).all()
    terms: dict[str, dict[str, int]] = {r[0]: r[1] for r in rows}
    if found is None:
        found = tfidf.related(target, terms, limit=limit)
    else:
        for f in found:
            f["shared_terms"] = tfidf.shared(target, terms.get(f["id"], {}))
    ids = [f["id"] for f in found]
    sessions = {
        r.id: r
        for r in s.scalars(
            select(m.Session).where(m.Session.tenant_id == p.tenant_id, m.Session.id.in_(ids))
        )
    }
    tags = tags_of(s, ids, p.tenant_id)
    return {
        "session": session_id,
        "method": method,
        "items": [
            {
                "session": {
                    "id": f["id"],
                    "title": sessions[f["id"]].title,
                    "status": sessions[f["id"]].status,
                    "tags": sorted(tags[f["id"]]),
                },
                "score": f["score"],
                "shared_terms": f["shared_terms"],
            }
            for f in found
        ],
    }
