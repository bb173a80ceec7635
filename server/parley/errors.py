"""The exception tree and the one catalog of error codes and WebSocket close codes.

::

    ParleyError                 code, message, HTTP status; what every client-facing error is
    ├── ProtocolError           a frame could not be understood (bad encoding, schema, size)
    ├── AuthError               missing, invalid or expired credentials
    ├── NotFound                the target does not exist *or the caller may not see it*
    ├── Forbidden               the caller sees the target but may not do this
    ├── Conflict                the request contradicts the current state
    └── RateLimited             too many frames or requests; carries retry_after

Errors of another tenant's objects are always ``NotFound`` so nobody can probe for ids.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Machine-readable error codes sent in ``error`` frames and REST error bodies."""

    BAD_ENCODING = "bad_encoding"  # not valid JSON / msgpack
    BAD_FRAME = "bad_frame"  # decodes, but is not an object with a string "type"
    UNKNOWN_TYPE = "unknown_type"  # "type" names no frame of this protocol
    INVALID_FRAME = "invalid_frame"  # a field is missing, of the wrong type or out of range
    FRAME_TOO_LARGE = "frame_too_large"
    TEXT_TOO_LONG = "text_too_long"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    NOT_SUBSCRIBED = "not_subscribed"
    INVALID_REQUEST = "invalid_request"
    SESSION_ARCHIVED = "session_archived"
    INTERNAL = "internal"
    # Collaborative documents (crdt/): a y-protocol message or Yjs update that cannot be read,
    # an update over the size limit, an update that would grow the document past its limit,
    # and a document that could not be loaded from storage (try again later).
    BAD_DOC_MESSAGE = "bad_doc_message"
    UPDATE_TOO_LARGE = "update_too_large"
    DOCUMENT_TOO_LARGE = "document_too_large"
    DOCUMENT_UNAVAILABLE = "document_unavailable"
    # LLM relay (relay/): the assistant is already answering and its busy policy refuses the
    # prompt (or its queue is full); the tenant runs as many generations as it may at once.
    ASSISTANT_BUSY = "assistant_busy"
    GENERATION_LIMIT = "generation_limit"
    # Imports (imports/): an uploaded export over PARLEY_IMPORT_MAX_BYTES.
    UPLOAD_TOO_LARGE = "upload_too_large"
    # Attachments (attachments/): a file over the size limit, a tenant over its storage quota,
    # content of a type that is not allowed (sniffed from its bytes).
    FILE_TOO_LARGE = "file_too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    # Governance (governance/, docs/privacy.md): a tenant quota is used up (retry_after says
    # when it frees up, null when only an admin can help); an API key lacks the scope.
    INSUFFICIENT_SCOPE = "insufficient_scope"
    # Governance (governance/): the connection's token expired without an ``auth`` refresh;
    # the caller lost access to a session it was following (removed, or it became private);
    # an invitation or share link that expired, was revoked, or has no uses left.
    TOKEN_EXPIRED = "token_expired"
    ACCESS_REVOKED = "access_revoked"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED_UP = "used_up"
    # Conversation intelligence: semantic search asked of a server without the ``semantic``
    # extra (or with it turned off by PARLEY_SEMANTIC=false).
    SEMANTIC_UNAVAILABLE = "semantic_unavailable"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses. 4xxx are Parley's own."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009  # over the hard transport limit: the frame was never read
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # graceful shutdown: reconnect (elsewhere) and resume by seq
    UNAUTHENTICATED = 4001  # no valid token within the auth timeout, or a bad token
    SLOW_CONSUMER = 4008  # the send queue overflowed: reconnect and resume by seq
    SESSION_GONE = 4004  # reserved: the session was deleted while subscribed
    TOO_MANY_ERRORS = 4029  # the client kept sending bad frames or exceeding the rate
    QUOTA_EXCEEDED = 4030  # the tenant has as many open connections as its quota allows
    KEY_REVOKED = 4031  # the API key this connection authenticated with was revoked
    # The /yjs endpoint. y-websocket (v3) stops reconnecting on 4400-4499 and retries on others.
    DOC_UNAUTHENTICATED = 4401  # bad or expired token: get a new one
    DOC_NOT_FOUND = 4404  # no such session in the caller's tenant (or it was deleted)
    DOC_FORBIDDEN = 4403  # lost access to the session, or the API key lacks sessions:read
    DOC_QUOTA_EXCEEDED = 4429  # the tenant has as many open connections as its quota allows
    DOC_UNAVAILABLE = 4503  # the document could not be loaded from storage: retry later
    # Governance: the token expired and no ``auth`` frame refreshed it.
    TOKEN_EXPIRED = 4002


class ParleyError(Exception):
    """Base of all errors a client may see."""

    code: ErrorCode = ErrorCode.INTERNAL
    status: int = 500

    def __init__(self, message: str, *, details: Any = None, code: ErrorCode | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The JSON body / frame fields for this error."""
        body: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class ProtocolError(ParleyError):
    code = ErrorCode.INVALID_FRAME
    status = 400


class InvalidRequest(ParleyError):
    code = ErrorCode.INVALID_REQUEST
    status = 422


class AuthError(ParleyError):
    code = ErrorCode.UNAUTHENTICATED
    status = 401


class NotFound(ParleyError):
    code = ErrorCode.NOT_FOUND
    status = 404


class Forbidden(ParleyError):
    code = ErrorCode.FORBIDDEN
    status = 403


class Conflict(ParleyError):
    code = ErrorCode.CONFLICT
    status = 409


class Gone(ParleyError):
    """An invitation or share link that can no longer be used (expired, revoked, used up)."""

    code = ErrorCode.EXPIRED
    status = 410


class RateLimited(ParleyError):
    code = ErrorCode.RATE_LIMITED
    status = 429

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message, details={"retry_after": round(retry_after, 3)})
        self.retry_after = retry_after


# -- attachments (attachments/) ---------------------------------------------------------------
# Appended here, not in the enum above, so other areas' additions merge without conflict.


class PayloadTooLarge(ParleyError):
    """An upload over the per-file limit, or one the tenant's storage quota cannot hold."""

    code = ErrorCode.FILE_TOO_LARGE
    status = 413


class UnsupportedMediaType(ParleyError):
    """Content whose sniffed type is not on the allow-list (whatever it was declared as)."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    status = 415


class UploadTooLarge(ParleyError):
    """An upload over its size limit (imports)."""

    code = ErrorCode.UPLOAD_TOO_LARGE
    status = 413


class SemanticUnavailable(ParleyError):
    """Semantic search is not installed or turned off on this server (it is optional)."""

    code = ErrorCode.SEMANTIC_UNAVAILABLE
    status = 501


class QuotaExceeded(ParleyError):
    """A tenant quota is used up. ``retry_after`` is None when waiting will not help."""

    code = ErrorCode.QUOTA_EXCEEDED
    status = 429

    def __init__(self, message: str, *, quota: str, limit: float, retry_after: float | None):
        super().__init__(
            message,
            details={
                "quota": quota,
                "limit": limit,
                "retry_after": None if retry_after is None else round(retry_after, 3),
            },
        )
        self.retry_after = retry_after
