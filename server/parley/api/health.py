"""``/healthz`` (the process answers), ``/readyz`` (storage and broker reachable, start-up
work done), ``/metrics``."""

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
    # Loading the embedding model keeps the interpreter busy for seconds: a process that took
    # traffic meanwhile would answer everything late (and miss its own relay leases).
    if request.app.state.intelligence.semantic.loading:
        checks["model"] = "loading"
    # Without storage nothing works: not ready. Without the broker, this process still serves
    # its own clients (and they recover by seq later): ready, but reported as degraded.
    if checks["storage"] != "ok" or checks.get("model") == "loading":
        status, code = "not ready", 503
    elif checks["broker"] != "ok":
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return JSONResponse({"status": status, "checks": checks}, status_code=code)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
