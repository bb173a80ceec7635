"""``/api/v1/tenant/...``: a tenant admin's quotas, usage, PII mode, retention and user purge;
``/api/v1/sessions/{id}/retention``: a session's own retention."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from parley.api.apikeys import admin
from parley.api.common import JSONResponse, api, body, principal, resource
from parley.errors import Forbidden, InvalidRequest
from parley.governance import audit, purge
from parley.governance.auth import Principal, valid_identifier
from parley.governance.hub import Governance
from parley.governance.policies import PiiMode
from parley.sessions.queries import role_of, session_row
from parley.sessions.rules import Role
from parley.storage import models as m

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


@api
async def purge_user(request: Request) -> Response:
    """Remove one user's content from every session of the tenant (docs/privacy.md)."""
    p = await admin(request)
    user_id = request.path_params["user_id"]
    if not valid_identifier(user_id):
        raise InvalidRequest("user ids are 1-128 letters, digits or ._@+-")
    report = await purge.purge_user(
        request.app.state.db,
        p.tenant_id,
        user_id,
        actor=p.user_id,
        actor_kind=str(p.kind),
        client=audit.client_address(),
    )
    audit.mark_recorded()  # the purge wrote its own entry, with the counts
    return JSONResponse(report.view())


def _session_retention(s: Session, tenant_id: str, session_id: str) -> m.SessionRetention | None:
    return s.scalar(
        select(m.SessionRetention).where(
            m.SessionRetention.tenant_id == tenant_id, m.SessionRetention.session_id == session_id
        )
    )


async def _session_retention_of(request: Request, *, change: bool) -> tuple[Principal, str]:
    p = await principal(request)
    session_id = request.path_params["session_id"]

    def check(s: Session) -> None:
        session_row(s, p, session_id)
        if (
            change
            and not p.is_admin
            and role_of(s, p.user_id, session_id, p.tenant_id) is not Role.OWNER
        ):
            raise Forbidden("only the session's owners and tenant admins may set its retention")

    await request.app.state.db.read(check)
    return p, session_id


@api
async def get_session_retention(request: Request) -> Response:
    p, session_id = await _session_retention_of(request, change=False)

    def read(s: Session) -> dict[str, Any]:
        row = _session_retention(s, p.tenant_id, session_id)
        own = {
            "archive_after_days": row.archive_after_days if row else None,
            "purge_after_days": row.purge_after_days if row else None,
        }
        return {
            "session": own,
            "tenant": _retention(governance(request).policies.read(s, p.tenant_id)),
        }

    return JSONResponse(await request.app.state.db.read(read))


@api
async def put_session_retention(request: Request) -> Response:
    """This session's own retention (null: its tenant's)."""
    p, session_id = await _session_retention_of(request, change=True)
    req = await body(request, PutRetention)

    def write(s: Session) -> dict[str, Any]:
        row = _session_retention(s, p.tenant_id, session_id)
        if row is None:
            row = m.SessionRetention(session_id=session_id, tenant_id=p.tenant_id)
            s.add(row)
        row.archive_after_days = req.archive_after_days
        row.purge_after_days = req.purge_after_days
        return {
            "archive_after_days": row.archive_after_days,
            "purge_after_days": row.purge_after_days,
        }

    return JSONResponse(await request.app.state.db.write(write))


routes = [
    resource("/tenant/quotas", GET=get_quotas, PUT=put_quotas),
    resource("/tenant/usage", GET=get_usage),
    resource("/tenant/pii", GET=get_pii, PUT=put_pii),
    resource("/tenant/retention", GET=get_retention, PUT=put_retention),
    resource("/tenant/users/{user_id}/purge", POST=purge_user),
    resource(
        "/sessions/{session_id}/retention", GET=get_session_retention, PUT=put_session_retention
    ),
]
