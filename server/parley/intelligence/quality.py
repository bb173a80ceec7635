"""The conversation quality score, a number from 0 to 100 that says only what it measures.

    quality = 100 * (0.35 * tone + 0.25 * answered + 0.20 * assistant_ok + 0.20 * engagement)

* tone: the mean VADER compound score of the messages, mapped from [-1, 1] to [0, 1].
* answered: answers / questions (intents), capped at 1; 1 when nobody asked anything.
* assistant_ok: the share of LLM answers that finished normally (finish reason ``stop`` or
  ``tool_calls``, no error); 1 when no assistant answered.
* engagement: the share of sessions in which at least two people (humans or bots) wrote.

Each part is reported beside the score, so a low score points at its cause.
"""

from __future__ import annotations

import math
from typing import Any

WEIGHTS = {"tone": 0.35, "answered": 0.25, "assistant_ok": 0.20, "engagement": 0.20}


def score(
    *,
    mean_sentiment: float,
    questions: int,
    answers: int,
    generations: int,
    generations_ok: int,
    sessions: int,
    conversational_sessions: int,
) -> dict[str, Any]:
    """The score and its parts (each in [0, 1])."""
    parts = {
        "tone": (max(-1.0, min(1.0, mean_sentiment)) + 1.0) / 2.0,
        "answered": min(1.0, answers / questions) if questions else 1.0,
        "assistant_ok": generations_ok / generations if generations else 1.0,
        "engagement": conversational_sessions / sessions if sessions else 0.0,
    }
    total = 100.0 * sum(WEIGHTS[k] * v for k, v in parts.items())
    return {"score": round(total, 1), "parts": {k: round(v, 4) for k, v in parts.items()}}


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by nearest rank, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
    return round(ordered[rank - 1], 3)
