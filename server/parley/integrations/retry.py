"""When to try a failed webhook delivery again (no I/O): exponential backoff, full jitter."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (a uniform draw below the exponential bound) spreads the retries of many
    deliveries that failed together, so a receiver coming back is not hit by all at once.
    """
    bound = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, bound)
