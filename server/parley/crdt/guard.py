"""Write permissions for viewers and commenters: what would this update change? No I/O.

A CRDT update cannot be taken back once applied, and it does not say which part of the document
it touches until it is integrated. So for clients that may not change everything, the update is
first applied to a throw-away copy of the document whose typed roots are observed (the schema
is closed, so every change shows up on one of them). Only if the copy shows an allowed change
is the update applied for real. The copy costs a few milliseconds per 200 KB of document and is
made only for viewers' and commenters' updates that are not plainly empty; editors' updates go
straight through.

Commenter rules, on the ``annotations`` root only:

* add an annotation whose ``author`` is themselves;
* change or delete annotations they authored;
* on anyone's annotation: set ``resolved``/``resolved_by``/``resolved_at``, and append replies
  whose ``author`` is themselves (creating the ``replies`` array when it is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import ArrayEvent, Doc, Map, MapEvent

from parley.crdt import schema
from parley.crdt.schema import ANNOTATIONS, RESOLVE_FIELDS, Scope, plain
from parley.crdt.updates import EMPTY_UPDATE, has_structs, left_pending
from parley.errors import Forbidden

VIEWERS_MAY_NOT_WRITE = "viewers may read the document but not change it"


def check_write(doc: Doc[Any], novel: bytes, scope: Scope, user_id: str) -> bool:
    """Decide on an update from a client that may not change everything.

    ``novel`` is the part of the update ``doc`` lacks (``updates.novel_part``). Returns False
    when applying it would change nothing (a viewer's sync step 2 usually), True when the change
    is allowed, and raises :class:`Forbidden` otherwise.
    """
    if novel == EMPTY_UPDATE:
        return False
    structs = has_structs(novel)
    if scope is Scope.NOTHING and structs:
        raise Forbidden(VIEWERS_MAY_NOT_WRITE)
    probe: Doc[Any] = Doc()
    roots = schema.define_roots(probe)
    probe.apply_update(doc.get_update())
    changed: list[bool] = []
    touched: dict[str, list[Any]] = {}
    probe.observe(lambda _event: changed.append(True))
    for name, root in roots.items():
        root.observe_deep(_collector(touched.setdefault(name, [])))
    probe.apply_update(novel)
    if structs and left_pending(novel, probe):
        # Parts of it wait for changes the server does not have, so what they will touch is
        # unknown; editors may send such updates, others may not.
        raise Forbidden("the update depends on changes the server does not have")
    if not changed:
        return False
    if scope is Scope.NOTHING:
        raise Forbidden(VIEWERS_MAY_NOT_WRITE)
    if {name for name, events in touched.items() if events} != {ANNOTATIONS}:
        raise Forbidden("commenters may only add, answer and resolve annotations")
    before = doc.get(ANNOTATIONS, type=Map)
    after = roots[ANNOTATIONS]
    for event in touched[ANNOTATIONS]:
        _check_annotation_event(event, before, after, user_id)
    return True


def _collector(into: list[Any]) -> Callable[[list[Any]], None]:
    # pycrdt passes the transaction too when a callback takes two parameters, so a lambda with
    # a default argument would not work here.
    def collect(events: list[Any]) -> None:
        into.extend(events)

    return collect


def _author(annotations: Map[Any], key: str) -> str | None:
    value = plain(annotations.get(key))
    if isinstance(value, dict):
        author = value.get("author")
        return author if isinstance(author, str) else None
    return None


def _check_annotation_event(event: Any, before: Map[Any], after: Map[Any], user_id: str) -> None:
    # pycrdt declares event fields as slots only; ``event`` stays Any to read them.
    path = list(event.path)
    is_map, is_array = isinstance(event, MapEvent), isinstance(event, ArrayEvent)
    if not path:  # the annotations map itself: annotations added, replaced or deleted
        if not is_map:
            raise Forbidden("commenters may only add, answer and resolve annotations")
        for key, change in event.keys.items():
            if key in before:
                if _author(before, key) != user_id:
                    raise Forbidden("only an annotation's author may replace or delete it")
            elif change.get("action") != "delete" and _author(after, key) != user_id:
                raise Forbidden("an annotation you add must name you as its author")
        return
    key = str(path[0])
    if key not in before or _author(before, key) == user_id:
        return  # new in this update (checked above) or the commenter's own
    if len(path) == 1 and is_map:
        for field, change in event.keys.items():
            if field in RESOLVE_FIELDS:
                continue
            if field == "replies" and change.get("action") == "add":
                _check_replies(plain(change.get("newValue")), user_id)
                continue
            raise Forbidden("on others' annotations commenters may only reply and resolve")
        return
    if path[1:] == ["replies"] and is_array:
        for op in event.delta:
            if "delete" in op:
                raise Forbidden("commenters may not delete others' replies")
            if "insert" in op:
                _check_replies([plain(v) for v in op["insert"]], user_id)
        return
    raise Forbidden("on others' annotations commenters may only reply and resolve")


def _check_replies(replies: Any, user_id: str) -> None:
    if not isinstance(replies, list):
        raise Forbidden("replies must be a list")
    for reply in replies:
        if not isinstance(reply, dict) or reply.get("author") != user_id:
            raise Forbidden("a reply you add must name you as its author")
