"""Typed exceptions of the bot SDK, one per server error code.

::

    ClientError                     anything the SDK raises on purpose
    ├── ServerError                 the server refused a request: ``code``, ``message``, ``details``
    │   ├── Unauthenticated         bad or expired token or API key (fatal: no reconnect)
    │   ├── NotFound                no such session or message, or another tenant's
    │   ├── Forbidden               the bot's role does not allow it
    │   ├── Conflict                contradicts the current state (also ``session_archived``,
    │   │   │                       ``assistant_busy``)
    │   │   └── StreamStopped       someone stopped the message the bot was streaming
    │   ├── RateLimited             too fast; ``retry_after`` seconds
    │   ├── InvalidRequest          well-formed but invalid (also ``text_too_long``)
    │   └── ProtocolViolation       the SDK sent a frame the server could not read (a bug)
    ├── ConnectionLost              the socket dropped while a request that cannot be resent
    │                               safely was in flight
    └── ClientClosed                the client was closed (or gave up) before the answer came

The codes come from :class:`parley.errors.ErrorCode`, so server and SDK share one catalog.
"""

from __future__ import annotations

from typing import Any

from parley.errors import ErrorCode


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class ServerError(ClientError):
    """The server answered a request with an error (an ``error`` frame or a REST error body)."""

    def __init__(
        self, code: str, message: str, *, details: Any = None, status: int | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.status = status  # the HTTP status for REST errors, None for socket errors


class Unauthenticated(ServerError):
    """The token or API key was refused; retrying with the same one will not help."""


class NotFound(ServerError):
    """The target does not exist, or belongs to another tenant (the server does not say)."""


class Forbidden(ServerError):
    """The bot can see the target but its role does not allow the action."""


class Conflict(ServerError):
    """The request contradicts the current state (deleted message, archived session...)."""


class StreamStopped(Conflict):
    """Someone sent ``stop`` for the message the bot is streaming; the server stored the text
    written so far (finish reason ``cancelled``). Stop generating."""


class RateLimited(ServerError):
    """The bot sent too much too fast; wait ``retry_after`` seconds."""

    @property
    def retry_after(self) -> float:
        if isinstance(self.details, dict):
            value = self.details.get("retry_after")
            if isinstance(value, int | float):
                return float(value)
        return 1.0


class InvalidRequest(ServerError):
    """A well-formed request asking for something invalid (empty message, text too long...)."""


class ProtocolViolation(ServerError):
    """The server could not read a frame the SDK sent: a bug in the SDK or a server mismatch."""


class ConnectionLost(ClientError):
    """The connection dropped before the answer to a request that is not safe to resend."""


class ClientClosed(ClientError):
    """The client was closed (or stopped reconnecting) before the answer arrived."""


_BY_CODE: dict[str, type[ServerError]] = {
    ErrorCode.UNAUTHENTICATED: Unauthenticated,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.SESSION_ARCHIVED: Conflict,
    ErrorCode.ASSISTANT_BUSY: Conflict,
    ErrorCode.NOT_SUBSCRIBED: Conflict,
    ErrorCode.ALREADY_AUTHENTICATED: Conflict,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.GENERATION_LIMIT: RateLimited,
    ErrorCode.INVALID_REQUEST: InvalidRequest,
    ErrorCode.TEXT_TOO_LONG: InvalidRequest,
    ErrorCode.BAD_ENCODING: ProtocolViolation,
    ErrorCode.BAD_FRAME: ProtocolViolation,
    ErrorCode.UNKNOWN_TYPE: ProtocolViolation,
    ErrorCode.INVALID_FRAME: ProtocolViolation,
    ErrorCode.FRAME_TOO_LARGE: ProtocolViolation,
}


def error_from(body: dict[str, Any], *, status: int | None = None) -> ServerError:
    """The typed exception for an error frame or a REST error body (``{"code", "message"}``)."""
    code = str(body.get("code") or "internal")
    cls = _BY_CODE.get(code, ServerError)
    return cls(code, str(body.get("message") or code), details=body.get("details"), status=status)
