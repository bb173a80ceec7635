"""``POST /api/graphql``: authentication as REST (the same bearer token), one query per request,
errors in GraphQL's ``errors`` array with a machine-readable ``extensions.code`` and never a
stack trace. There is no GraphiQL page: strawberry's loads its scripts from a CDN."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from graphql import GraphQLError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley import metrics
from parley.api.common import JSONResponse, body, principal
from parley.errors import ParleyError
from parley.gql.context import Context
from parley.gql.schema import MAX_PAGE
from parley.sessions.batch import BatchReads
from parley.sessions.usage import UsageQueries

log = structlog.get_logger("parley.graphql")

MAX_QUERY_CHARS = 20_000


class GraphQLRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)]
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(None, alias="operationName")


def _error(exc: ParleyError) -> dict[str, Any]:
    ext: dict[str, Any] = {"code": str(exc.code)}
    if exc.details is not None:
        ext["details"] = exc.details
    return {"message": exc.message, "extensions": ext}


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One entry of ``errors``: precise for the caller's mistakes, opaque for ours."""
    out: dict[str, Any] = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = error.path
    original = error.original_error
    if isinstance(original, ParleyError):
        out.update(_error(original))
    elif original is None:
        code = (error.extensions or {}).get("code", "invalid_query")
        out["extensions"] = {**(error.extensions or {}), "code": code}
    else:
        log.error("graphql resolver failed", path=error.path, exc_info=original)
        out["message"] = "internal error"
        out["extensions"] = {"code": "internal"}
    return out


async def graphql(request: Request) -> Response:
    """Run one GraphQL query for the caller."""
    try:
        p = await principal(request)
        req = await body(request, GraphQLRequest)
    except ParleyError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse({"errors": [_error(exc)]}, status_code=exc.status, headers=headers)
    state = request.app.state
    ctx = Context(
        principal=p,
        service=state.service,
        docs=state.docs,
        relay=state.relay,
        attachments=state.attachments,
        batch=BatchReads(state.db),
        usage=UsageQueries(state.db),
        max_page=MAX_PAGE,
    )
    result = await state.graphql_schema.execute(
        req.query,
        variable_values=req.variables,
        context_value=ctx,
        operation_name=req.operation_name,
    )
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_error(e) for e in result.errors]
    # Refused before running (syntax, validation, limits: errors without a path) is the
    # request's fault; errors while resolving still answer 200 with what could be read.
    refused = result.data is None and all(e.path is None for e in result.errors or ())
    outcome = "ok"
    if refused:
        outcome = "refused"
    elif any(e["extensions"]["code"] == "internal" for e in payload.get("errors", ())):
        outcome = "internal"
    elif result.errors:
        outcome = "field_errors"
    metrics.GRAPHQL_QUERIES.labels(outcome=outcome).inc()
    return JSONResponse(payload, status_code=400 if refused else 200)


routes = [Route("/api/graphql", graphql, methods=["POST"])]
