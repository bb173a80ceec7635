"""``/api/v1/sessions/{id}/messages`` and ``/events``: the same code path as the socket."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, int_param, principal, resource, service
from parley.storage.event_log import MAX_PAGE


class PartIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PostMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = ""
    parts: Annotated[list[PartIn], Field(max_length=64)] | None = None
    parent_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    metadata: dict[str, Any] | None = None
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class EditMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    parts: Annotated[list[PartIn], Field(max_length=64)] | None = None
    metadata: dict[str, Any] | None = None


@api
async def list_messages(request: Request) -> Response:
    p = await principal(request)
    items = await service(request).list_messages(
        p,
        request.path_params["session_id"],
        after_seq=int_param(request, "after_seq", 0) or 0,
        before_seq=int_param(request, "before_seq", None),
        limit=int_param(request, "limit", 100, lo=1, hi=MAX_PAGE) or 100,
    )
    return JSONResponse({"items": items})


@api
async def post_message(request: Request) -> Response:
    """Post a message. ``client_id`` (or an ``Idempotency-Key`` header) makes retries safe."""
    p = await principal(request)
    req = await body(request, PostMessage)
    result = await service(request).post_message(
        p,
        request.path_params["session_id"],
        text=req.text,
        parts=[part.model_dump() for part in req.parts] if req.parts is not None else None,
        parent_id=req.parent_id,
        metadata=req.metadata,
        client_id=req.client_id or request.headers.get("idempotency-key"),
    )
    return JSONResponse(
        {"message": result.message, "seq": result.seq, "duplicate": result.duplicate},
        status_code=200 if result.duplicate else 201,
    )


@api
async def edit_message(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, EditMessage)
    message, seq = await service(request).edit_message(
        p,
        request.path_params["session_id"],
        request.path_params["message_id"],
        text=req.text,
        parts=[part.model_dump() for part in req.parts] if req.parts is not None else None,
        metadata=req.metadata,
    )
    return JSONResponse({"message": message, "seq": seq})


@api
async def delete_message(request: Request) -> Response:
    p = await principal(request)
    message, seq = await service(request).delete_message(
        p, request.path_params["session_id"], request.path_params["message_id"]
    )
    return JSONResponse({"message": message, "seq": seq})


@api
async def list_events(request: Request) -> Response:
    """The durable events after ``after_seq``: the same frames a resubscribe replays."""
    p = await principal(request)
    items = await service(request).list_events(
        p,
        request.path_params["session_id"],
        after_seq=int_param(request, "after_seq", 0) or 0,
        limit=int_param(request, "limit", MAX_PAGE, lo=1, hi=MAX_PAGE) or MAX_PAGE,
    )
    return JSONResponse({"items": items})


routes = [
    resource("/sessions/{session_id}/messages", GET=list_messages, POST=post_message),
    resource(
        "/sessions/{session_id}/messages/{message_id}", PATCH=edit_message, DELETE=delete_message
    ),
    resource("/sessions/{session_id}/events", GET=list_events),
]
