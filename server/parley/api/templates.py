"""``/api/v1/templates`` (the built-in library and the tenant's own; admins change them) and
``POST /api/v1/sessions/from-template``."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import MAX_BODY_BYTES, JSONResponse, api, body, principal, resource, service
from parley.api.imports import importer_of
from parley.errors import ErrorCode, InvalidRequest, ProtocolError
from parley.templates.library import TemplateLibrary


class FromTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    variables: Annotated[dict[str, Any], Field(max_length=50)] = Field(default_factory=dict)
    title: Annotated[str, StringConstraints(max_length=500)] | None = None


def library(request: Request) -> TemplateLibrary:
    # The importer writes straight to the hub, not through the relay's observer: template
    # notes set a session up; they are not prompts for its assistants.
    return TemplateLibrary(service(request), importer_of(request))


async def _json(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ProtocolError(
            f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}",
            code=ErrorCode.FRAME_TOO_LARGE,
        )
    try:
        return orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"body is not valid JSON: {exc}", code=ErrorCode.BAD_ENCODING) from None


@api
async def list_templates(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse({"items": await library(request).list(p)})


@api
async def create_template(request: Request) -> Response:
    p = await principal(request)
    view = await library(request).save(p, await _json(request))
    return JSONResponse(view, status_code=201)


@api
async def get_template(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await library(request).get(p, request.path_params["name"]))


@api
async def replace_template(request: Request) -> Response:
    p = await principal(request)
    data = await _json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("invalid template: body: must be a JSON object")
    view = await library(request).save(p, data, replace=request.path_params["name"])
    return JSONResponse(view)


@api
async def delete_template(request: Request) -> Response:
    p = await principal(request)
    await library(request).delete(p, request.path_params["name"])
    return Response(status_code=204)


@api
async def session_from_template(request: Request) -> Response:
    """Create a session from a template: ``{"template", "variables", "title"?}``."""
    p = await principal(request)
    req = await body(request, FromTemplate)
    view = await library(request).instantiate(p, req.template, req.variables, title=req.title)
    return JSONResponse(view, status_code=201)


routes = [
    resource("/templates", GET=list_templates, POST=create_template),
    resource("/templates/{name}", GET=get_template, PUT=replace_template, DELETE=delete_template),
    resource("/sessions/from-template", POST=session_from_template),
]
