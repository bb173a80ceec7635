"""The scripted provider: deterministic, offline, free. The embedded default and the demos use
it, so a fresh install streams answers without any key or network.

Every answer starts with ``[scripted]`` so nobody mistakes it for a model's. Parameters (set on
the assistant):

* ``reply``: the text to stream; ``{prompt}`` is replaced by the prompt's text. Default: a short
  notice that quotes the prompt.
* ``tokens``: instead of ``reply``, stream this many filler words (demos, benchmarks).
* ``token_delay``: seconds between tokens (default 0.02, so streaming is visible).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from parley.relay.providers.base import (
    Finish,
    ProviderRequest,
    StreamEvent,
    TextDelta,
    Usage,
)

PARAMS = ("reply", "tokens", "token_delay")
LABEL = "[scripted] "
DEFAULT_REPLY = (
    "This answer comes from Parley's scripted provider: no language model was called. "
    "You said: \u201c{prompt}\u201d. Configure an OpenAI, Anthropic or OpenAI-compatible "
    "provider for this assistant to get real answers."
)
_FILLER = (
    "streams tokens into the shared session so every participant sees the same text as it "
    "arrives and the finished answer becomes a durable message"
)
_WORDS = _FILLER.split()
_TOKEN = re.compile(r"\s*\S+\s*")


def script(request: ProviderRequest) -> list[str]:
    """The tokens the scripted provider streams for ``request`` (pure, deterministic)."""
    params = request.params
    count = params.get("tokens")
    if isinstance(count, int) and count > 0:
        return [LABEL] + [f"{_WORDS[i % len(_WORDS)]} " for i in range(count)]
    prompt = request.messages[-1].content if request.messages else ""
    # The relay starts each participant's turn with "Name: "; quote only what they said.
    prompt = prompt.split(": ", 1)[1] if ": " in prompt[:210] else prompt
    prompt = " ".join(prompt.split())
    if len(prompt) > 200:
        prompt = prompt[:200] + "\u2026"
    template = params.get("reply")
    text = (template if isinstance(template, str) else DEFAULT_REPLY).replace("{prompt}", prompt)
    return [LABEL, *_TOKEN.findall(text)]


class ScriptedProvider:
    """Streams :func:`script` with ``token_delay`` between tokens."""

    kind = "scripted"

    async def aclose(self) -> None:
        return None

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream the scripted answer; see ``providers.base`` for the contract."""
        delay = request.params.get("token_delay", 0.02)
        delay = float(delay) if isinstance(delay, int | float) and delay >= 0 else 0.02
        tokens = script(request)
        prompt_chars = sum(len(m.content) for m in request.messages) + len(request.system)
        yield Usage(input_tokens=max(1, prompt_chars // 4))
        emitted = 0
        for token in tokens:
            if emitted >= request.max_output_tokens:
                yield Usage(output_tokens=emitted)
                yield Finish("length")
                return
            if delay:
                await asyncio.sleep(delay)
            elif emitted % 64 == 63:
                await asyncio.sleep(0)  # let others run during long instant scripts
            yield TextDelta(token)
            emitted += 1
        yield Usage(output_tokens=emitted)
        yield Finish("stop")
