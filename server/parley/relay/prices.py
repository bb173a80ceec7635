"""The price table: what an answer cost, from token usage. The operator owns the numbers.

``PARLEY_RELAY_PRICE_FILE`` names a JSON file, re-read when it changes::

    {"currency": "USD",
     "models": {"openai:gpt-4o-mini": {"input": 0.15, "output": 0.60},
                "claude-sonnet-4": {"input": 3.0, "output": 15.0}}}

Prices are per million tokens. A model is looked up as ``provider:model``, then ``model``, then
by the longest key that is a prefix of either (so ``gpt-4o-mini`` prices
``gpt-4o-mini-2024-07-18``). A model not in the table has no cost (``null``), never a guess;
the scripted provider always costs 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

log = structlog.get_logger("parley.relay")


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # per million tokens
    output: float


class PriceTable:
    """Prices from the operator's file (or given directly, in tests)."""

    def __init__(self, path: Path | None = None, *, prices: dict[str, Price] | None = None) -> None:
        self.path = path
        self.currency = "USD"
        self._prices: dict[str, Price] = dict(prices or {})
        self._mtime: float | None = None

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by ``provider``, or None when the table has none."""
        if provider == "scripted":
            return Price(0.0, 0.0)
        self._reload()
        for key in (f"{provider}:{model}", model):
            if key in self._prices:
                return self._prices[key]
        best: tuple[int, Price] | None = None
        for key, price in self._prices.items():
            if (f"{provider}:{model}".startswith(key) or model.startswith(key)) and (
                best is None or len(key) > best[0]
            ):
                best = (len(key), price)
        return best[1] if best else None

    def cost(
        self, provider: str, model: str, input_tokens: int | None, output_tokens: int | None
    ) -> dict[str, Any] | None:
        """``{"currency", "input", "output", "total"}`` for the usage, or None without a price."""
        price = self.lookup(provider, model)
        if price is None or input_tokens is None or output_tokens is None:
            return None
        cin = input_tokens * price.input / 1_000_000
        cout = output_tokens * price.output / 1_000_000
        return {
            "currency": self.currency,
            "input": round(cin, 8),
            "output": round(cout, 8),
            "total": round(cin + cout, 8),
        }

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            data = orjson.loads(self.path.read_bytes())
            models = data.get("models", {})
            self._prices = {
                str(name): Price(float(p["input"]), float(p["output"]))
                for name, p in models.items()
            }
            self.currency = str(data.get("currency", "USD"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("price file unreadable; keeping the previous prices", error=str(exc))
            return
        log.info("price table loaded", models=len(self._prices))
