"""The I/O-free parts of the integrations: signatures, backoff, filters, feed cursors, rule
validation, causation and loop detection, extractive summaries."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from parley.errors import InvalidRequest
from parley.integrations import signing
from parley.integrations.automation import rules
from parley.integrations.automation.summary import summarize
from parley.integrations.filters import FeedFilter, check_patterns, type_matches
from parley.integrations.retry import backoff_delay
from parley.storage.feed_log import FeedCursor


def test_signature_verifies_and_refuses_tampering_age_and_wrong_secret() -> None:
    body = b'{"id":"d1","type":"message.created"}'
    header = signing.signature_header("whsec_a", body)
    assert signing.verify("whsec_a", body, header)
    assert not signing.verify("whsec_b", body, header)
    assert not signing.verify("whsec_a", body + b" ", header)
    old = signing.signature_header("whsec_a", body, timestamp=int(time.time()) - 301)
    assert not signing.verify("whsec_a", body, old)
    assert signing.verify("whsec_a", body, old, tolerance=400)
    rotated = f"{header},v1={'0' * 64}"
    assert signing.verify("whsec_a", body, rotated), "any v1 may match during a rotation"
    for garbage in ("", "t=abc,v1=00", "v1=00", f"t={int(time.time())}"):
        assert not signing.verify("whsec_a", body, garbage)
    assert signing.new_secret() != signing.new_secret()


def test_backoff_is_bounded_exponential_with_full_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        bound = min(60.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, base=0.5, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in draws)
        assert max(draws) > bound / 2, "spread over the whole range"


def test_event_type_patterns_and_feed_filters() -> None:
    assert check_patterns(["message.*", "message.*", "*"]) == ["message.*", "*"]
    for bad in ([], ["Message"], ["message.*.x"], ["a" * 65], ["message created"]):
        with pytest.raises(InvalidRequest):
            check_patterns(bad)
    assert type_matches(["message.*"], "message.created")
    assert not type_matches(["message.*"], "messages.created")
    assert type_matches(["*"], "anything.at.all")
    f = FeedFilter(types=("message.*",), sessions=frozenset({"s1"}), tags=frozenset({"vip"}))
    assert f.matches("message.edited", "s1", ["vip", "x"])
    assert not f.matches("session.created", "s1", ["vip"])
    assert not f.matches("message.edited", "s2", ["vip"])
    assert not f.matches("message.edited", "s1", [])
    assert FeedFilter().matches("anything", "s9", [])


def test_feed_cursor_round_trip_order_and_garbage() -> None:
    assert FeedCursor.parse(str(FeedCursor(12, 345))) == FeedCursor(12, 345)
    assert FeedCursor(1, 999) < FeedCursor(2, 0) < FeedCursor(2, 1)
    for bad in ("", "1", "1.", ".1", "a.b", "1.2.3", "-1.2", "9" * 60 + ".1"):
        with pytest.raises(ValueError, match="not a feed cursor"):
            FeedCursor.parse(bad)


def test_rule_validation() -> None:
    ok = rules.check_rule(
        {"name": "r", "trigger": {"text": "(?i)hi"}, "actions": [{"type": "tag", "tags": ["a"]}]}
    )
    assert ok.trigger is not None
    assert ok.trigger.events == ["message.created"]
    with pytest.raises(InvalidRequest, match="cron"):
        rules.check_rule({"name": "r", "schedule": "61 * * * *", "actions": [_digest()]})
    with pytest.raises(InvalidRequest, match="needs a session"):
        rules.check_rule(
            {
                "name": "r",
                "schedule": "0 9 * * *",
                "actions": [{"type": "post_message", "text": "x"}],
            }
        )
    six = rules.check_rule({"name": "r", "schedule": "* * * * * */10", "actions": [_digest()]})
    assert six.schedule is not None
    start = datetime(2026, 1, 1, 8, 59, 59, tzinfo=UTC)
    assert rules.next_run("0 9 * * *", start) == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def _digest() -> dict[str, object]:
    return {"type": "digest", "session": "s1"}


def test_matching_by_type_text_tag_participant_and_the_pattern_timeout() -> None:
    frame = {
        "event": "message.created",
        "actor": "ann",
        "data": {"message": {"text": "The build is URGENT", "metadata": {}}},
    }
    t = rules.Trigger(text="(?i)urgent", tag="Ops", participant="ann")
    assert rules.matches(t, frame, ["ops"])
    assert not rules.matches(t, frame, ["dev"])
    assert not rules.matches(t, {**frame, "actor": "bob"}, ["ops"])
    assert not rules.matches(rules.Trigger(events=["session.*"]), frame, [])
    assert not rules.matches(
        rules.Trigger(events=["*"], text="x"), {"event": "session.created"}, []
    )
    evil = rules.Trigger(text="(a+)+$")
    slow = {**frame, "data": {"message": {"text": "a" * 5000 + "!"}}}
    with pytest.raises(rules.PatternTimeout):
        rules.matches(evil, slow, [])


def test_causation_and_loop_reasons() -> None:
    human = {"event": "message.created", "actor": "ann", "data": {"message": {"metadata": {}}}}
    assert rules.causation_of(human) == rules.Causation()
    stamp = rules.Causation().then("A")
    assert stamp == {"rule": "A", "chain": ["A"], "depth": 1}
    by_a = {
        "event": "message.created",
        "actor": rules.BOT_USER,
        "data": {"message": {"metadata": {"automation": stamp}}},
    }
    cause = rules.causation_of(by_a)
    assert cause.chain == ("A",)
    assert rules.loop_reason("B", cause, 3) is None
    assert "own output" in (rules.loop_reason("A", cause, 3) or "")
    deep = rules.Causation(("A", "B", "C"))
    assert "depth limit of 3" in (rules.loop_reason("D", deep, 3) or "")
    tagged = {"event": "session.updated", "actor": rules.BOT_USER, "data": {"automation": stamp}}
    assert rules.causation_of(tagged).chain == ("A",)
    unstamped = {"event": "participant.joined", "actor": rules.BOT_USER, "data": {}}
    assert rules.causation_of(unstamped).unknown


def test_extractive_summary_keeps_the_central_sentences_in_order() -> None:
    texts = [
        "The printer on floor two jams on duplex jobs.",
        "Lunch is at noon.",
        "A new printer roller fixed the duplex jams before.",
        "Order the printer roller today.",
    ]
    assert summarize(texts, sentences=2) == (
        "The printer on floor two jams on duplex jobs. "
        "A new printer roller fixed the duplex jams before."
    )
    assert summarize([]) == ""
    assert len(summarize(["word " * 2000], max_chars=100)) == 100
