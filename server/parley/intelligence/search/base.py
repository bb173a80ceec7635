"""The interface each database's full-text engine implements.

Contract: ``matches`` is a condition on ``search_docs`` rows that holds for every row whose
``body`` matches every required word or phrase (stemmed, case- and accent-insensitive) and none
of the excluded ones; ``rank`` orders matches best first when sorted *descending*; ``snippet``
is an excerpt of ``body`` with each match between ``snippets.START`` and ``snippets.STOP``.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select

from parley.intelligence.textquery import TextQuery


class SearchBackend(Protocol):
    name: str

    def matches(self, q: TextQuery) -> ColumnElement[bool]:
        """Rows whose body matches ``q`` (``q`` is never empty)."""
        ...

    def ranked(self, stmt: Select[Any], q: TextQuery) -> Select[Any]:
        """``stmt`` (a select from ``search_docs``) restricted to matches of ``q``, in a form
        where ``rank`` and ``snippet`` may be selected."""
        ...

    def rank(self, q: TextQuery) -> ColumnElement[Any]:
        """Relevance of a matching row; higher is better."""
        ...

    def snippet(self, q: TextQuery) -> ColumnElement[Any]:
        """A marked excerpt of a matching row's body."""
        ...

    def day(self, column: Any) -> ColumnElement[Any]:
        """The UTC calendar day (``YYYY-MM-DD``) of a timestamp column."""
        ...
