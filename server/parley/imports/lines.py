"""Line numbers of the items of a JSON array, so errors in JSON exports can say ``file:line``.
A small scanner that knows strings and nesting; it never parses values (orjson does)."""

from __future__ import annotations


def array_item_lines(text: str, start: int = 0) -> list[int]:
    """The 1-based line where each item of the JSON array opening at or after ``start``
    begins, in order. Empty when there is no array there."""
    at = text.find("[", start)
    if at < 0:
        return []
    line = text.count("\n", 0, at) + 1
    lines: list[int] = []
    depth = 0
    in_string = escaped = False
    expecting_item = False
    for ch in text[at:]:
        if ch == "\n":
            line += 1
            continue
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if depth == 1 and expecting_item and not ch.isspace() and ch not in ",]":
            lines.append(line)
            expecting_item = False
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == 1:
                expecting_item = True
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            expecting_item = True
    return lines
