"""``/api/v1/api-keys``: tenant admins create, list and revoke API keys for bots."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, principal, resource
from parley.crdt.endpoint import YjsPeer
from parley.errors import CloseCode, Forbidden
from parley.governance.apikeys import ApiKeys
from parley.governance.auth import Principal


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=16)]
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


async def admin(request: Request) -> Principal:
    """The caller, who must be an administrator of their tenant."""
    p = await principal(request)
    if not p.is_admin:
        raise Forbidden("only tenant administrators may do this")
    return p


def keys(request: Request) -> ApiKeys:
    store: ApiKeys = request.app.state.governance.api_keys
    return store


@api
async def create_key(request: Request) -> Response:
    """Create a key. The response holds the key itself; it is never shown again."""
    p = await admin(request)
    req = await body(request, CreateKey)
    view, key = await keys(request).create(p, name=req.name, scopes=req.scopes, user_id=req.user_id)
    return JSONResponse({**view, "key": key}, status_code=201)


@api
async def list_keys(request: Request) -> Response:
    p = await admin(request)
    return JSONResponse({"items": await keys(request).list(p.tenant_id)})


@api
async def revoke_key(request: Request) -> Response:
    p = await admin(request)
    key_id = request.path_params["key_id"]
    view = await keys(request).revoke(p.tenant_id, key_id)
    # This process's sockets on the key close now; other processes refuse the key within
    # api_key_cache_seconds (docs/privacy.md).
    for conn in list(request.app.state.hub.connections):
        if conn.principal is not None and conn.principal.key_id == key_id:
            conn.close(CloseCode.KEY_REVOKED, "API key revoked")
    for handle in list(request.app.state.docs.rooms.values()):
        for peer in list(handle.room.peers):
            principal = getattr(peer, "principal", None)
            if isinstance(peer, YjsPeer) and principal is not None and principal.key_id == key_id:
                # y-websocket stops reconnecting on 44xx: the key will not work again.
                peer.conn.close(CloseCode.DOC_UNAUTHENTICATED, "API key revoked")
    return JSONResponse(view)


routes = [
    resource("/api-keys", GET=list_keys, POST=create_key),
    resource("/api-keys/{key_id}", DELETE=revoke_key),
]
