"""Each provider, through its official SDK, against the fake server's exact wire formats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from parley.relay.providers.anthropic import AnthropicProvider
from parley.relay.providers.base import (
    ChatMessage,
    Finish,
    Provider,
    ProviderRequest,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from parley.relay.providers.openai_chat import OpenAIChatProvider
from parley.relay.providers.openai_responses import OpenAIResponsesProvider
from parley.relay.providers.scripted import LABEL, ScriptedProvider
from tests.fakes.llm_server import FakeLLM, Reply

KEY = "sk-unit-test-0123456789abcdef"
REQUEST = ProviderRequest(
    model="m",
    system="Be kind.",
    messages=[ChatMessage("user", "alice: hi"), ChatMessage("assistant", "hello")],
    max_output_tokens=64,
    params={"temperature": 0.2},
)


# One fake server for the module (its start and stop dominate these tests' time).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
def llm(server: FakeLLM) -> FakeLLM:
    server.replies.clear()
    server.requests.clear()
    return server


def make(kind: str, llm: FakeLLM) -> Provider:
    if kind == "anthropic":
        return AnthropicProvider(api_key=KEY, base_url=llm.anthropic_url)
    if kind == "openai_responses":
        return OpenAIResponsesProvider(api_key=KEY, base_url=llm.openai_url)
    return OpenAIChatProvider(
        kind=kind, api_key=KEY, base_url=llm.openai_url, compatible=kind == "openai_compatible"
    )


async def collect(provider: Provider, request: ProviderRequest = REQUEST) -> list[StreamEvent]:
    try:
        return [event async for event in provider.stream(request)]
    finally:
        await provider.aclose()


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def usage_of(events: list[StreamEvent]) -> tuple[int | None, int | None]:
    inp = out = None
    for e in events:
        if isinstance(e, Usage):
            inp = e.input_tokens if e.input_tokens is not None else inp
            out = e.output_tokens if e.output_tokens is not None else out
    return inp, out


KINDS = ["openai", "openai_compatible", "openai_responses", "anthropic"]


@pytest.mark.parametrize("kind", KINDS)
async def test_text_usage_and_finish(llm: FakeLLM, kind: str) -> None:
    llm.script(Reply(chunks=["Hé", "llo", " 😀"], usage=(11, 3)))
    events = await collect(make(kind, llm))
    assert text_of(events) == "Héllo 😀"
    assert usage_of(events) == (11, 3)
    assert events[-1] == Finish("stop")
    assert all(not isinstance(e, StreamError) for e in events)
    (req,) = llm.requests
    assert KEY in req.headers["authorization"]
    body = req.body
    assert body["stream"] is True
    assert body.get("temperature") == 0.2, "sampling parameters reach the API"
    limit = {
        "openai": "max_completion_tokens",
        "openai_compatible": "max_tokens",
        "openai_responses": "max_output_tokens",
        "anthropic": "max_tokens",
    }[kind]
    assert body[limit] == 64


@pytest.mark.parametrize("kind", KINDS)
async def test_tool_calls(llm: FakeLLM, kind: str) -> None:
    llm.script(Reply(chunks=["ok"], tool_call=("lookup", ['{"a":', " 1}"])))
    events = await collect(make(kind, llm))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "lookup"
    assert calls[0].id is not None
    assert "".join(c.arguments for c in calls) == '{"a": 1}'
    assert len({c.index for c in calls}) == 1
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize("kind", KINDS)
async def test_http_errors_are_classified(llm: FakeLLM, kind: str) -> None:
    llm.script(
        Reply(status=429, headers={"retry-after": "3"}),
        Reply(status=503, error="server"),
        Reply(status=401, error="auth", message=f"Incorrect API key provided: {KEY}"),
    )
    provider = make(kind, llm)
    first = [e async for e in provider.stream(REQUEST)]
    second = [e async for e in provider.stream(REQUEST)]
    third = await collect(provider)
    assert first == [StreamError(first[0].message, "rate_limited", True, 429, 3.0)]  # type: ignore[union-attr]
    err = second[0]
    assert isinstance(err, StreamError)
    assert (err.kind, err.retryable, err.status) == ("server", True, 503)
    err = third[0]
    assert isinstance(err, StreamError)
    assert (err.kind, err.retryable, err.status) == ("auth", False, 401)
    assert KEY not in err.message
    assert "[redacted]" in err.message


@pytest.mark.parametrize("kind", ["openai", "openai_responses", "anthropic"])
async def test_an_error_inside_the_stream(llm: FakeLLM, kind: str) -> None:
    llm.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    events = await collect(make(kind, llm))
    assert text_of(events) == "one two "
    err = events[-1]
    assert isinstance(err, StreamError)
    assert err.retryable, "an overloaded/server error is worth retrying (if nothing was sent)"
    if kind == "anthropic":
        assert err.kind == "overloaded"


async def test_anthropic_overloaded_status(llm: FakeLLM) -> None:
    llm.script(Reply(status=529, error="overloaded"))
    (err,) = await collect(make("anthropic", llm))
    assert isinstance(err, StreamError)
    assert (err.kind, err.retryable) == ("overloaded", True)


@pytest.mark.parametrize("kind", KINDS)
async def test_split_utf8_in_network_writes(llm: FakeLLM, kind: str) -> None:
    llm.script(Reply(chunks=["né", "日本", "€"], split_utf8=True))
    assert text_of(await collect(make(kind, llm))) == "né日本€"


async def test_unreachable_provider_is_a_retryable_connection_error() -> None:
    provider = OpenAIChatProvider(api_key=KEY, base_url="http://127.0.0.1:9/v1", timeout=2)
    (err,) = await collect(provider)
    assert isinstance(err, StreamError)
    assert (err.kind, err.retryable) == ("connection", True)


async def test_scripted_is_deterministic_and_labelled() -> None:
    request = ProviderRequest(
        "scripted", "", [ChatMessage("user", "bob: Hi there")], 1000, {"token_delay": 0}
    )
    one = await collect(ScriptedProvider(), request)
    two = await collect(ScriptedProvider(), request)
    assert one == two
    text = text_of(one)
    assert text.startswith(LABEL)
    assert "\u201cHi there\u201d" in text
    many = ProviderRequest("scripted", "", [], 1000, {"tokens": 50, "token_delay": 0})
    events = await collect(ScriptedProvider(), many)
    assert len([e for e in events if isinstance(e, TextDelta)]) == 51
    capped = ProviderRequest("scripted", "", [], 10, {"tokens": 50, "token_delay": 0})
    assert (await collect(ScriptedProvider(), capped))[-1] == Finish("length")
