"""PostgreSQL: the generated ``tsvector`` column ``search_docs.tsv`` (english) with a GIN index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, literal_column

from parley.intelligence import snippets
from parley.intelligence.textquery import TextQuery, to_websearch

_TSV: ColumnElement[Any] = literal_column("search_docs.tsv")
_CONFIG: ColumnElement[Any] = literal_column("'english'::regconfig")
_HEADLINE = (
    f"StartSel={snippets.START}, StopSel={snippets.STOP}, MaxWords=30, MinWords=12,"
    ' MaxFragments=2, FragmentDelimiter=" … "'
)


class PostgresBackend:
    name = "postgresql-tsvector"

    def _query(self, q: TextQuery) -> ColumnElement[Any]:
        return func.websearch_to_tsquery(_CONFIG, literal(to_websearch(q)))

    def matches(self, q: TextQuery) -> ColumnElement[bool]:
        return _TSV.op("@@")(self._query(q))

    def ranked(self, stmt: Select[Any], q: TextQuery) -> Select[Any]:
        return stmt.where(self.matches(q))

    def rank(self, q: TextQuery) -> ColumnElement[Any]:
        return func.ts_rank_cd(_TSV, self._query(q))

    def snippet(self, q: TextQuery) -> ColumnElement[Any]:
        body = func.replace(literal_column("search_docs.body"), "<", snippets.LT)
        return func.ts_headline(_CONFIG, body, self._query(q), literal(_HEADLINE))

    def day(self, column: Any) -> ColumnElement[Any]:
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
