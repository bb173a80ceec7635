"""Time-ordered identifiers and timestamps."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

_last_ms = 0
_counter = 0


def new_id() -> str:
    """A UUIDv7 string: sorts by creation time, unique without coordination (RFC 9562).

    Within one millisecond a 12-bit counter keeps ids from one process strictly increasing.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms = _last_ms
        _counter += 1
        if _counter > 0xFFF:
            ms += 1
            _counter = 0
    else:
        _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
    _last_ms = ms
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, the one time format on the wire."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
