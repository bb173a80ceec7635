"""SQLite: the FTS5 table ``search_fts`` (porter stemming, unicode61) over ``search_docs``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, literal_column, table, text

from parley.intelligence import snippets
from parley.intelligence.textquery import TextQuery, to_fts5
from parley.storage import models as m

_FTS: ColumnElement[Any] = literal_column("search_fts")
_FTS_TABLE = table("search_fts", column("rowid"))


class SqliteBackend:
    name = "sqlite-fts5"

    def matches(self, q: TextQuery) -> ColumnElement[bool]:
        # The FTS table joins by rowid; MATCH in a subquery keeps the join order obvious.
        return m.SearchDoc.id.in_(
            text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts").bindparams(
                fts=to_fts5(q)
            )
        )

    def ranked(self, stmt: Select[Any], q: TextQuery) -> Select[Any]:
        # bm25() and snippet() need the FTS table and its MATCH in the same query.
        return stmt.join(_FTS_TABLE, _FTS_TABLE.c.rowid == m.SearchDoc.id).where(
            text("search_fts MATCH :fts").bindparams(fts=to_fts5(q))
        )

    def rank(self, q: TextQuery) -> ColumnElement[Any]:
        # Smaller bm25 is better, so negate it.
        return -func.bm25(_FTS)

    def snippet(self, q: TextQuery) -> ColumnElement[Any]:
        return func.snippet(_FTS, 0, snippets.START, snippets.STOP, "…", 24)

    def day(self, column: Any) -> ColumnElement[Any]:
        return func.substr(column, 1, 10)
