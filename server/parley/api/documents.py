"""``/api/v1/sessions/{id}/annotations`` and ``/document``: read-only JSON views of the session's
collaborative document. Writes go through the document itself (``/yjs`` or ``doc`` frames)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, principal, resource, text_param
from parley.crdt.manager import DocManager


def _docs(request: Request) -> DocManager:
    docs: DocManager = request.app.state.docs
    return docs


@api
async def list_annotations(request: Request) -> Response:
    """Annotations oldest first; ``?message_id=`` keeps those on one message."""
    p = await principal(request)
    view = await _docs(request).document(p, request.path_params["session_id"])
    items = view["annotations"]
    message_id = text_param(request, "message_id", max_len=64)
    if message_id:
        items = [a for a in items if a["message_id"] == message_id]
    return JSONResponse({"items": items})


@api
async def get_document(request: Request) -> Response:
    """Notes, annotations, labels and pins, with the document's size and stored bytes."""
    p = await principal(request)
    return JSONResponse(await _docs(request).document(p, request.path_params["session_id"]))


routes = [
    resource("/sessions/{session_id}/annotations", GET=list_annotations),
    resource("/sessions/{session_id}/document", GET=get_document),
]
