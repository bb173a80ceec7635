"""Reading what analysis found about a session, and deciding on its tag suggestions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import Forbidden, NotFound
from parley.governance.auth import Principal
from parley.governance.policy import Action
from parley.ids import iso, utcnow
from parley.sessions import rules
from parley.sessions.queries import session_access, session_row
from parley.sessions.service import SessionService
from parley.storage import models as m

MAX_MESSAGE_ROWS = 500


def _suggestion(s: Session, p: Principal, session_id: str, tag: str) -> m.TagSuggestion | None:
    return s.scalar(
        select(m.TagSuggestion).where(
            m.TagSuggestion.tenant_id == p.tenant_id,
            m.TagSuggestion.session_id == session_id,
            m.TagSuggestion.tag == tag,
        )
    )


def insights(s: Session, p: Principal, session_id: str) -> dict[str, Any]:
    """Keywords, topics, tag suggestions (with explaining words), sentiment trend and intents."""
    session_row(s, p, session_id)
    row = s.scalar(
        select(m.SessionInsight).where(
            m.SessionInsight.tenant_id == p.tenant_id, m.SessionInsight.session_id == session_id
        )
    )
    pending = (
        s.scalar(
            select(m.AnalysisJob.session_id).where(
                m.AnalysisJob.tenant_id == p.tenant_id, m.AnalysisJob.session_id == session_id
            )
        )
        is not None
    )
    suggestions = s.scalars(
        select(m.TagSuggestion)
        .where(m.TagSuggestion.tenant_id == p.tenant_id, m.TagSuggestion.session_id == session_id)
        .order_by(m.TagSuggestion.score.desc(), m.TagSuggestion.tag)
    ).all()
    messages = s.scalars(
        select(m.MessageInsight)
        .where(m.MessageInsight.tenant_id == p.tenant_id, m.MessageInsight.session_id == session_id)
        .order_by(m.MessageInsight.seq.desc())
        .limit(MAX_MESSAGE_ROWS)
    ).all()
    return {
        "session": session_id,
        "analyzed": row is not None,
        "pending": pending,
        "analyzed_at": iso(row.analyzed_at) if row else None,
        "analyzed_seq": row.analyzed_seq if row else None,
        "keywords": row.keywords if row else [],
        "topics": row.topics if row else [],
        "auto_title": row.auto_title if row else None,
        "suggested_tags": [
            {
                "tag": t.tag,
                "score": t.score,
                "words": t.words,
                "status": t.status,
                "decided_by": t.decided_by,
                "decided_at": iso(t.decided_at),
            }
            for t in suggestions
        ],
        "sentiment": {
            **(row.sentiment if row else {"mean": 0.0, "points": [], "change": 0.0, "messages": 0}),
            "method": "vader",
        },
        "intents": {"counts": row.intents if row else {}, "method": "rules"},
        "messages": [
            {
                "id": r.message_id,
                "seq": r.seq,
                "author": r.author_id,
                "sentiment": r.sentiment,
                "sentiment_label": r.sentiment_label,
                "intent": r.intent,
            }
            for r in reversed(messages)
        ],
    }


async def decide_suggestion(
    service: SessionService, p: Principal, session_id: str, tag: str, accept: bool
) -> dict[str, Any]:
    """Accept (the tag is added to the session) or reject (never suggested again for it)."""
    clean = rules.clean_tags([tag])[0] if tag.strip() else ""

    def check(s: Session) -> list[str]:
        _, access = session_access(s, p, session_id)
        sug = _suggestion(s, p, session_id, clean) if clean else None
        if sug is None:
            raise NotFound(f"no suggestion of tag {tag[:64]!r} for this session")
        access.check(Action.MANAGE, session_id, what="decide on its tags")
        return list(
            s.scalars(
                select(m.SessionTag.tag).where(
                    m.SessionTag.tenant_id == p.tenant_id, m.SessionTag.session_id == session_id
                )
            )
        )

    tags = await service.db.read(check)
    if accept and clean not in tags:
        await service.update_session(p, session_id, tags=[*tags, clean])
    now = utcnow()

    def decide(s: Session) -> dict[str, Any]:
        sug = _suggestion(s, p, session_id, clean)
        if sug is None:
            raise NotFound(f"no suggestion of tag {tag[:64]!r} for this session")
        sug.status = "accepted" if accept else "rejected"
        sug.decided_by, sug.decided_at = p.user_id, now
        return {"tag": sug.tag, "status": sug.status, "words": sug.words, "score": sug.score}

    return await service.db.write(decide)


def tag_rules(s: Session, p: Principal) -> list[dict[str, Any]]:
    """The tenant's decisions on suggestible tags."""
    rows = s.scalars(
        select(m.TagRule).where(m.TagRule.tenant_id == p.tenant_id).order_by(m.TagRule.tag)
    )
    return [
        {
            "tag": r.tag,
            "status": r.status,
            "decided_by": r.decided_by,
            "decided_at": iso(r.decided_at),
        }
        for r in rows
    ]


def decide_rule(s: Session, p: Principal, tag: str, status: str | None) -> dict[str, Any]:
    """Accept (apply wherever suggested), reject (never suggest) or, with None, forget the
    tenant's rule for ``tag``. Tenant administrators only."""
    if not p.is_admin:
        raise Forbidden("only tenant administrators may decide tagging rules")
    clean = rules.clean_tags([tag])[0]
    row = s.get(m.TagRule, (p.tenant_id, clean))
    if status is None:
        if row is None:
            raise NotFound(f"no rule for tag {clean!r}")
        s.delete(row)
        return {"tag": clean, "status": None}
    now = utcnow()
    if row is None:
        row = m.TagRule(
            tenant_id=p.tenant_id, tag=clean, status=status, decided_by=p.user_id, decided_at=now
        )
        s.add(row)
    else:
        row.status, row.decided_by, row.decided_at = status, p.user_id, now
    return {"tag": clean, "status": status, "decided_by": p.user_id, "decided_at": iso(now)}
