"""What every REST route shares: authentication, body parsing, JSON responses, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.errors import AuthError, ErrorCode, InvalidRequest, ParleyError, ProtocolError
from parley.governance.auth import Principal, TokenVerifier, bearer_token
from parley.sessions.service import SessionService

MAX_BODY_BYTES = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def service(request: Request) -> SessionService:
    svc: SessionService = request.app.state.service
    return svc


async def principal(request: Request) -> Principal:
    """The caller of a REST request, from its ``Authorization: Bearer`` header."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise AuthError("missing Authorization: Bearer <token> header")
    verifier: TokenVerifier = request.app.state.verifier
    p = await verifier.verify(token)
    await service(request).ensure_principal(p)
    return p


async def body(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body against ``model`` with precise error details."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ProtocolError(
            f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}",
            code=ErrorCode.FRAME_TOO_LARGE,
        )
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"body is not valid JSON: {exc}", code=ErrorCode.BAD_ENCODING) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest(
            f"invalid body: {problems[0]['field']}: {problems[0]['problem']}", details=problems
        ) from None


def int_param(
    request: Request, name: str, default: int | None, *, lo: int = 0, hi: int = 2**53
) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"query parameter {name} must be an integer") from None
    if not lo <= number <= hi:
        raise InvalidRequest(f"query parameter {name} must be between {lo} and {hi}")
    return number


def error_response(exc: ParleyError) -> JSONResponse:
    headers = {}
    if exc.code is ErrorCode.RATE_LIMITED and isinstance(exc.details, dict):
        headers["Retry-After"] = str(max(1, round(exc.details.get("retry_after", 1))))
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


Endpoint = Callable[[Request], Awaitable[Response]]


def api(handler: Endpoint) -> Endpoint:
    """Wrap a route so a ParleyError becomes its precise JSON error body."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ParleyError as exc:
            return error_response(exc)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def resource(path: str, **handlers: Endpoint) -> Route:
    """One route per path with one handler per method (``GET=..., POST=...``), so a wrong
    method gets a 405 whose ``Allow`` header names every method the path supports."""
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers))
