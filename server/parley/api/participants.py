"""``/api/v1/sessions/{id}/participants`` and ``/api/v1/me``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, principal, resource, service
from parley.sessions.rules import Role


class AddParticipant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Role = Role.EDITOR


@api
async def me(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(
        {"id": p.user_id, "tenant": p.tenant_id, "name": p.name, "kind": str(p.kind)}
    )


@api
async def presence(request: Request) -> Response:
    """The users connected to the session right now, on every process."""
    p = await principal(request)
    session_id = request.path_params["session_id"]
    await service(request).last_seq(p, session_id)  # not found for other tenants
    users = await request.app.state.hub.present(p.tenant_id, session_id)
    return JSONResponse({"items": sorted(users, key=lambda u: u["user_id"])})


@api
async def list_participants(request: Request) -> Response:
    p = await principal(request)
    items = await service(request).list_participants(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


@api
async def add_participant(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, AddParticipant)
    view = await service(request).add_participant(
        p, request.path_params["session_id"], req.user_id, req.role
    )
    return JSONResponse(view, status_code=201)


@api
async def remove_participant(request: Request) -> Response:
    p = await principal(request)
    await service(request).remove_participant(
        p, request.path_params["session_id"], request.path_params["user_id"]
    )
    return Response(status_code=204)


routes = [
    resource("/me", GET=me),
    resource("/sessions/{session_id}/participants", GET=list_participants, POST=add_participant),
    resource("/sessions/{session_id}/participants/{user_id}", DELETE=remove_participant),
    resource("/sessions/{session_id}/presence", GET=presence),
]
