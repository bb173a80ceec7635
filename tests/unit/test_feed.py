"""The session feed's ordering rules: reorder, drop duplicates, fill gaps, subscribe floors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from parley.hub.connection import Connection
from parley.hub.events import OutEvent
from parley.hub.feed import SessionFeed
from parley.protocol.codec import Encoding


def frame(seq: int, name: str = "message.created") -> dict[str, Any]:
    return {"type": "event", "session": "s", "seq": seq, "event": name, "data": {}}


class Sink:
    """The ASGI ``send`` of a fake socket: records the seqs written."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: Any) -> None:
        if message["type"] == "websocket.send":
            self.seqs.append(orjson.loads(message["text"])["seq"])
            self._changed.set()

    async def wait(self, count: int) -> list[int]:
        async with asyncio.timeout(5):
            while len(self.seqs) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.seqs


def connection(sink: Sink) -> Connection:
    return Connection(sink, conn_id="c", encoding=Encoding.JSON, max_queue=1000)


def feed_with(storage: list[dict[str, Any]], grace: float = 0.01) -> SessionFeed:
    async def events_after(session_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        return [f for f in storage if f["seq"] > after][:limit]

    return SessionFeed("t", "s", "ch", events_after, gap_grace=grace)


async def test_out_of_order_events_are_delivered_in_seq_order_once() -> None:
    sink = Sink()
    feed = feed_with([])
    feed.initialise(0)
    sub = feed.add_replaying(connection(sink))
    feed.go_live(sub, 0)
    for seq in (2, 1, 1, 4, 3, 2, 5):
        feed.accept(OutEvent.from_frame(frame(seq)))
    assert await sink.wait(5) == [1, 2, 3, 4, 5]
    assert feed.pending == {}


async def test_a_gap_that_stays_open_is_filled_from_storage() -> None:
    storage = [frame(i) for i in range(1, 7)]
    sink = Sink()
    feed = feed_with(storage)
    feed.initialise(0)
    feed.go_live(feed.add_replaying(connection(sink)), 0)
    feed.accept(OutEvent.from_frame(frame(1)))
    feed.accept(OutEvent.from_frame(frame(5)))  # 2-4 were lost by the broker
    feed.accept(OutEvent.from_frame(frame(6)))
    assert await sink.wait(6) == [1, 2, 3, 4, 5, 6]


async def test_events_before_initialisation_wait_and_stale_ones_are_dropped() -> None:
    sink = Sink()
    feed = feed_with([])
    sub = feed.add_replaying(connection(sink))
    feed.accept(OutEvent.from_frame(frame(3)))
    feed.accept(OutEvent.from_frame(frame(4)))
    feed.initialise(3)  # storage says 3 is already committed (and was replayed)
    feed.go_live(sub, 3)
    feed.accept(OutEvent.from_frame(frame(5)))
    assert await sink.wait(2) == [4, 5]


async def test_subscriber_ahead_of_the_feed_never_gets_a_seq_twice() -> None:
    """Storage (read by the replay) can be ahead of the broker: the client already has 1-3
    while the feed has delivered only 1. Seqs 2 and 3 arriving later must be skipped."""
    sink = Sink()
    feed = feed_with([])
    feed.initialise(0)
    feed.accept(OutEvent.from_frame(frame(1)))
    sub = feed.add_replaying(connection(sink))
    feed.go_live(sub, 3)
    for seq in (2, 3, 4, 5):
        feed.accept(OutEvent.from_frame(frame(seq)))
    assert await sink.wait(2) == [4, 5]
    assert feed.live, "the subscription went live at seq 4"


async def test_events_during_replay_are_buffered_and_flushed_after_the_floor() -> None:
    sink = Sink()
    feed = feed_with([])
    feed.initialise(2)
    sub = feed.add_replaying(connection(sink))
    for seq in (3, 4, 5):
        feed.accept(OutEvent.from_frame(frame(seq)))
    assert sink.seqs == []
    feed.go_live(sub, 4)  # the replay read storage up to 4
    feed.accept(OutEvent.from_frame(frame(6)))
    assert await sink.wait(2) == [5, 6]


async def test_ephemeral_events_go_to_live_subscribers_only() -> None:
    live_sink, replaying_sink = Sink(), Sink()
    feed = feed_with([])
    feed.initialise(0)
    feed.go_live(feed.add_replaying(connection(live_sink)), 0)
    feed.add_replaying(connection(replaying_sink))
    feed.accept(OutEvent.from_frame({**frame(0, "typing"), "ephemeral": True}))
    assert await live_sink.wait(1) == [0]
    assert replaying_sink.seqs == []


async def test_ephemeral_events_reach_a_subscriber_waiting_for_the_feed() -> None:
    """Acked and ahead of the feed (storage was ahead of the broker): stream deltas and typing
    must not be lost while the feed catches up."""
    sink = Sink()
    feed = feed_with([])
    feed.initialise(0)
    sub = feed.add_replaying(connection(sink))
    feed.go_live(sub, 2)
    assert not feed.live
    feed.accept(OutEvent.from_frame({**frame(0, "stream.delta"), "ephemeral": True}))
    for seq in (1, 2, 3):
        feed.accept(OutEvent.from_frame(frame(seq)))
    assert await sink.wait(2) == [0, 3]


def delivered_feed(last: int) -> SessionFeed:
    feed = feed_with([])
    feed.initialise(0)
    feed.note_history(0, 0)
    for seq in range(1, last + 1):
        feed.accept(OutEvent.from_frame(frame(seq)))
    return feed


async def test_recent_events_answer_a_resume_only_when_they_are_all_of_it() -> None:
    feed = delivered_feed(100)  # more than the feed keeps
    assert [e.seq for e in feed.recent_after(95, 100, 0) or []] == [96, 97, 98, 99, 100]
    assert feed.recent_after(100, 100, 0) == []  # nothing missed
    assert feed.recent_after(10, 100, 0) is None  # older than what memory holds
    assert feed.recent_after(95, 101, 0) is None  # storage has an event the feed has not
    assert feed.recent_after(101, 101, 0) is None
    assert feed.recent_after(95, 100, 1) is None  # a newer stored history than memory's


async def test_a_newer_history_revision_drops_the_recent_events() -> None:
    feed = delivered_feed(3)
    feed.note_history(0, 3)
    assert [e.seq for e in feed.recent_after(1, 3, 0) or []] == [2, 3]
    feed.note_history(1, 3)  # a purge rewrote stored events
    assert feed.recent_after(1, 3, 1) is None
    feed.note_history(0, 3)  # a reader from before the purge does not turn it back
    assert feed.recent_after(1, 3, 0) is None
    feed.accept(OutEvent.from_frame(frame(4)))
    assert [e.seq for e in feed.recent_after(3, 4, 1) or []] == [4]


async def test_events_in_flight_through_a_purge_are_not_kept() -> None:
    """Events 4 and 5 were committed before a purge and reach the feed after a subscriber
    read the purge's revision (and last seq 5): their content may be what the purge blanked,
    so a resume must read storage for them; event 6, committed after, is kept."""
    feed = delivered_feed(3)
    feed.note_history(1, 5)
    feed.accept(OutEvent.from_frame(frame(4)))
    feed.accept(OutEvent.from_frame(frame(5)))
    assert feed.delivered == 5
    assert feed.recent_after(3, 5, 1) is None
    assert feed.recent_after(4, 5, 1) is None
    feed.accept(OutEvent.from_frame(frame(6)))
    assert feed.recent_after(4, 6, 1) is None
    assert [e.seq for e in feed.recent_after(5, 6, 1) or []] == [6]


async def test_a_skipped_seq_empties_the_recent_events() -> None:
    feed = delivered_feed(3)
    feed.delivered = 5  # as after a subscriber's floor moved the feed past 4 and 5
    feed.accept(OutEvent.from_frame(frame(6)))
    assert feed.recent_after(2, 6, 0) is None
    assert [e.seq for e in feed.recent_after(5, 6, 0) or []] == [6]
