"""``/api/v1/automations``: a tenant's automation rules and their runs. Tenant admins only
(docs/integrations.md)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import MAX_BODY_BYTES, JSONResponse, api, int_param, principal, resource
from parley.errors import ErrorCode, InvalidRequest, ProtocolError
from parley.integrations.automation.engine import AutomationEngine
from parley.integrations.automation.service import AutomationService


def automations(request: Request) -> AutomationService:
    svc: AutomationService = request.app.state.integrations.automations
    return svc


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as an object; the rule itself is validated by the automation rules."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ProtocolError("body too large", code=ErrorCode.FRAME_TOO_LARGE)
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"body is not valid JSON: {exc}", code=ErrorCode.BAD_ENCODING) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


@api
async def create_rule(request: Request) -> Response:
    """Add a rule: ``name``, ``trigger`` or ``schedule``, ``actions``, ``enabled``."""
    p = await principal(request)
    view = await automations(request).create(p, await _json_object(request))
    return JSONResponse(view, status_code=201)


@api
async def list_rules(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse({"items": await automations(request).list_all(p)})


@api
async def get_rule(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await automations(request).get(p, request.path_params["rule_id"]))


@api
async def update_rule(request: Request) -> Response:
    """Change any fields of a rule (the result is validated as a whole)."""
    p = await principal(request)
    changes = await _json_object(request)
    view = await automations(request).update(p, request.path_params["rule_id"], changes)
    return JSONResponse(view)


@api
async def delete_rule(request: Request) -> Response:
    p = await principal(request)
    await automations(request).delete(p, request.path_params["rule_id"])
    return Response(status_code=204)


@api
async def list_runs(request: Request) -> Response:
    """The rule's runs, newest first: what each firing did, failed, or why it was stopped."""
    p = await principal(request)
    items = await automations(request).runs(
        p, request.path_params["rule_id"], limit=int_param(request, "limit", 50, lo=1, hi=200) or 50
    )
    return JSONResponse({"items": items})


@api
async def run_rule(request: Request) -> Response:
    """Run a scheduled rule now (for example to try a digest)."""
    p = await principal(request)
    engine: AutomationEngine | None = request.app.state.integrations.engine
    if engine is None:
        raise InvalidRequest("automation is not running on this server")
    return JSONResponse(await engine.run_now(p, request.path_params["rule_id"]), status_code=201)


routes = [
    resource("/automations", GET=list_rules, POST=create_rule),
    resource("/automations/{rule_id}", GET=get_rule, PATCH=update_rule, DELETE=delete_rule),
    resource("/automations/{rule_id}/runs", GET=list_runs),
    resource("/automations/{rule_id}/run", POST=run_rule),
]
