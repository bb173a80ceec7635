"""``/api/v1/sessions/{id}/assistants`` and ``/streams``: assistants and their generations."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, principal, resource
from parley.errors import NotFound
from parley.relay.assistants import Trigger
from parley.relay.service import Relay
from parley.relay.state import BusyPolicy

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AddAssistant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    provider: str = "scripted"
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "scripted"
    system_prompt: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    trigger: Trigger = Trigger.MENTION
    busy_policy: BusyPolicy = BusyPolicy.QUEUE
    context_window: int | None = None
    max_output_tokens: int | None = None


class UpdateAssistant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    provider: str | None = None
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    system_prompt: str | None = None
    params: dict[str, Any] | None = None
    trigger: Trigger | None = None
    busy_policy: BusyPolicy | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    message_id: Id | None = None
    parent_id: Id | None = None
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


def relay(request: Request) -> Relay:
    """The relay the lifespan built."""
    r: Relay = request.app.state.relay
    return r


@api
async def list_assistants(request: Request) -> Response:
    """The session's assistants (anyone in the tenant)."""
    p = await principal(request)
    items = await relay(request).assistants.list(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


@api
async def add_assistant(request: Request) -> Response:
    """Add an assistant to the session; owners and editors may."""
    p = await principal(request)
    req = await body(request, AddAssistant)
    view = await relay(request).assistants.create(
        p,
        request.path_params["session_id"],
        name=req.name,
        provider=req.provider,
        model=req.model,
        system_prompt=req.system_prompt,
        params=req.params,
        trigger=req.trigger,
        busy_policy=req.busy_policy,
        context_window=req.context_window,
        max_output_tokens=req.max_output_tokens,
    )
    return JSONResponse(view, status_code=201)


@api
async def get_assistant(request: Request) -> Response:
    """One assistant by name (any case)."""
    p = await principal(request)
    session_id, name = request.path_params["session_id"], request.path_params["name"]
    for item in await relay(request).assistants.list(p, session_id):
        if item["name"].lower() == name.lower():
            return JSONResponse(item)
    raise NotFound(f"assistant {name[:40]!r} not found in this session")


@api
async def update_assistant(request: Request) -> Response:
    """Change an assistant (only the fields given; ``null`` clears the two limits)."""
    p = await principal(request)
    req = await body(request, UpdateAssistant)
    changes = {k: getattr(req, k) for k in req.model_fields_set}
    for key in ("name", "provider", "model", "system_prompt", "params", "trigger", "busy_policy"):
        if key in changes and changes[key] is None:
            del changes[key]  # null means "unchanged" for fields that cannot be empty
    view = await relay(request).assistants.update(
        p, request.path_params["session_id"], request.path_params["name"], changes
    )
    return JSONResponse(view)


@api
async def remove_assistant(request: Request) -> Response:
    """Remove an assistant; its running answers stop (stored as cancelled)."""
    p = await principal(request)
    await relay(request).remove_assistant(
        p, request.path_params["session_id"], request.path_params["name"]
    )
    return Response(status_code=204)


@api
async def ask(request: Request) -> Response:
    """Ask the assistant: ``text`` is posted as your prompt, or it answers ``message_id`` (or
    the latest message). 202: the answer streams to subscribers and is then stored."""
    p = await principal(request)
    req = await body(request, AskBody)
    answer = await relay(request).ask(
        p,
        request.path_params["session_id"],
        request.path_params["name"],
        text=req.text,
        message_id=req.message_id,
        parent_id=req.parent_id,
        client_id=req.client_id or request.headers.get("idempotency-key"),
    )
    return JSONResponse(answer, status_code=200 if answer.get("duplicate") else 202)


@api
async def list_streams(request: Request) -> Response:
    """The session's running generations with their text so far."""
    p = await principal(request)
    items = await relay(request).active(p, request.path_params["session_id"])
    return JSONResponse({"items": items})


@api
async def stop_stream(request: Request) -> Response:
    """Stop a running (or queued) generation; what it wrote is stored as ``cancelled``."""
    p = await principal(request)
    answer = await relay(request).stop_stream(
        p, request.path_params["session_id"], request.path_params["stream_id"]
    )
    return JSONResponse(answer, status_code=202)


routes = [
    resource("/sessions/{session_id}/assistants", GET=list_assistants, POST=add_assistant),
    resource(
        "/sessions/{session_id}/assistants/{name}",
        GET=get_assistant,
        PATCH=update_assistant,
        DELETE=remove_assistant,
    ),
    resource("/sessions/{session_id}/assistants/{name}/ask", POST=ask),
    resource("/sessions/{session_id}/streams", GET=list_streams),
    resource("/sessions/{session_id}/streams/{stream_id}/stop", POST=stop_stream),
]
