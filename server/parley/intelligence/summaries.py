"""Summaries of sessions: stored with what produced them, regenerated on request, and
"since I was last here" per user (from the position the user last marked as seen)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.errors import InvalidRequest
from parley.governance.auth import Principal
from parley.ids import iso, new_id, utcnow
from parley.intelligence import intent as intents
from parley.intelligence import summary
from parley.intelligence.llm import Llm
from parley.sessions.queries import session_row
from parley.storage import models as m
from parley.storage.database import Database

MAX_SUMMARY_MESSAGES = 500
MAX_PROMPT_CHARS = 12_000
SYSTEM = (
    "You summarize a team conversation for someone who was not there. Answer with at most five"
    " short bullet points starting with '- ': decisions, open questions, action items with their"
    " owners, in that order of importance. Use only what the conversation says."
)


def _view(row: m.SessionSummary, messages: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "from_seq": row.from_seq,
        "to_seq": row.to_seq,
        "text": row.text,
        "method": row.method,
        "model": row.model,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
    }
    if messages is not None:
        out["messages"] = messages
    return out


def _read_row(s: Session, p: Principal, session_id: str) -> m.SessionRead | None:
    """Where ``p`` last was in the session (the session's tenant was checked by the caller)."""
    return s.scalar(
        select(m.SessionRead).where(
            m.SessionRead.tenant_id == p.tenant_id,
            m.SessionRead.session_id == session_id,
            m.SessionRead.user_id == p.user_id,
        )
    )


def _lines(
    s: Session, tenant_id: str, session_id: str, after: int
) -> list[tuple[int, summary.Line]]:
    rows = s.execute(
        select(m.Message.seq, m.Message.author_id, m.Message.text)
        .where(
            m.Message.tenant_id == tenant_id,
            m.Message.session_id == session_id,
            m.Message.seq > after,
            m.Message.deleted_at.is_(None),
        )
        .order_by(m.Message.seq.desc())
        .limit(MAX_SUMMARY_MESSAGES)
    ).all()
    return [(seq, summary.Line(a, t, intents.classify(t))) for seq, a, t in reversed(rows)]


class Summaries:
    def __init__(self, db: Database, llm: Llm) -> None:
        self.db = db
        self.llm = llm

    async def since_position(self, p: Principal, session_id: str, since: str | None) -> int:
        """``since``: None (the whole session), ``last_seen`` or a seq."""
        if since is None:
            await self.db.read(lambda s: session_row(s, p, session_id))
            return 0
        if since == "last_seen":

            def seen(s: Session) -> int:
                session_row(s, p, session_id)
                row = _read_row(s, p, session_id)
                return row.last_seen_seq if row else 0

            return await self.db.read(seen)
        if not since.isdigit() or len(since) > 15:
            raise InvalidRequest("since must be last_seen or a seq")
        await self.db.read(lambda s: session_row(s, p, session_id))
        return int(since)

    async def get(self, p: Principal, session_id: str, since: str | None) -> dict[str, Any]:
        """The newest stored summary of the whole session, or (with ``since``) an extractive
        summary of what came after that position, computed now."""
        after = await self.since_position(p, session_id, since)

        def work(s: Session) -> dict[str, Any]:
            session_row(s, p, session_id)
            lines = _lines(s, p.tenant_id, session_id, after)
            last = lines[-1][0] if lines else after
            if after == 0:
                stored = s.scalar(
                    select(m.SessionSummary)
                    .where(
                        m.SessionSummary.tenant_id == p.tenant_id,
                        m.SessionSummary.session_id == session_id,
                        m.SessionSummary.from_seq == 0,
                    )
                    .order_by(m.SessionSummary.to_seq.desc(), m.SessionSummary.created_at.desc())
                    .limit(1)
                )
                if stored is not None and stored.to_seq >= last:
                    return {**_view(stored, len(lines)), "stored": True, "since": since}
            text = summary.extractive([line for _, line in lines])
            return {
                "id": None,
                "from_seq": after,
                "to_seq": last,
                "text": text,
                "method": "extractive",
                "model": None,
                "created_by": None,
                "created_at": iso(utcnow()),
                "messages": len(lines),
                "stored": False,
                "since": since,
            }

        return await self.db.read(work)

    async def regenerate(self, p: Principal, session_id: str, since: str | None) -> dict[str, Any]:
        """Summarize now, with the LLM when one is configured (else extractively), and store it."""
        after = await self.since_position(p, session_id, since)
        lines = await self.db.read(
            lambda s: (session_row(s, p, session_id), _lines(s, p.tenant_id, session_id, after))[1]
        )
        last = lines[-1][0] if lines else after
        text, method, model = None, "extractive", None
        if lines and self.llm.configured:
            transcript = "\n".join(f"{line.author}: {line.text}" for _, line in lines)
            text = await self.llm.complete(p.tenant_id, SYSTEM, transcript[-MAX_PROMPT_CHARS:])
            if text is not None:
                method, model = "llm", self.llm.label
        if text is None:
            text = summary.extractive([line for _, line in lines])
        now = utcnow()

        def store(s: Session) -> dict[str, Any]:
            session_row(s, p, session_id)
            row = m.SessionSummary(
                id=new_id(),
                tenant_id=p.tenant_id,
                session_id=session_id,
                from_seq=after,
                to_seq=last,
                text=text,
                method=method,
                model=model,
                created_by=p.user_id,
                created_at=now,
            )
            s.add(row)
            return {**_view(row, len(lines)), "stored": True, "since": since}

        return await self.db.write(store)

    async def mark_seen(self, p: Principal, session_id: str, seq: int | None) -> dict[str, Any]:
        """Remember that ``p`` has seen the session up to ``seq`` (default: its newest)."""
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            row = session_row(s, p, session_id)
            upto = row.last_seq if seq is None else min(seq, row.last_seq)
            read = _read_row(s, p, session_id)
            if read is None:
                s.add(
                    m.SessionRead(
                        session_id=session_id,
                        user_id=p.user_id,
                        tenant_id=p.tenant_id,
                        last_seen_seq=upto,
                        seen_at=now,
                    )
                )
            else:
                read.last_seen_seq, read.seen_at = upto, now
            return {"session": session_id, "last_seen_seq": upto, "seen_at": iso(now)}

        return await self.db.write(work)
