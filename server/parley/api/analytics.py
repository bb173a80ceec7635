"""``/api/v1/analytics``: usage and conversation analytics as JSON or CSV."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, principal, resource
from parley.errors import InvalidRequest
from parley.ids import iso
from parley.intelligence import analytics
from parley.storage.database import Database


def _time(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{name} needs a time zone (for example Z)")
    return parsed.astimezone(UTC)


def _breakdowns(request: Request) -> list[str]:
    """``by=model,assistant,...``: the breakdowns asked for, in order, without repeats."""
    names: list[str] = []
    for name in (request.query_params.get("by") or "").split(","):
        name = name.strip()
        if not name or name in names:
            continue
        if name not in analytics.BREAKDOWNS:
            raise InvalidRequest(
                f"by: unknown breakdown {name[:40]!r} (use {', '.join(analytics.BREAKDOWNS)})"
            )
        names.append(name)
    return names


@api
async def get_analytics(request: Request) -> Response:
    """``?scope=tenant|session|user|assistant|model&id=&from=&to=&by=&format=json|csv``."""
    p = await principal(request)
    scope = request.query_params.get("scope") or "tenant"
    ident = request.query_params.get("id") or None
    fmt = request.query_params.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise InvalidRequest("format must be json or csv")
    if ident is not None and len(ident) > 200:
        raise InvalidRequest("id is too long")
    by = _breakdowns(request)
    start, end = _time(request, "from"), _time(request, "to")
    if start is not None and end is not None and start > end:
        raise InvalidRequest("from must not be after to")
    db: Database = request.app.state.db
    rows, truncated, created = await db.read(
        lambda s: analytics.load(s, p, scope, ident, start, end)
    )
    numbers = await asyncio.to_thread(analytics.compute, rows)
    groups = {name: analytics.breakdown(rows, name) for name in by}
    if groups:

        def label(s: Session) -> None:
            for name, items in groups.items():
                analytics.label_groups(s, p, name, items)

        await db.read(label)
    report = {
        "scope": scope,
        "id": ident,
        "from": iso(start),
        "to": iso(end),
        "sessions_created": created,
        **numbers,
        **({"breakdowns": groups} if groups else {}),
        "truncated": truncated,
    }
    if fmt == "csv":
        return Response(
            analytics.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="analytics-{scope}.csv"'},
        )
    return JSONResponse(report)


routes = [resource("/analytics", GET=get_analytics)]
