"""Builders of server frames, so every frame of one type has one shape."""

from __future__ import annotations

from typing import Any

from parley.errors import ParleyError


def ack(ref: str | int | None, **result: Any) -> dict[str, Any]:
    """The answer to a client frame that succeeded (sent only after any commit)."""
    return {"type": "ack", "ref": ref, **result}


def error(ref: str | int | None, err: ParleyError) -> dict[str, Any]:
    """The answer to a client frame that failed; the connection stays usable."""
    return {"type": "error", "ref": ref, **err.to_dict()}


def pong(ref: str | int | None, server_time: str) -> dict[str, Any]:
    return {"type": "pong", "ref": ref, "time": server_time}
