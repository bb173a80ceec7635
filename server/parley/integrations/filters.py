"""Which events a webhook or a feed subscriber wants (no I/O).

Event type patterns are exact names (``message.created``), a family (``message.*``) or
everything (``*``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from parley.errors import InvalidRequest

_PATTERN = re.compile(r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)*(\.\*)?)$")
MAX_PATTERNS = 50


def check_patterns(patterns: Sequence[str], field: str = "events") -> list[str]:
    """Validated, de-duplicated event type patterns; an empty list is refused."""
    if not patterns:
        raise InvalidRequest(f"{field} needs at least one event type or '*'")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequest(f"{field} may name at most {MAX_PATTERNS} event types")
    out: list[str] = []
    for p in patterns:
        if not isinstance(p, str) or len(p) > 64 or not _PATTERN.match(p):
            raise InvalidRequest(
                f"{field}: {str(p)[:70]!r} is not an event type, a family like 'message.*' or '*'"
            )
        if p not in out:
            out.append(p)
    return out


def type_matches(patterns: Iterable[str], name: str) -> bool:
    for p in patterns:
        if p == "*" or p == name or (p.endswith(".*") and name.startswith(p[:-1])):
            return True
    return False


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """A live feed subscriber's filter: every given dimension must match (empty = any)."""

    types: tuple[str, ...] = ()
    sessions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def matches(self, name: str, session_id: str, session_tags: Iterable[str]) -> bool:
        if self.types and not type_matches(self.types, name):
            return False
        if self.sessions and session_id not in self.sessions:
            return False
        return not self.tags or not self.tags.isdisjoint(session_tags)
