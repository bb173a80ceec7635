"""``/api/v1/search``: full-text (or with ``mode=semantic``, by meaning) search with facets,
and ``/search/parse`` for sentences."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from parley.api.common import JSONResponse, api, body, principal, resource
from parley.errors import InvalidRequest
from parley.governance.auth import Principal
from parley.ids import utcnow
from parley.intelligence import nlparse
from parley.intelligence.search import SearchQuery, search
from parley.intelligence.wiring import Intelligence
from parley.storage.database import Database

_PARAMS = [
    "q",
    "participant",
    "owner",
    "author",
    "tag",
    "assistant",
    "model",
    "status",
    "from",
    "to",
    "limit",
    "cursor",
    "kinds",
    "mode",
]


def _query_from_params(request: Request) -> SearchQuery:
    data: dict[str, Any] = {}
    for name in _PARAMS:
        value = request.query_params.get(name)
        if value is None or value == "":
            continue
        data[name] = [k for k in value.split(",") if k] if name == "kinds" else value
    unknown = sorted(set(request.query_params) - set(_PARAMS))
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r}")
    try:
        return SearchQuery.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(x) for x in e["loc"]) or "query", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest(
            f"invalid query: {problems[0]['field']}: {problems[0]['problem']}", details=problems
        ) from None


async def _run(request: Request, query: SearchQuery) -> Response:
    p = await principal(request)
    db: Database = request.app.state.db
    intel: Intelligence = request.app.state.intelligence
    backend = intel.search
    if query.mode == "semantic":
        return JSONResponse(await _semantic(db, intel, p, query))
    result = await db.read(lambda s: search(s, p, query, backend))
    return JSONResponse(result)


async def _semantic(
    db: Database, intel: Intelligence, p: Principal, query: SearchQuery
) -> dict[str, Any]:
    """``mode=semantic``: 501 ``semantic_unavailable`` without the extra; the query is embedded
    in a thread, then ranked within the caller's read scope."""
    semantic = intel.semantic
    semantic.require()
    from parley.intelligence.semantic.search import semantic_search

    qvec = await semantic.embed_query(query.q)
    engine = await semantic.engine()
    return await db.read(
        lambda s: semantic_search(
            s,
            p,
            query,
            qvec,
            intel.search,
            model=semantic.model,
            dims=semantic.dims,
            engine=engine,
        )
    )


@api
async def search_get(request: Request) -> Response:
    """Search with the query in parameters: ``?q=&participant=&tag=&from=&to=...``."""
    return await _run(request, _query_from_params(request))


@api
async def search_post(request: Request) -> Response:
    """Search with a structured query in the body (e.g. one ``/search/parse`` returned)."""
    return await _run(request, await body(request, SearchQuery))


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: Annotated[str, StringConstraints(min_length=1, max_length=500)]


@api
async def parse_query(request: Request) -> Response:
    """A sentence as a structured query the user can see, edit and ``POST /search``."""
    p = await principal(request)
    req = await body(request, ParseRequest)
    intel = request.app.state.intelligence
    result = await nlparse.parse(
        req.q, now=utcnow(), me=p.user_id, tenant_id=p.tenant_id, llm=intel.llm
    )
    return JSONResponse(result)


routes = [
    resource("/search", GET=search_get, POST=search_post),
    resource("/search/parse", POST=parse_query),
]
