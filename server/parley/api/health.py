"""``/healthz`` (the process answers), ``/readyz`` (storage and broker reachable), ``/metrics``."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.api.common import JSONResponse


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app.state.db.ping(), 2.0)
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"failing: {type(exc).__name__}"
    try:
        healthy = await asyncio.wait_for(request.app.state.broker.healthy(), 2.0)
        checks["broker"] = "ok" if healthy else "failing: not connected"
    except Exception as exc:
        checks["broker"] = f"failing: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
