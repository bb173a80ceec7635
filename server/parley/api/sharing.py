"""Invitations and share links (``governance/sharing.py``).

::

    POST   /sessions/{id}/invitations            {user_id, role, expires_in}   owners, admins
    GET    /sessions/{id}/invitations
    DELETE /sessions/{id}/invitations/{inv}      revoke
    GET    /invitations                          the caller's open invitations
    POST   /invitations/{inv}/accept
    POST   /sessions/{id}/share-links            {role, expires_in, max_uses?} -> token (once)
    GET    /sessions/{id}/share-links
    DELETE /sessions/{id}/share-links/{link}     revoke
    POST   /share-links/{token}/redeem
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, principal, resource
from parley.governance.sharing import MAX_EXPIRY, MAX_USES, MIN_EXPIRY, Sharing
from parley.sessions.rules import Role

Seconds = Annotated[int, Field(ge=MIN_EXPIRY, le=MAX_EXPIRY)]


class InviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Role = Role.EDITOR
    expires_in: Seconds = 7 * 24 * 3600


class LinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role = Role.VIEWER
    expires_in: Seconds = 7 * 24 * 3600
    max_uses: Annotated[int, Field(ge=1, le=MAX_USES)] | None = None


def sharing(request: Request) -> Sharing:
    value: Sharing = request.app.state.sharing
    return value


@api
async def invite(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, InviteBody)
    view = await sharing(request).invite(
        p, request.path_params["session_id"], req.user_id, req.role, req.expires_in
    )
    return JSONResponse(view, status_code=201)


@api
async def list_invitations(request: Request) -> Response:
    p = await principal(request)
    items = await sharing(request).invitations(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


@api
async def revoke_invitation(request: Request) -> Response:
    p = await principal(request)
    await sharing(request).revoke_invitation(
        p, request.path_params["session_id"], request.path_params["invitation_id"]
    )
    return Response(status_code=204)


@api
async def my_invitations(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse({"items": await sharing(request).my_invitations(p)})


@api
async def accept(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await sharing(request).accept(p, request.path_params["invitation_id"]))


@api
async def create_link(request: Request) -> Response:
    p = await principal(request)
    req = await body(request, LinkBody)
    view = await sharing(request).create_link(
        p, request.path_params["session_id"], req.role, req.expires_in, req.max_uses
    )
    return JSONResponse(view, status_code=201)


@api
async def list_links(request: Request) -> Response:
    p = await principal(request)
    items = await sharing(request).links(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


@api
async def revoke_link(request: Request) -> Response:
    p = await principal(request)
    await sharing(request).revoke_link(
        p, request.path_params["session_id"], request.path_params["link_id"]
    )
    return Response(status_code=204)


@api
async def redeem(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await sharing(request).redeem(p, request.path_params["token"]))


routes = [
    resource("/sessions/{session_id}/invitations", GET=list_invitations, POST=invite),
    resource("/sessions/{session_id}/invitations/{invitation_id}", DELETE=revoke_invitation),
    resource("/invitations", GET=my_invitations),
    resource("/invitations/{invitation_id}/accept", POST=accept),
    resource("/sessions/{session_id}/share-links", GET=list_links, POST=create_link),
    resource("/sessions/{session_id}/share-links/{link_id}", DELETE=revoke_link),
    resource("/share-links/{token}/redeem", POST=redeem),
]
