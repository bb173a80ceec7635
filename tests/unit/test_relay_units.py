"""The relay's pure parts: text repair, coalescing, the client rule, context, prices, keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from parley.config import Settings
from parley.relay.assembler import StreamAssembler
from parley.relay.assistants import AssistantSpec, Trigger
from parley.relay.context import Turn, branch, build_request, estimate_tokens
from parley.relay.prices import Price, PriceTable
from parley.relay.providers.anthropic import alternate
from parley.relay.providers.base import ChatMessage, scrub, sdk_call
from parley.relay.registry import ProviderRegistry
from parley.relay.state import BusyPolicy
from parley.relay.text import Coalescer, SurrogateJoiner

# -- text ------------------------------------------------------------------------------------


def test_surrogate_pairs_split_across_deltas_are_joined() -> None:
    j = SurrogateJoiner()
    assert j.feed("a\ud83d") == "a"
    assert j.feed("\ude00b") == "\U0001f600b"
    assert j.feed("plain") == "plain"
    assert j.feed("x\ude00") == "x\ufffd", "a lone low half becomes U+FFFD"
    assert j.feed("\ud83d") == ""
    assert j.flush() == "\ufffd", "a lone high half at the end too"


async def test_coalescer_batches_by_size_and_time_and_flushes_on_close() -> None:
    out: asyncio.Queue[str] = asyncio.Queue()

    async def flush(text: str) -> None:
        await out.put(text)

    async def next_batch() -> str:
        return await asyncio.wait_for(out.get(), 2)

    c = Coalescer(flush, interval=10.0, max_bytes=8)
    c.add("first", now=True)
    assert await next_batch() == "first"
    c.add("ab")
    c.add("cdefgh")  # 8 bytes waiting: they go at once
    assert await next_batch() == "abcdefgh"
    c.add("tail")  # would wait for the (long) interval, but the close flushes it
    await c.close()
    assert await next_batch() == "tail"

    c = Coalescer(flush, interval=0.01, max_bytes=1000)
    c.add("x")
    c.add("y")
    assert await next_batch() == "xy", "the timer sends what waited"
    await c.close()
    assert out.empty()


# -- the client rule -------------------------------------------------------------------------


def ev(name: str, **data: Any) -> dict[str, Any]:
    return {"type": "event", "event": name, "data": data, "ephemeral": True}


def delta(offset: int, text: str, sid: str = "s1") -> dict[str, Any]:
    return ev(
        "stream.delta", stream_id=sid, offset=offset, end=offset + len(text.encode()), text=text
    )


def test_assembler_applies_snapshot_then_drops_duplicates_and_holds_gaps() -> None:
    a = StreamAssembler()
    # A late joiner: deltas that arrived before the snapshot are held (and ask for one).
    assert a.feed(delta(10, "ccc")) is True
    assert a.feed(delta(13, "dd")) is False, "one request at a time"
    a.feed(
        ev("stream.snapshot", streams=[{"stream_id": "s1", "text": "aaaaabbbbbccc", "length": 13}])
    )
    assert a.text("s1") == "aaaaabbbbbcccdd"
    assert a.duplicates == 1
    a.feed(delta(13, "dd"))  # a duplicate after the snapshot
    a.feed(delta(15, "é"))
    assert a.text("s1") == "aaaaabbbbbcccddé"
    assert a.streams["s1"].end == 17
    a.feed(ev("message.created", message={"text": "final", "metadata": {"stream_id": "s1"}}))
    a.feed(delta(17, "late"))
    assert a.streams["s1"].final == "final"
    assert a.text("s1") == "aaaaabbbbbcccddé", "nothing applies after the end"


def test_assembler_from_the_start() -> None:
    a = StreamAssembler()
    a.feed(ev("stream.started", stream_id="s2"))
    for piece, offset in (("he", 0), ("llo", 2)):
        assert a.feed(delta(offset, piece, "s2")) is False
    assert a.text("s2") == "hello"
    assert a.gaps == 0


# -- context ---------------------------------------------------------------------------------


def spec(**kw: Any) -> AssistantSpec:
    values: dict[str, Any] = {
        "id": "a1",
        "tenant_id": "t",
        "session_id": "s",
        "name": "Sage",
        "user_id": "assistant.a1",
        "provider": "openai",
        "model": "unknown-model",
        "system_prompt": "Be brief.",
        "params": {},
        "trigger": Trigger.MENTION,
        "busy_policy": BusyPolicy.QUEUE,
        "context_window": None,
        "max_output_tokens": None,
    }
    values.update(kw)
    return AssistantSpec(**values)


def turn(seq: int, text: str, author: str = "alice", parent: int | None = None) -> Turn:
    return Turn(
        f"m{seq}",
        seq,
        author,
        author.title(),
        f"m{parent}" if parent else None,
        text,
        deleted=False,
    )


def test_branch_is_the_main_line_before_the_root_then_the_chain() -> None:
    turns = [
        turn(1, "q1"),
        turn(2, "a1", "assistant.a1", parent=1),
        turn(3, "q2"),
        turn(4, "side branch from q1", parent=1),
        turn(5, "later on the main line"),
    ]
    # A linear prompt sees everything before it, answers included.
    assert [t.seq for t in branch(turns, turns[4])] == [1, 2, 3, 4, 5]
    # A message in a branch off q1 sees q1's past, q1, and its own chain only.
    reply = turn(6, "reply in the branch", parent=4)
    assert [t.seq for t in branch([*turns, reply], reply)] == [1, 4, 6]
    # Deleted messages are left out.
    gone = Turn("m7", 7, "bob", "Bob", None, "", deleted=True)
    last = turn(8, "after a deletion")
    assert [t.seq for t in branch([*turns, gone, last], last)] == [1, 2, 3, 4, 5, 8]


def test_request_names_speakers_and_trims_the_oldest_first() -> None:
    turns = [turn(i, "x" * 400, "bob" if i % 2 else "alice") for i in range(1, 40)]
    turns.append(turn(40, "the question"))
    built = build_request(
        spec(context_window=1000, max_output_tokens=200),
        turns,
        ["Alice", "Bob", "Sage (assistant)"],
        default_window=8192,
        default_max_output=1024,
    )
    req = built.request
    assert req.messages[-1] == ChatMessage("user", "Alice: the question")
    assert built.dropped > 0
    assert built.estimated_input_tokens <= 1000 - 200
    kept = [t.seq for t in turns][-(len(req.messages)) :]
    assert kept[-1] == 40, "the newest messages are kept"
    assert "Be brief." in req.system
    assert "Participants: Alice, Bob, Sage (assistant)." in req.system
    assert req.max_output_tokens == 200


def test_own_answers_are_assistant_turns_and_a_huge_prompt_is_cut_from_the_front() -> None:
    turns = [turn(1, "hi"), turn(2, "hello!", "assistant.a1"), turn(3, "y" * 10_000)]
    built = build_request(
        spec(context_window=1024, max_output_tokens=100),
        turns,
        [],
        default_window=8192,
        default_max_output=100,
    )
    roles = [m.role for m in built.request.messages]
    assert roles[-1] == "user"
    assert built.request.messages[-1].content.startswith("\u2026")
    assert built.estimated_input_tokens <= 1024
    both = build_request(
        spec(), [*turns[:2], turn(3, "q")], [], default_window=8192, default_max_output=100
    )
    assert [m.role for m in both.request.messages] == ["user", "assistant", "user"]
    assert both.request.messages[1].content == "hello!"


def test_token_estimate() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("日本") == 2  # 6 bytes


def test_mentions() -> None:
    s = spec(name="Sage")
    assert s.mentioned_in("hey @sage, help")
    assert s.mentioned_in("@Sage")
    assert not s.mentioned_in("hey @sages")
    assert not s.mentioned_in("mail me at x@sage.io")
    assert not s.mentioned_in("sage")


# -- prices and keys -------------------------------------------------------------------------


def test_prices_by_provider_model_prefix_and_unknown(tmp_path: Path) -> None:
    table = PriceTable(prices={"openai:gpt-4o-mini": Price(0.15, 0.6), "claude": Price(3, 15)})
    assert table.cost("openai", "gpt-4o-mini-2024-07-18", 1_000_000, 500_000) == {
        "currency": "USD",
        "input": 0.15,
        "output": 0.3,
        "total": 0.45,
    }
    assert table.cost("anthropic", "claude-x", 1000, 1000) is not None
    assert table.cost("openai", "unknown", 10, 10) is None
    assert table.cost("scripted", "anything", 10, 10)["total"] == 0.0  # type: ignore[index]
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"currency": "EUR", "models": {"m": {"input": 1, "output": 2}}}))
    from_file = PriceTable(path)
    assert from_file.cost("openai", "m", 1_000_000, 0) == {
        "currency": "EUR",
        "input": 1.0,
        "output": 0.0,
        "total": 1.0,
    }


def test_keys_go_only_with_their_base_url(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(
        json.dumps(
            {
                "tenants": {
                    "acme": {
                        "openai": {
                            "api_key": "sk-tenant-acme-000000",
                            "base_url": "http://acme.invalid/v1",
                        }
                    }
                }
            }
        )
    )
    settings = Settings(
        relay_openai_api_key="sk-env-0000000000",  # type: ignore[arg-type]
        relay_openai_base_url="http://operator.invalid/v1",
        relay_credentials_file=creds,
    )
    reg = ProviderRegistry(settings)
    acme = reg.credentials_for("openai", "acme")
    other = reg.credentials_for("openai_responses", "other")
    assert (acme.api_key, acme.base_url) == ("sk-tenant-acme-000000", "http://acme.invalid/v1")
    assert (other.api_key, other.base_url) == ("sk-env-0000000000", "http://operator.invalid/v1")
    assert "sk-" not in repr(acme), "credentials never print their key"
    assert "sk-env" not in repr(settings)
    assert "sk-env" not in str(settings.safe_summary())
    assert reg.get("openai", "acme") is reg.get("openai", "acme"), "clients are pooled"


async def test_sdks_are_imported_in_threads_only_for_configured_providers() -> None:
    bare = ProviderRegistry(Settings())
    await bare.warm()
    assert bare._imports == {}, "no keys, URLs or credentials file: nothing imported at start"
    provider = await bare.provider("anthropic", "acme")  # imported on first use instead
    assert provider.kind == "anthropic"
    assert set(bare._imports) == {"anthropic"}
    await bare.aclose()

    configured = ProviderRegistry(Settings(relay_openai_base_url="http://operator.invalid/v1"))
    await configured.warm()
    assert set(configured._imports) == {"openai"}
    assert configured._imports["openai"].done(), "a configured process imports at start"
    assert (await configured.provider("openai", "acme")) is configured.get("openai", "acme")
    await configured.aclose()


def test_anthropic_turns_alternate_and_start_with_the_user() -> None:
    turns = alternate(
        [
            ChatMessage("assistant", "earlier answer"),
            ChatMessage("user", "a: one"),
            ChatMessage("user", "b: two"),
        ]
    )
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == "a: one\n\nb: two"


def test_sdk_call_sends_fields_the_sdk_does_not_name_in_the_body() -> None:
    def strict(*, model: str, extra_body: Any = None) -> None: ...

    assert sdk_call(strict, {"model": "m"}) == {"model": "m"}
    assert sdk_call(strict, {"model": "m", "top_k": 3}) == {
        "model": "m",
        "extra_body": {"top_k": 3},
    }


def test_scrub_masks_given_secrets_and_key_shapes() -> None:
    text = scrub("key sk-abcdefgh1234 and mysecretvalue", ["mysecretvalue"])
    assert text == "key [redacted] and [redacted]"
