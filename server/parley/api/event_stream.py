"""``GET /api/v1/events/stream``: the tenant's live events as Server-Sent Events.

``?types=message.*,session.created&sessions=<id>,<id>&tags=a,b`` filter (each optional,
comma-separated); every event's ``id:`` is its feed cursor, so a reconnecting ``EventSource``
resumes after the last one it saw through the ``Last-Event-ID`` header (or ``?cursor=``).
A resume from before what the feed still keeps (see ``integrations/retention.py``) gets a
``feed.resync`` event first, then the events that are kept.
Idle streams get a comment line every ``PARLEY_FEED_HEARTBEAT`` seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from parley import metrics
from parley.api.common import api, resource, service
from parley.errors import AuthError, InvalidRequest
from parley.governance.apikeys import Scope, require_scope
from parley.governance.auth import Principal, bearer_token
from parley.integrations.filters import FeedFilter, check_patterns
from parley.integrations.live import RESYNC_EVENT, FeedReader, LiveFeeds, parse_cursor

MAX_LIST = 100
RETRY_MS = 2000


def _list(request: Request, name: str) -> list[str]:
    raw = request.query_params.get(name, "")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST:
        raise InvalidRequest(f"query parameter {name} may list at most {MAX_LIST} values")
    if any(len(v) > 64 for v in values):
        raise InvalidRequest(f"query parameter {name} has a value longer than 64 characters")
    return values


async def _principal(request: Request) -> Principal:
    """Bearer header, or ``?token=`` for browsers' ``EventSource`` (which cannot set headers)."""
    token = bearer_token(request.headers.get("authorization")) or request.query_params.get("token")
    if not token:
        raise AuthError("missing Authorization: Bearer <token> header (or ?token=)")
    p: Principal = await request.app.state.governance.authenticate(token)
    require_scope(p, Scope.SESSIONS_READ)
    await service(request).ensure_principal(p)
    request.scope["parley.principal"] = p  # the audit middleware records who it was
    return p


@api
async def stream(request: Request) -> Response:
    """Open the stream (validation errors answer as JSON before any event is sent)."""
    p = await _principal(request)
    types = _list(request, "types")
    flt = FeedFilter(
        types=tuple(check_patterns(types, "types")) if types else (),
        sessions=frozenset(_list(request, "sessions")),
        tags=frozenset(t.lower() for t in _list(request, "tags")),
    )
    resume = request.headers.get("last-event-id") or request.query_params.get("cursor")
    cursor = parse_cursor(resume, "Last-Event-ID") if resume else None
    feeds: LiveFeeds = request.app.state.integrations.feeds
    reader = await feeds.reader(p, flt, cursor)
    settings = request.app.state.settings
    return StreamingResponse(
        _events(reader, settings.feed_heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(reader: FeedReader, heartbeat: float) -> AsyncIterator[bytes]:
    metrics.FEED_STREAMS.inc()
    try:
        # The start position first, so a client that reconnects before any event still resumes
        # from here rather than from "now".
        yield f"retry: {RETRY_MS}\nid: {reader.cursor}\n: stream open\n\n".encode()
        if reader.resync is not None:
            # Events the client asked for are gone: say so rather than skip them silently.
            yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                str(reader.cursor).encode(),
                RESYNC_EVENT.encode(),
                orjson.dumps(reader.resync.data()),
            )
        while True:
            items = await reader.next(heartbeat)
            if not items:
                yield b": heartbeat\n\n"
                continue
            chunk = bytearray()
            for item in items:
                chunk += b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    str(item.cursor).encode(),
                    item.name.encode(),
                    orjson.dumps(item.frame),
                )
            yield bytes(chunk)
    finally:
        metrics.FEED_STREAMS.dec()


routes = [resource("/events/stream", GET=stream)]
