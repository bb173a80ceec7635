"""The LLM relay: assistants in sessions, provider answers streamed live to every participant.

See docs/relay.md. The socket handlers reach the relay through the hub (they get nothing
else), the same way collaborative documents are reached: :func:`attach` and :func:`relay_of`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from parley.errors import ParleyError

if TYPE_CHECKING:
    from parley.relay.service import Relay

_RELAYS: weakref.WeakKeyDictionary[object, Relay] = weakref.WeakKeyDictionary()


def attach(owner: object, relay: Relay) -> None:
    """Make ``relay`` reachable from ``owner`` (the hub)."""
    _RELAYS[owner] = relay


def relay_of(owner: object) -> Relay:
    """The relay attached to ``owner``; an error frame if this server runs none."""
    relay = _RELAYS.get(owner)
    if relay is None:
        raise ParleyError("the LLM relay is not enabled on this server")
    return relay


def maybe_relay_of(owner: object) -> Relay | None:
    """The relay attached to ``owner``, or None."""
    return _RELAYS.get(owner)
