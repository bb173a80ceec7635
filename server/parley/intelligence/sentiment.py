"""Sentiment of a message: VADER (a lexicon and rules tuned for social text, emoji included),
whose lexicon ships inside the ``vadersentiment`` package, so nothing is downloaded.

A message is positive when VADER's compound score is at least +0.05, negative at most -0.05,
neutral between (the thresholds VADER's authors recommend). The accuracy on
``tests/data/sentiment_labelled.jsonl`` is in docs/intelligence.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

Label = Literal["positive", "negative", "neutral"]
THRESHOLD = 0.05


@dataclass(frozen=True, slots=True)
class Sentiment:
    compound: float  # -1 (most negative) .. +1 (most positive)
    label: Label


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads its lexicon files once (about 0.1 s)


def score(text: str) -> Sentiment:
    """The sentiment of ``text`` (empty text is neutral)."""
    if not text.strip():
        return Sentiment(0.0, "neutral")
    compound = float(_analyzer().polarity_scores(text[:5000])["compound"])
    label: Label = (
        "positive" if compound >= THRESHOLD else "negative" if compound <= -THRESHOLD else "neutral"
    )
    return Sentiment(round(compound, 4), label)


def trend(compounds: list[float], buckets: int = 10) -> dict[str, Any]:
    """A session's sentiment over time: the mean compound score of consecutive slices of its
    messages (at most ``buckets``), the overall mean, and the change from first to last slice."""
    if not compounds:
        return {"mean": 0.0, "points": [], "change": 0.0, "messages": 0}
    n = len(compounds)
    k = min(buckets, n)
    points = []
    for i in range(k):
        part = compounds[i * n // k : (i + 1) * n // k]
        points.append(round(sum(part) / len(part), 4))
    return {
        "mean": round(sum(compounds) / n, 4),
        "points": points,
        "change": round(points[-1] - points[0], 4),
        "messages": n,
    }
