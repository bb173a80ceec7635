"""Extractive summaries and automatic titles, offline.

Summary: every sentence of the messages is scored by the session weight of its content words
(term frequency in the session, so sentences about what the conversation is about win),
divided by the square root of its length so long sentences do not win by size; decisions and
action items get a bonus (they are what readers look for). The best sentences, at most
``limit``, are shown in the order they were written, each with its author.

Title: the first human question or request when it is short enough to read as one, otherwise
the top keywords.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parley.intelligence.text import content_words, sentences

MAX_TITLE = 80


@dataclass(frozen=True, slots=True)
class Line:
    """One message as the summarizer sees it."""

    author: str
    text: str
    intent: str = "statement"


def extractive(lines: Sequence[Line], limit: int = 5) -> str:
    """A summary of ``lines`` as bullet points ("- author: sentence"): about a third of the
    sentences, at least two and at most ``limit``."""
    weights: Counter[str] = Counter()
    for line in lines:
        weights.update(content_words(line.text))
    if not weights:
        return ""
    top = max(weights.values())
    candidates: list[tuple[float, int, str, str]] = []
    order = 0
    for line in lines:
        for sentence in sentences(line.text):
            ws = content_words(sentence)
            if not ws:
                continue
            score = sum(weights[w] / top for w in set(ws)) / math.sqrt(len(ws))
            if line.intent in ("decision", "action_item"):
                score *= 1.5
            candidates.append((score, order, line.author, sentence))
            order += 1
    keep = max(2, min(limit, math.ceil(len(candidates) / 3)))
    best = sorted(candidates, key=lambda c: (-c[0], c[1]))[:keep]
    best.sort(key=lambda c: c[1])
    return "\n".join(f"- {author}: {_clip(sentence, 300)}" for _, _, author, sentence in best)


def title(lines: Sequence[Line], keywords: Sequence[dict[str, Any]]) -> str | None:
    """A title for a session that has none, or None when there is nothing to go on."""
    for line in lines[:3]:
        text = " ".join(line.text.split())
        if line.intent in ("question", "request") and 8 <= len(text) <= MAX_TITLE:
            return text
    terms = [k["term"] for k in keywords[:3]]
    if not terms:
        return None
    text = ", ".join(terms)
    return _clip(text[0].upper() + text[1:], MAX_TITLE)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
