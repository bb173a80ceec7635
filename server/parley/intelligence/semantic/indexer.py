"""The analysis worker's embedding step for one session: what changed is embedded in batches,
in a thread, and written with the rest of the analysis (``store``)."""

from __future__ import annotations

from parley.intelligence.analysis import text_hash
from parley.intelligence.semantic import store, vectors
from parley.intelligence.semantic.embedder import Embedder


def compute(data: store.Pending, embedder: Embedder, *, pgvector: bool) -> store.Embedded | None:
    """New vectors for changed texts and the session's mean (blocking: run it in a thread).
    None when nothing changed, so the job writes nothing."""
    keys = data.to_embed()
    new: dict[store.Key, tuple[str, bytes]] = {}
    if keys:
        matrix = embedder.embed([data.texts[k][1] for k in keys])
        for k, row in zip(keys, matrix, strict=True):
            new[k] = (data.texts[k][0], vectors.pack(row))
    members = sorted(data.texts)
    session_hash = text_hash("\n".join(data.texts[k][0] for k in members))
    session_key = ("session", data.session_id)
    session: tuple[str, bytes] | None = None
    if members and data.stored.get(session_key, ("", b""))[0] != session_hash:
        current = {k: new.get(k) or data.stored[k] for k in members}
        mean = vectors.mean([vectors.unpack(current[k][1], embedder.dims) for k in members])
        if mean is not None:
            session = (session_hash, vectors.pack(mean))
    orphan = not members and session_key in data.stored  # every text is gone: drop its mean
    if not new and session is None and not data.stale and not orphan:
        return None
    done = store.Embedded(rows=new, session=session)
    if pgvector:
        written = dict(new)
        if session is not None:
            written[session_key] = session
        done.pg = {
            k: vectors.to_pg(vectors.unpack(vec, embedder.dims)) for k, (_, vec) in written.items()
        }
    return done
