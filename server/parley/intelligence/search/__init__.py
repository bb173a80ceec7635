"""Full-text search over messages, titles, tags and annotations (one engine per database)."""

from parley.intelligence.search.base import SearchBackend
from parley.intelligence.search.engine import search
from parley.intelligence.search.postgres import PostgresBackend
from parley.intelligence.search.query import SearchQuery
from parley.intelligence.search.sqlite import SqliteBackend

__all__ = [
    "PostgresBackend",
    "SearchBackend",
    "SearchQuery",
    "SqliteBackend",
    "backend_for",
    "search",
]


def backend_for(is_sqlite: bool) -> SearchBackend:
    """The search backend of the database in use."""
    return SqliteBackend() if is_sqlite else PostgresBackend()
