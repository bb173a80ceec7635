"""``/api/v1/audit``: the tenant's audit trail, for tenant admins.

``GET /audit?actor=&action=&target=&since=&until=&limit=&cursor=`` pages newest first (JSON);
``GET /audit/export`` streams every matching entry oldest first as JSON Lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from parley.api.common import JSONResponse, api, int_param, principal, resource, text_param
from parley.errors import Forbidden, InvalidRequest
from parley.governance import audit
from parley.governance.auth import Principal
from parley.storage.database import Database

MAX_FILTER_CHARS = 200


async def _admin(request: Request) -> Principal:
    p = await principal(request)
    if not p.is_admin:
        raise Forbidden("only tenant admins may read the audit trail")
    return p


def _text(request: Request, name: str) -> str | None:
    return text_param(request, name, max_len=MAX_FILTER_CHARS)


def _time(request: Request, name: str) -> datetime | None:
    value = _text(request, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"query parameter {name} must be an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filter(request: Request) -> audit.Filter:
    return audit.Filter(
        actor=_text(request, "actor"),
        action=_text(request, "action"),
        target=_text(request, "target"),
        since=_time(request, "since"),
        until=_time(request, "until"),
    )


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


@api
async def list_entries(request: Request) -> Response:
    """A page of entries, newest first; ``next_cursor`` continues."""
    p = await _admin(request)
    items, cursor = await audit.search(
        _db(request),
        p.tenant_id,
        _filter(request),
        before_seq=int_param(request, "cursor", None, lo=1),
        limit=int_param(request, "limit", 100, lo=1, hi=1000) or 100,
    )
    return JSONResponse({"items": items, "next_cursor": cursor})


@api
async def export_entries(request: Request) -> Response:
    """Every matching entry, oldest first, one JSON object per line."""
    p = await _admin(request)
    f = _filter(request)
    db = _db(request)

    async def lines() -> AsyncIterator[bytes]:
        async for entry in audit.export(db, p.tenant_id, f):
            yield orjson.dumps(entry) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


routes = [
    resource("/audit", GET=list_entries),
    resource("/audit/export", GET=export_entries),
]
