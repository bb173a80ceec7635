"""``/api/v1/sessions``: create, list, get, update, archive, delete."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import (
    JSONResponse,
    api,
    body,
    int_param,
    principal,
    resource,
    service,
    text_param,
)
from parley.errors import InvalidRequest
from parley.governance.policy import Visibility
from parley.sessions.rules import SessionStatus

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(max_length=500)] = ""
    metadata: dict[str, Any] | None = None
    tags: Annotated[list[Tag], Field(max_length=32)] | None = None
    visibility: Visibility | None = None


class UpdateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    metadata: dict[str, Any] | None = None
    tags: Annotated[list[Tag], Field(max_length=32)] | None = None
    status: SessionStatus | None = None
    visibility: Visibility | None = None


@api
async def create_session(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, CreateSession)
    view = await service(request).create_session(
        p, title=req.title, metadata=req.metadata, tags=req.tags, visibility=req.visibility
    )
    request.scope["parley.audit_target"] = ("session", view["id"])  # the new session
    return JSONResponse(view, status_code=201)


@api
async def list_sessions(request: Request) -> Response:
    p = await principal(request)
    status_param = request.query_params.get("status")
    try:
        status = SessionStatus(status_param) if status_param else None
    except ValueError:
        raise InvalidRequest("status must be active or archived") from None
    items, next_cursor = await service(request).list_sessions(
        p,
        status=status,
        tag=text_param(request, "tag", max_len=64),
        limit=int_param(request, "limit", 50, lo=1, hi=200) or 50,
        cursor=text_param(request, "cursor", max_len=64),
    )
    return JSONResponse({"items": items, "next_cursor": next_cursor})


@api
async def get_session(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await service(request).get_session(p, request.path_params["session_id"]))


@api
async def update_session(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, UpdateSession)
    view = await service(request).update_session(
        p,
        request.path_params["session_id"],
        title=req.title,
        metadata=req.metadata,
        tags=req.tags,
        status=req.status,
        visibility=req.visibility,
    )
    return JSONResponse(view)


@api
async def archive_session(request: Request) -> Response:
    p = await principal(request)
    view = await service(request).update_session(
        p, request.path_params["session_id"], status=SessionStatus.ARCHIVED
    )
    return JSONResponse(view)


@api
async def delete_session(request: Request) -> Response:
    p = await principal(request)
    await service(request).delete_session(p, request.path_params["session_id"])
    return Response(status_code=204)


routes = [
    resource("/sessions", GET=list_sessions, POST=create_session),
    resource(
        "/sessions/{session_id}", GET=get_session, PATCH=update_session, DELETE=delete_session
    ),
    resource("/sessions/{session_id}/archive", POST=archive_session),
]
