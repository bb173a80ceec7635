"""``/api/v1/webhooks``: a tenant's webhook endpoints, deliveries, redelivery, test pings.
Tenant admins only (docs/integrations.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, int_param, principal, resource
from parley.integrations.webhooks import WebhookService

Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Events = Annotated[list[str], Field(min_length=1, max_length=50)]


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: Events = Field(default_factory=lambda: ["*"])
    description: Annotated[str, StringConstraints(max_length=500)] = ""


class UpdateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: Events | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    enabled: bool | None = None
    rotate_secret: bool = False


def webhooks(request: Request) -> WebhookService:
    svc: WebhookService = request.app.state.webhooks
    return svc


@api
async def create_webhook(request: Request) -> Response:
    """Add an endpoint. The answer carries its signing ``secret``, shown only this once."""
    p = await principal(request)
    req = await body(request, CreateWebhook)
    view = await webhooks(request).create(
        p, url=req.url, events=req.events, description=req.description
    )
    return JSONResponse(view, status_code=201)


@api
async def list_webhooks(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse({"items": await webhooks(request).list_all(p)})


@api
async def get_webhook(request: Request) -> Response:
    p = await principal(request)
    return JSONResponse(await webhooks(request).get(p, request.path_params["webhook_id"]))


@api
async def update_webhook(request: Request) -> Response:
    """Change the URL, events, description; enable or disable; rotate the secret."""
    p = await principal(request)
    req = await body(request, UpdateWebhook)
    view = await webhooks(request).update(
        p,
        request.path_params["webhook_id"],
        url=req.url,
        events=req.events,
        description=req.description,
        enabled=req.enabled,
        rotate_secret=req.rotate_secret,
    )
    return JSONResponse(view)


@api
async def delete_webhook(request: Request) -> Response:
    p = await principal(request)
    await webhooks(request).delete(p, request.path_params["webhook_id"])
    return Response(status_code=204)


@api
async def list_deliveries(request: Request) -> Response:
    """Deliveries, newest first, each with its attempt log. ``?status=&limit=&cursor=``."""
    p = await principal(request)
    items, cursor = await webhooks(request).deliveries(
        p,
        request.path_params["webhook_id"],
        status=request.query_params.get("status") or None,
        limit=int_param(request, "limit", 50, lo=1, hi=200) or 50,
        cursor=request.query_params.get("cursor") or None,
    )
    return JSONResponse({"items": items, "next_cursor": cursor})


@api
async def redeliver(request: Request) -> Response:
    """Send a delivery again now (same id and body)."""
    p = await principal(request)
    view = await webhooks(request).redeliver(
        p, request.path_params["webhook_id"], request.path_params["delivery_id"]
    )
    request.app.state.delivery_worker_wake()
    return JSONResponse(view, status_code=202)


@api
async def test_webhook(request: Request) -> Response:
    """Queue a ``webhook.test`` delivery to the endpoint."""
    p = await principal(request)
    view = await webhooks(request).test(p, request.path_params["webhook_id"])
    request.app.state.delivery_worker_wake()
    return JSONResponse(view, status_code=202)


routes = [
    resource("/webhooks", GET=list_webhooks, POST=create_webhook),
    resource(
        "/webhooks/{webhook_id}", GET=get_webhook, PATCH=update_webhook, DELETE=delete_webhook
    ),
    resource("/webhooks/{webhook_id}/deliveries", GET=list_deliveries),
    resource("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", POST=redeliver),
    resource("/webhooks/{webhook_id}/test", POST=test_webhook),
]
