"""Snippets with highlights the browser can show without trusting the text.

The engines mark matches with two private-use characters (which the index strips from every
text it stores, so only the engine can produce them). This module turns a marked excerpt into
the plain text, the offsets of each highlight, and HTML where the text is escaped and only
``<mark>`` elements are added.
"""

from __future__ import annotations

import html
from typing import Any

START = "\ue000"
STOP = "\ue001"
LT = "\ue002"  # PostgreSQL: "<" while the text goes through the parser (see migration 0009)


def render(marked: str) -> dict[str, Any]:
    """``{"text", "highlights": [[start, end], ...], "html"}`` for an excerpt marked by the
    engine (offsets in characters of ``text``)."""
    plain: list[str] = []
    out_html: list[str] = []
    highlights: list[list[int]] = []
    pos = 0
    start: int | None = None
    marked = marked.replace(LT, "<")
    i = 0
    while i < len(marked):
        j = i
        while j < len(marked) and marked[j] not in (START, STOP):
            j += 1
        chunk = marked[i:j]
        plain.append(chunk)
        out_html.append(html.escape(chunk, quote=True))
        pos += len(chunk)
        if j < len(marked):
            if marked[j] == START and start is None:
                start = pos
                out_html.append("<mark>")
            elif marked[j] == STOP and start is not None:
                if pos > start:
                    highlights.append([start, pos])
                start = None
                out_html.append("</mark>")
        i = j + 1
    if start is not None:
        out_html.append("</mark>")
        if pos > start:
            highlights.append([start, pos])
    return {"text": "".join(plain), "highlights": highlights, "html": "".join(out_html)}
