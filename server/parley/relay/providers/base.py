"""The provider interface: one streaming model call as an async iterator of typed events.

Contract of :meth:`Provider.stream` (``tests/unit/test_relay_providers.py`` checks it against a
fake server speaking each API's exact wire format):

* It yields ``TextDelta``, ``ToolCallDelta`` and ``Usage`` events in the order the provider sent
  them, then exactly one terminal event: ``Finish`` (the answer is complete) or
  ``StreamError`` (it is not). Nothing follows the terminal event.
* It never raises for a provider failure (HTTP status, refused connection, timeout, a malformed
  or truncated stream, an error event inside the stream): each becomes a ``StreamError`` whose
  ``retryable`` says whether the same request may succeed later (429, 5xx, overloaded,
  connection failures). Cancellation propagates as usual.
* ``StreamError.message`` never contains the API key: providers scrub it (and anything shaped
  like a key) before the message leaves them, because it is logged and shown to participants.
* Usage may come in pieces (Anthropic sends input tokens first and output tokens last); a
  ``None`` field means "not reported in this event", not zero.
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# What the relay does with each finish reason is in docs/relay.md. Providers normalise theirs
# to these: stop (a natural end), length (output token limit), tool_calls, content_filter.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image attached to a turn, for providers whose model accepts images."""

    media_type: str  # image/png, image/jpeg, image/gif or image/webp
    data: bytes

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64()}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation as the model sees it. ``images`` go with the text as the
    provider's image blocks; the context builder only sets them when the model accepts images
    (otherwise the text carries a placeholder naming the file)."""

    role: Literal["user", "assistant"]
    content: str
    images: tuple[ImageInput, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """Everything one model call needs. ``params`` were validated when the assistant was saved."""

    model: str
    system: str
    messages: list[ChatMessage]
    max_output_tokens: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: ``index`` identifies the call; ``id`` and ``name`` arrive once,
    ``arguments`` is a fragment of the JSON arguments to append."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason


ErrorKind = Literal[
    "rate_limited",  # 429
    "overloaded",  # Anthropic 529 / overloaded_error, "server busy"
    "server",  # other 5xx
    "timeout",
    "connection",
    "auth",  # 401 / 403: a bad or missing key
    "bad_request",  # 400 / 404 / 422: the request or model name is wrong
    "protocol",  # the stream ended early or could not be read
    "provider",  # anything else the provider reported
]


@dataclass(frozen=True, slots=True)
class StreamError:
    message: str
    kind: ErrorKind
    retryable: bool
    status: int | None = None
    retry_after: float | None = None  # seconds, when the provider said


StreamEvent = TextDelta | ToolCallDelta | Usage | Finish | StreamError


class Provider(Protocol):
    """One provider API. Instances are shared by every generation that uses the same
    (kind, base URL, key), so their HTTP connections are pooled."""

    kind: str

    def stream(self, request: ProviderRequest) -> AsyncGenerator[StreamEvent, None]:
        """Call the model and yield its answer as events (see the module contract)."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""


# -- helpers shared by the SDK-backed providers ----------------------------------------------

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{6,}|sk-ant-[A-Za-z0-9_-]{6,})")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every given secret and anything shaped like a provider key masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds), if sensible."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from these APIs; the relay's backoff applies
        if 0 <= seconds <= 3600:
            return seconds
    return None


def error_body_type(body: Any) -> str | None:
    """``error.type`` (or ``error.code``) of a JSON error body, as both APIs shape it."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            for key in ("type", "code"):
                value = inner.get(key)
                if isinstance(value, str):
                    return value
    return None


def status_error(
    status: int | None,
    message: str,
    *,
    body: Any,
    headers: Mapping[str, str] | None,
    secrets: Iterable[str | None],
) -> StreamError:
    """The ``StreamError`` for an HTTP error status, or (``status`` None) for an error event
    inside a stream, classified by its ``error.type``."""
    etype = error_body_type(body) or ""
    code = status or 0
    kind: ErrorKind
    if code == 429 or etype in ("rate_limit_error", "rate_limit_exceeded"):
        kind = "rate_limited"
    elif code == 529 or etype == "overloaded_error":
        kind = "overloaded"
    elif code >= 500 or etype in ("api_error", "server_error"):
        kind = "server"
    elif code in (401, 403) or etype in ("authentication_error", "permission_error"):
        kind = "auth"
    elif code in (400, 404, 413, 422) or etype in ("invalid_request_error", "not_found_error"):
        kind = "bad_request"
    else:
        kind = "provider"
    retryable = code in RETRYABLE_STATUS or kind in ("rate_limited", "overloaded", "server")
    return StreamError(
        scrub(message, secrets)[:500],
        kind,
        retryable,
        status=status,
        retry_after=retry_after(headers),
    )


def chat_params(params: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """The subset of an assistant's parameters a provider API accepts."""
    keys = set(allowed)
    return {k: v for k, v in params.items() if k in keys and v is not None}


def sdk_call(method: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for an SDK method: fields its signature names go as arguments, the
    rest in ``extra_body``. SDK releases add and drop keyword arguments (one dropped
    ``temperature`` from Anthropic's ``create``) while the HTTP API still takes the field, so
    the request body stays exactly what the API documents whatever the installed SDK."""
    try:
        names = set(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return body
    known = {k: v for k, v in body.items() if k in names}
    extra = {k: v for k, v in body.items() if k not in names}
    if extra:
        known["extra_body"] = extra
    return known
