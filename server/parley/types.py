"""Shared type aliases for the ASGI boundary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ASGIMessage = MutableMapping[str, Any]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
Scope = MutableMapping[str, Any]
