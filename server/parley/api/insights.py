"""Per-session intelligence over REST: summaries, "since I was last here", insights (keywords,
topics, tag suggestions, sentiment, intents) and decisions on tag suggestions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import (
    JSONResponse,
    api,
    body,
    int_param,
    principal,
    resource,
    service,
)
from parley.intelligence.insights import decide_rule, decide_suggestion, insights, tag_rules
from parley.intelligence.related import related_sessions
from parley.intelligence.wiring import Intelligence
from parley.storage.database import Database


class SummaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: Annotated[str, Field(max_length=16)] | None = None


class SeenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: Annotated[int, Field(ge=0, le=2**53)] | None = None


def _intel(request: Request) -> Intelligence:
    intel: Intelligence = request.app.state.intelligence
    return intel


@api
async def get_summary(request: Request) -> Response:
    """The stored summary, or with ``?since=last_seen|<seq>`` one of what came after."""
    p = await principal(request)
    since = request.query_params.get("since") or None
    result = await _intel(request).summaries.get(p, request.path_params["session_id"], since)
    return JSONResponse(result)


@api
async def post_summary(request: Request) -> Response:
    """Summarize again now (with the LLM when configured) and store the result."""
    p = await principal(request)
    req = await body(request, SummaryRequest)
    result = await _intel(request).summaries.regenerate(
        p, request.path_params["session_id"], req.since
    )
    return JSONResponse(result, status_code=201)


@api
async def put_seen(request: Request) -> Response:
    """Mark the session as seen by the caller up to ``seq`` (default: everything)."""
    p = await principal(request)
    req = await body(request, SeenRequest)
    result = await _intel(request).summaries.mark_seen(
        p, request.path_params["session_id"], req.seq
    )
    return JSONResponse(result)


@api
async def get_insights(request: Request) -> Response:
    p = await principal(request)
    db: Database = request.app.state.db
    sid = request.path_params["session_id"]
    return JSONResponse(await db.read(lambda s: insights(s, p, sid)))


@api
async def get_related(request: Request) -> Response:
    """Sessions like this one (``?limit=``, default 10), with the terms they share: by meaning
    with the semantic extra, by TF-IDF otherwise (``method`` says which)."""
    p = await principal(request)
    db: Database = request.app.state.db
    sid = request.path_params["session_id"]
    limit = int_param(request, "limit", 10, lo=1, hi=50) or 10
    semantic = _intel(request).semantic
    by_meaning = (semantic.model, semantic.dims) if semantic.available else None
    return JSONResponse(await db.read(lambda s: related_sessions(s, p, sid, limit, by_meaning)))


async def _decide(request: Request, accept: bool) -> Response:
    p = await principal(request)
    result = await decide_suggestion(
        service(request), p, request.path_params["session_id"], request.path_params["tag"], accept
    )
    return JSONResponse(result)


@api
async def accept_tag(request: Request) -> Response:
    return await _decide(request, True)


@api
async def reject_tag(request: Request) -> Response:
    return await _decide(request, False)


@api
async def list_tag_rules(request: Request) -> Response:
    """The tenant's tagging rules (accepted: applied automatically; rejected: never suggested)."""
    p = await principal(request)
    db: Database = request.app.state.db
    return JSONResponse({"items": await db.read(lambda s: tag_rules(s, p))})


async def _rule(request: Request, status: str | None) -> Response:
    p = await principal(request)
    db: Database = request.app.state.db
    tag = request.path_params["tag"]
    return JSONResponse(await db.write(lambda s: decide_rule(s, p, tag, status)))


@api
async def accept_rule(request: Request) -> Response:
    return await _rule(request, "accepted")


@api
async def reject_rule(request: Request) -> Response:
    return await _rule(request, "rejected")


@api
async def forget_rule(request: Request) -> Response:
    return await _rule(request, None)


routes = [
    resource("/tag-rules", GET=list_tag_rules),
    resource("/tag-rules/{tag}", DELETE=forget_rule),
    resource("/tag-rules/{tag}/accept", POST=accept_rule),
    resource("/tag-rules/{tag}/reject", POST=reject_rule),
    resource("/sessions/{session_id}/summary", GET=get_summary, POST=post_summary),
    resource("/sessions/{session_id}/seen", PUT=put_seen),
    resource("/sessions/{session_id}/insights", GET=get_insights),
    resource("/sessions/{session_id}/related", GET=get_related),
    resource("/sessions/{session_id}/tag-suggestions/{tag}/accept", POST=accept_tag),
    resource("/sessions/{session_id}/tag-suggestions/{tag}/reject", POST=reject_tag),
]
