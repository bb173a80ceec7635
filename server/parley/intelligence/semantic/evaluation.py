"""Retrieval quality of keyword search (FTS5), TF-IDF and embeddings on one labelled set.

The set (``tests/data/semantic_labelled.jsonl``) has sessions (a title and messages) and
queries with the sessions that answer them. Each method ranks sessions the way Parley does:

* ``keyword``: the FTS5 index with Parley's tokenizer and query translation (every word must
  match), messages and titles as documents, a session ranked by its best document (bm25);
* ``tfidf``: the query's terms against each session's terms, as related sessions compare them;
* ``semantic``: the query's embedding against each message and title, a session ranked by its
  best document, hits under ``search.MIN_SCORE`` dropped, as ``mode=semantic`` does.

Scores: recall@k (the share of a query's relevant sessions in the first k, averaged) and MRR
(one over the rank of the first relevant session, 0 when none is found), over every query and
separately over the queries that share no content word (light stems) with their sessions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parley.intelligence import keywords as kw
from parley.intelligence import text, textquery, tfidf

KS = (1, 3, 5)
Ranker = Callable[[str], list[str]]


def load(path: Path) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """``({session: [title, *messages]}, [{"query", "relevant"}])``."""
    sessions: dict[str, list[str]] = {}
    queries: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "session" in row:
            sessions[row["session"]] = [row["title"], *row["messages"]]
        else:
            queries.append(row)
    return sessions, queries


def keyword_ranker(sessions: dict[str, list[str]]) -> Ranker:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(session UNINDEXED, body,"
        " tokenize='porter unicode61 remove_diacritics 2')"
    )
    db.executemany(
        "INSERT INTO docs(session, body) VALUES (?, ?)",
        [(sid, body) for sid, texts in sessions.items() for body in texts],
    )

    def rank(q: str) -> list[str]:
        tq = textquery.parse(q)
        rows = db.execute(
            "SELECT session FROM docs WHERE docs MATCH ? ORDER BY bm25(docs)",
            (textquery.to_fts5(tq),),
        )
        return list(dict.fromkeys(r[0] for r in rows))

    return rank


def tfidf_ranker(sessions: dict[str, list[str]]) -> Ranker:
    terms = {sid: kw.top_terms(kw.term_counts(texts)) for sid, texts in sessions.items()}

    def rank(q: str) -> list[str]:
        found = tfidf.related(kw.top_terms(kw.term_counts([q])), terms, limit=len(terms))
        return [f["id"] for f in found]

    return rank


def semantic_ranker(sessions: dict[str, list[str]]) -> Ranker:
    """Needs the ``semantic`` extra (imports NumPy and loads the model)."""
    from parley.intelligence.semantic import embedder, vectors
    from parley.intelligence.semantic.search import MIN_SCORE

    model = embedder.default()
    owners = [sid for sid, texts in sessions.items() for _ in texts]
    packed = [
        vectors.pack(v) for v in model.embed([t for texts in sessions.values() for t in texts])
    ]

    def rank(q: str) -> list[str]:
        best = vectors.top(model.embed([q])[0], packed, model.dims, len(packed))
        return list(dict.fromkeys(owners[i] for i, score in best if score >= MIN_SCORE))

    return rank


def _shares_words(q: str, texts: list[str]) -> bool:
    mine = text.stems(text.content_words(q))
    theirs = text.stems(w for t in texts for w in text.content_words(t))
    return bool(mine & theirs)


def scores(rank: Ranker, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall@k and MRR; ``misses`` lists the queries whose first relevant session is not
    first (with what came first), for ``--json``."""
    recall = dict.fromkeys(KS, 0.0)
    rr = 0.0
    misses = []
    for item in queries:
        ranked = rank(item["query"])
        relevant = set(item["relevant"])
        for k in KS:
            recall[k] += len(relevant & set(ranked[:k])) / len(relevant)
        first = next((i for i, sid in enumerate(ranked) if sid in relevant), None)
        rr += 0.0 if first is None else 1.0 / (first + 1)
        if first != 0:
            misses.append({"query": item["query"], "rank": first, "ranked": ranked[:3]})
    n = len(queries) or 1
    out: dict[str, Any] = {f"recall@{k}": round(recall[k] / n, 4) for k in KS}
    out["mrr"] = round(rr / n, 4)
    out["misses"] = misses
    return out


def evaluate(path: Path, *, with_semantic: bool) -> dict[str, Any]:
    """Scores per method, over all queries and over those sharing no word with their
    sessions; ``semantic`` is left out when the extra is not installed."""
    sessions, queries = load(path)
    disjoint = [
        q
        for q in queries
        if not any(_shares_words(q["query"], sessions[sid]) for sid in q["relevant"])
    ]
    rankers: dict[str, Callable[[dict[str, list[str]]], Ranker]] = {
        "keyword": keyword_ranker,
        "tfidf": tfidf_ranker,
    }
    if with_semantic:
        rankers["semantic"] = semantic_ranker
    result: dict[str, Any] = {
        "n": len(queries),
        "n_no_shared_words": len(disjoint),
        "sessions": len(sessions),
    }
    for name, make in rankers.items():
        rank = make(sessions)
        result[name] = {"all": scores(rank, queries), "no_shared_words": scores(rank, disjoint)}
    return result
