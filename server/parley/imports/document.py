"""A session document rebuilt from its JSON view (Parley exports, templates), as one Yjs
update, with message ids mapped to the new session's. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pycrdt import Array, Doc, Map

from parley.crdt import schema


def _annotation(view: Mapping[str, Any], message_id: str | None) -> Map[Any]:
    fields: dict[str, Any] = {
        "id": view["id"],
        "kind": view.get("kind") or "comment",
        "body": view.get("body") or "",
        "resolved": bool(view.get("resolved")),
    }
    if message_id:
        fields["message_id"] = message_id
    for key in ("author", "created", "resolved_by", "resolved_at"):
        if isinstance(view.get(key), str):
            fields[key] = view[key]
    rng = view.get("range")
    if isinstance(rng, Mapping) and {"start", "end"} <= rng.keys():
        fields["range"] = Map({"start": rng["start"], "end": rng["end"]})
    replies = [
        Map({k: r[k] for k in ("id", "author", "body", "created") if isinstance(r.get(k), str)})
        for r in view.get("replies") or []
        if isinstance(r, Mapping)
    ]
    fields["replies"] = Array(replies)
    return Map(fields)


def document_update(view: Mapping[str, Any], message_ids: Mapping[str, str]) -> bytes | None:
    """The update that gives an empty document ``view``'s notes, annotations, labels and pins.
    Annotations and pins on messages not in ``message_ids`` keep no message. None when the
    view holds nothing."""
    doc: Doc[Any] = Doc()
    roots = schema.define_roots(doc)
    notes = view.get("notes") or ""
    annotations = [a for a in view.get("annotations") or [] if isinstance(a, Mapping)]
    labels = view.get("labels") or {}
    pins = [message_ids[p] for p in view.get("pins") or [] if p in message_ids]
    if not (notes or annotations or labels or pins):
        return None
    with doc.transaction():
        if notes:
            roots[schema.NOTES].insert(0, notes)
        for item in annotations:
            target = item.get("message_id")
            roots[schema.ANNOTATIONS][item["id"]] = _annotation(
                item, message_ids.get(target) if isinstance(target, str) else None
            )
        for name, value in labels.items() if isinstance(labels, Mapping) else []:
            roots[schema.LABELS][name] = Map(dict(value)) if isinstance(value, Mapping) else value
        if pins:
            roots[schema.PINS].extend(pins)
    return doc.get_update()
