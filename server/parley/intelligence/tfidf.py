"""Related sessions by TF-IDF cosine similarity of their stored terms (offline, no model).

Each session is a vector of its terms weighted ``(1 + ln tf) * idf`` with
``idf = ln((1 + N) / (1 + df)) + 1`` over the N sessions compared; similarity is the cosine.
The terms both sessions weigh most explain each match.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any


def _vector(terms: Mapping[str, int], idf: Mapping[str, float]) -> dict[str, float]:
    vec = {t: (1.0 + math.log(c)) * idf[t] for t, c in terms.items() if c > 0}
    norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
    return {t: v / norm for t, v in vec.items()}


def related(
    target: Mapping[str, int],
    others: Mapping[str, Mapping[str, int]],
    *,
    limit: int = 10,
    min_score: float = 0.05,
) -> list[dict[str, Any]]:
    """The sessions of ``others`` most similar to ``target``: ``{id, score, shared_terms}``."""
    if not target:
        return []
    df: Counter[str] = Counter(target.keys())
    for terms in others.values():
        df.update(terms.keys())
    n = len(others) + 1
    idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
    tv = _vector(target, idf)
    out: list[dict[str, Any]] = []
    for sid, terms in others.items():
        ov = _vector(terms, idf)
        shared = {t: tv[t] * ov[t] for t in tv.keys() & ov.keys()}
        score = sum(shared.values())
        if score >= min_score:
            top = sorted(shared, key=lambda t: (-shared[t], t))[:5]
            out.append({"id": sid, "score": round(score, 4), "shared_terms": top})
    out.sort(key=lambda r: (-r["score"], r["id"]))
    return out[:limit]


def shared(a: Mapping[str, int], b: Mapping[str, int], top: int = 5) -> list[str]:
    """The terms two sessions share, most used first (explains a match found another way)."""
    both = a.keys() & b.keys()
    return sorted(both, key=lambda t: (-min(a[t], b[t]), t))[:top]
