"""The bot SDK's logic without a server: backoff, resume position, mentions, error mapping,
and the summarizer example's algorithm."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest

from parley.client import (
    Backoff,
    Conflict,
    InvalidRequest,
    Message,
    NotFound,
    ProtocolViolation,
    RateLimited,
    ServerError,
    Unauthenticated,
)
from parley.client.errors import error_from
from parley.client.tracker import SeqTracker
from parley.errors import ErrorCode


def test_backoff_grows_exponentially_with_full_jitter_and_resets() -> None:
    backoff = Backoff(base=0.5, factor=2.0, max_delay=4.0, rng=random.Random(7))
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [backoff.next_delay() for _ in caps]
    for delay, cap in zip(delays, caps, strict=True):
        assert backoff.min_delay <= delay <= cap
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_spreads_a_crowd() -> None:
    first = [Backoff(rng=random.Random(seed)).next_delay() for seed in range(50)]
    assert max(first) - min(first) > 0.2  # fifty bots do not come back in one instant


def test_tracker_drops_duplicates_and_counts_gaps() -> None:
    tracker = SeqTracker(last_seq=3)
    assert [tracker.accept(seq) for seq in (3, 4, 4, 5, 2)] == [False, True, False, True, False]
    assert tracker.last_seq == 5
    assert tracker.duplicates == 3
    assert tracker.accept(8)
    assert tracker.gaps == 1


def test_tracker_starts_from_the_subscribe_ack_and_never_moves_back() -> None:
    tracker = SeqTracker()
    tracker.acked(10)  # subscribed "from now"
    assert not tracker.accept(10)
    assert tracker.accept(11)
    tracker.acked(9)  # a resubscribe ack cannot move the position back
    assert tracker.last_seq == 11


def _message(text: str) -> Message:
    return Message.from_dict(
        {"id": "m1", "session": "s1", "seq": 4, "author": "alice", "text": text}
    )


@pytest.mark.parametrize(
    ("text", "mentioned"),
    [
        ("@bot hi", True),
        ("hi @BOT!", True),
        ("hi @bot-2", False),
        ("mail me at x@bot.com", False),
        ("@@bot", False),
        ("@botany", False),
        ("ask @Summary Bot", True),
    ],
)
def test_mentions_match_whole_names_in_any_case(text: str, mentioned: bool) -> None:
    assert _message(text).mentions("bot", "Summary Bot") is mentioned


def test_without_mentions_tidies_the_text() -> None:
    assert _message("@bot   please  summarize @bot").without_mentions("bot") == "please summarize"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (ErrorCode.UNAUTHENTICATED, Unauthenticated),
        (ErrorCode.NOT_FOUND, NotFound),
        (ErrorCode.SESSION_ARCHIVED, Conflict),
        (ErrorCode.ASSISTANT_BUSY, Conflict),
        (ErrorCode.TEXT_TOO_LONG, InvalidRequest),
        (ErrorCode.INVALID_FRAME, ProtocolViolation),
        (ErrorCode.GENERATION_LIMIT, RateLimited),
    ],
)
def test_error_codes_map_to_typed_exceptions(code: ErrorCode, cls: type[ServerError]) -> None:
    err = error_from({"code": str(code), "message": "nope", "details": {"x": 1}}, status=409)
    assert type(err) is cls
    assert (err.code, err.message, err.details, err.status) == (str(code), "nope", {"x": 1}, 409)


def test_every_server_error_code_has_a_typed_exception_or_the_base() -> None:
    for code in ErrorCode:
        assert isinstance(error_from({"code": str(code), "message": "m"}), ServerError)
    limited = error_from({"code": "rate_limited", "message": "m", "details": {"retry_after": 2.5}})
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 2.5


def _summarize_bot() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "examples" / "summarize_bot.py"
    spec = importlib.util.spec_from_file_location("summarize_bot", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_picks_the_sentences_with_the_most_frequent_words_in_order() -> None:
    bot = _summarize_bot()
    texts = [
        "Hi all!",
        "The deploy broke the search index. Coffee later?",
        "Rebuilding the search index takes an hour.",
        "lol",
        "After the deploy we rebuild the search index and check it.",
    ]
    assert bot.summarize(texts, 2) == [
        "The deploy broke the search index.",
        "After the deploy we rebuild the search index and check it.",
    ]
    assert bot.summarize(["ok", "yes", "  "], 3) == []
    assert bot.summarize(["Same thing.", "Same thing."], 3) == ["Same thing."]
