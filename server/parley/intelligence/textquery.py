"""The text of a search box as terms, phrases and exclusions, rendered safely for each engine.

Users type ``budget "q3 plan" -draft``; nothing they type reaches the engine's own query syntax
unquoted, so no input can make a query fail or mean something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_TERMS = 32
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class TextQuery:
    """Words that must all match (a phrase's words in order), and words that must not."""

    required: list[list[str]] = field(default_factory=list)  # each item: a word or a phrase
    excluded: list[list[str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.required

    def words(self) -> list[str]:
        """Every required word, in order (for explaining and for highlighting)."""
        return [w for group in self.required for w in group]


def parse(text: str) -> TextQuery:
    """Split ``text`` into required and excluded words and phrases (punctuation dropped)."""
    required: list[list[str]] = []
    excluded: list[list[str]] = []
    count = 0
    for match in _TOKEN.finditer(text):
        neg = bool(match.group(1) or match.group(3))
        raw = match.group(2) if match.group(2) is not None else match.group(4)
        words = [w.lower() for w in _WORD.findall(raw or "")]
        if not words:
            continue
        if match.group(2) is None and len(words) > 1:
            # "e-mail" or "node.js": one token of several words is searched as a phrase.
            groups = [words]
        else:
            groups = [words] if match.group(2) is not None else [[w] for w in words]
        for group in groups:
            count += len(group)
            if count > MAX_TERMS:
                break
            (excluded if neg else required).append(group)
    return TextQuery(required, excluded)


def _fts5_group(words: list[str]) -> str:
    return '"' + " ".join(w.replace('"', '""') for w in words) + '"'


def to_fts5(q: TextQuery) -> str:
    """An FTS5 MATCH expression: every word quoted, so none is read as an operator."""
    expr = " AND ".join(_fts5_group(g) for g in q.required)
    for group in q.excluded:
        expr = f"({expr}) NOT {_fts5_group(group)}"
    return expr


def to_websearch(q: TextQuery) -> str:
    """Input for PostgreSQL's ``websearch_to_tsquery``: words only, phrases quoted."""
    parts = [f'"{" ".join(g)}"' if len(g) > 1 else g[0] for g in q.required]
    parts += [f'-"{" ".join(g)}"' if len(g) > 1 else f"-{g[0]}" for g in q.excluded]
    return " ".join(parts)
