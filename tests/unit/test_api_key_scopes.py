"""Every frame a client may send after hello names the scope an API key needs for it."""

from __future__ import annotations

from parley.governance.apikeys import FRAME_SCOPES
from parley.protocol.frames import CLIENT_FRAME_TYPES


def test_every_client_frame_has_a_scope() -> None:
    # hello authenticates and auth refreshes a token: both come before any scope applies.
    assert set(FRAME_SCOPES) == CLIENT_FRAME_TYPES - {"hello", "auth"}
