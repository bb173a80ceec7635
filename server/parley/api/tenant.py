"""``/api/v1/tenant/...``: a tenant admin's quotas, usage, PII mode and retention policy."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from parley.api.apikeys import admin
from parley.api.common import JSONResponse, api, body, resource
from parley.governance.hub import Governance
from parley.governance.policies import PiiMode

Days = Annotated[int, Field(ge=1, le=100_000)]


class PutPii(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: PiiMode


class PutRetention(BaseModel):
    model_config = ConfigDict(extra="forbid")
    archive_after_days: Days | None = None
    purge_after_days: Days | None = None


def governance(request: Request) -> Governance:
    gov: Governance = request.app.state.governance
    return gov


@api
async def get_quotas(request: Request) -> Response:
    p = await admin(request)
    policy = await governance(request).policies.get(p.tenant_id)
    return JSONResponse({"quotas": policy.quotas, "overrides": policy.overrides})


@api
async def put_quotas(request: Request) -> Response:
    """Override quotas of this tenant: ``{"messages_per_minute": 100, "sessions": null}``
    (null returns a quota to the server default; 0 means unlimited)."""
    p = await admin(request)
    raw = await body(request, _AnyObject)
    policy = await governance(request).policies.update(p.tenant_id, quotas=raw.model_extra or {})
    return JSONResponse({"quotas": policy.quotas, "overrides": policy.overrides})


class _AnyObject(BaseModel):
    model_config = ConfigDict(extra="allow")


@api
async def get_usage(request: Request) -> Response:
    p = await admin(request)
    return JSONResponse(await governance(request).quotas.usage(p.tenant_id))


@api
async def get_pii(request: Request) -> Response:
    p = await admin(request)
    policy = await governance(request).policies.get(p.tenant_id)
    return JSONResponse({"mode": str(policy.pii_mode)})


@api
async def put_pii(request: Request) -> Response:
    p = await admin(request)
    req = await body(request, PutPii)
    policy = await governance(request).policies.update(p.tenant_id, pii_mode=req.mode)
    return JSONResponse({"mode": str(policy.pii_mode)})


def _retention(policy: Any) -> dict[str, Any]:
    return {
        "archive_after_days": policy.archive_after_days,
        "purge_after_days": policy.purge_after_days,
    }


@api
async def get_retention(request: Request) -> Response:
    p = await admin(request)
    return JSONResponse(_retention(await governance(request).policies.get(p.tenant_id)))


@api
async def put_retention(request: Request) -> Response:
    """Archive sessions idle ``archive_after_days``, delete them after ``purge_after_days``
    (null: the server default)."""
    p = await admin(request)
    req = await body(request, PutRetention)
    policy = await governance(request).policies.update(
        p.tenant_id, retention=(req.archive_after_days, req.purge_after_days)
    )
    return JSONResponse(_retention(policy))


routes = [
    resource("/tenant/quotas", GET=get_quotas, PUT=put_quotas),
    resource("/tenant/usage", GET=get_usage),
    resource("/tenant/pii", GET=get_pii, PUT=put_pii),
    resource("/tenant/retention", GET=get_retention, PUT=put_retention),
]
