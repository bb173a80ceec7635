"""An extractive summary with no model: the sentences that best cover the conversation's
frequent words, in their original order (no I/O)."""

from __future__ import annotations

import math
import re
from collections import Counter

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_STOP_WORDS = """
the and for are but not you all any can had her was one our out has have been were this that
with from they will would there their what when which about into than then them these some
could just like also very your more only over such
"""
STOP = frozenset(_STOP_WORDS.split())


def summarize(texts: list[str], *, sentences: int = 3, max_chars: int = 1200) -> str:
    """Up to ``sentences`` sentences of ``texts`` that carry the most frequent words."""
    candidates = [s.strip() for t in texts for s in _SENTENCE.split(t) if len(s.strip()) > 3]
    if not candidates:
        return ""
    freq = Counter(w for s in candidates for w in _words(s))

    def score(sentence: str) -> float:
        words = _words(sentence)
        total: int = sum(freq[w] for w in set(words))
        return total / (1.0 + math.sqrt(len(words)))

    best = sorted(range(len(candidates)), key=lambda i: (-score(candidates[i]), i))[:sentences]
    text = " ".join(candidates[i] for i in sorted(best))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _words(sentence: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(sentence)) if w not in STOP]
