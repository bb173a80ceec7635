"""What the analysis worker embeds for a session, and the ``embeddings`` rows it keeps.

The texts come from the search index (``search_docs``), not from ``messages``: a message is
embedded exactly when its text is searchable by keywords. Text sealed by encryption at rest is
indexed as empty, and so is a deleted message; neither gets a vector, and a vector whose text
became empty is dropped. A session's own vector (kind ``session``) is the normalized mean of its
title's and messages' vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.orm import Session

from parley.ids import utcnow
from parley.intelligence.analysis import text_hash
from parley.storage import models as m

E = m.Embedding
D = m.SearchDoc
KINDS = ("message", "title")
MAX_TEXTS = 2000  # the newest texts of a session that are embedded (as the analysis reads)

Key = tuple[str, str]  # (kind, ref_id)


@dataclass(slots=True)
class Pending:
    """A session's texts and what is already stored for them."""

    session_id: str
    tenant_id: str
    model: str
    texts: dict[Key, tuple[str, str]]  # key -> (text hash, text)
    stored: dict[Key, tuple[str, bytes]]  # key -> (text hash, vector), this model
    stale: list[Key] = field(default_factory=list)  # stored for text that is gone or changed

    def to_embed(self) -> list[Key]:
        return [k for k, (h, _) in self.texts.items() if self.stored.get(k, ("", b""))[0] != h]


@dataclass(slots=True)
class Embedded:
    rows: dict[Key, tuple[str, bytes]]  # new vectors: key -> (text hash, vector)
    session: tuple[str, bytes] | None  # the session's mean vector: (hash of hashes, vector)
    pg: dict[Key, str] = field(default_factory=dict)  # pgvector text of every written row


def load(s: Session, tenant_id: str, session_id: str, model: str) -> Pending:
    """The session's searchable messages and title, and the vectors stored for them."""
    docs = s.execute(
        select(D.kind, D.ref_id, D.body)
        .where(
            D.tenant_id == tenant_id,
            D.session_id == session_id,
            D.kind.in_(KINDS),
            D.body != "",
        )
        .order_by(D.id.desc())
        .limit(MAX_TEXTS)
    ).all()
    texts = {(k, r): (text_hash(b), b) for k, r, b in docs}
    stored: dict[Key, tuple[str, bytes]] = {}
    stale: list[Key] = []
    for kind, ref, h, vec, mdl in s.execute(
        select(E.kind, E.ref_id, E.text_hash, E.vector, E.model).where(
            E.tenant_id == tenant_id, E.session_id == session_id
        )
    ):
        if mdl != model:
            stale.append((kind, ref))
        elif kind == "session" or (kind, ref) in texts:
            stored[(kind, ref)] = (h, vec)
        else:
            stale.append((kind, ref))
    return Pending(session_id, tenant_id, model, texts, stored, stale)


def save(s: Session, data: Pending, done: Embedded, *, dims: int, pgvector: bool) -> None:
    """Replace the session's changed and stale rows (inside the analysis job's write)."""
    keys = [*data.stale, *done.rows]
    rows = dict(done.rows)
    if done.session is not None:
        keys.append(("session", data.session_id))
        rows[("session", data.session_id)] = done.session
    elif data.stored.get(("session", data.session_id)) is not None and not data.texts:
        keys.append(("session", data.session_id))
    if keys:
        s.execute(
            delete(E).where(
                E.tenant_id == data.tenant_id,
                E.session_id == data.session_id,
                tuple_(E.kind, E.ref_id).in_(keys),
            )
        )
    now = utcnow()
    for (kind, ref), (h, vec) in rows.items():
        s.add(
            E(
                session_id=data.session_id,
                kind=kind,
                ref_id=ref,
                tenant_id=data.tenant_id,
                model=data.model,
                dims=dims,
                vector=vec,
                text_hash=h,
                embedded_at=now,
            )
        )
    if pgvector and rows:
        s.flush()
        for (kind, ref), value in done.pg.items():
            s.execute(
                text(
                    "UPDATE embeddings SET pgv = CAST(:v AS vector) WHERE tenant_id = :t"
                    " AND session_id = :s AND kind = :k AND ref_id = :r"
                ),
                {"v": value, "t": data.tenant_id, "s": data.session_id, "k": kind, "r": ref},
            )
