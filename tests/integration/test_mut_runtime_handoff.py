"""HandoffWriter on the real embedded Redis, called directly: what one commit does to the input
group's pending list, the output stream, the dedupe sets and the dead-letter stream (the
worker reaches it only from its thread; these tests see each effect on its own)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.runtime.handoff import Handoff, HandoffResult, HandoffWriter
from pipeline.runtime.options import Retention

NO_TRIM = Retention(mode="none")


@pytest.fixture
def streams(client: Any, prefix: str) -> dict[str, str]:
    names = {"input": f"{prefix}:in", "output": f"{prefix}:out", "dead": f"{prefix}:dead",
             "window": f"{prefix}:done:stage"}
    client.xgroup_create(names["input"], "g", id="0", mkstream=True)
    return names


def writer(client: Any, streams: dict[str, str], *, output: bool = True,
           retention: Retention = NO_TRIM, ttl: int = 600,
           windows: tuple[int, int] = (2, 1)) -> HandoffWriter:
    current, previous = windows
    return HandoffWriter(
        client, streams["input"], "g", streams["output"] if output else None, streams["dead"],
        retention, ttl,
        lambda: (f"{streams['window']}:{current}", f"{streams['window']}:{previous}"))


def deliver(client: Any, streams: dict[str, str], *events: bytes) -> list[str]:
    """Add ``events`` to the input stream and read them as consumer ``w`` (now pending)."""
    for raw in events:
        client.xadd(streams["input"], {"event": raw})
    reply = client.xreadgroup("g", "w", {streams["input"]: ">"}, count=len(events))
    return [eid.decode() for _, entries in reply for eid, _ in entries]


def pending(client: Any, streams: dict[str, str]) -> list[str]:
    rows = client.xpending_range(streams["input"], "g", min="-", max="+", count=100)
    return [row["message_id"].decode() for row in rows]


def outputs(client: Any, stream: str) -> list[bytes]:
    return [fields[b"event"] for _, fields in client.xrange(stream)]


def test_each_entry_is_acked_and_its_outputs_added_exactly_once(
    client: Any, streams: dict[str, str]
) -> None:
    ids = deliver(client, streams, b"a", b"b", b"c")
    handoffs = [Handoff(ids[0], [b"a1", b"a2"], "ev-a"), Handoff(ids[1], [b"b1"], "ev-b"),
                Handoff(ids[2], [], "ev-c")]
    w = writer(client, streams)
    assert w.commit(handoffs) == HandoffResult(acked=3, emitted=3, duplicates=0)
    assert outputs(client, streams["output"]) == [b"a1", b"a2", b"b1"]
    assert pending(client, streams) == []
    # the same hand-off again (a slow worker finishing entries a peer already handed off):
    # nothing is acked twice and no output is added twice
    assert w.commit(handoffs) == HandoffResult(acked=0, emitted=0, duplicates=0)
    assert outputs(client, streams["output"]) == [b"a1", b"a2", b"b1"]
    # nothing to hand off: nothing happens
    assert w.commit([]) == HandoffResult()
    assert client.xlen(streams["output"]) == 3


def test_a_second_entry_carrying_a_handed_off_event_id_is_acked_without_outputs(
    client: Any, streams: dict[str, str]
) -> None:
    w = writer(client, streams)
    first = deliver(client, streams, b"x")
    assert w.commit([Handoff(first[0], [b"out-1"], "ev-1")]) == HandoffResult(1, 1, 0)
    # the producer published the same event twice; and twice within one batch
    again = deliver(client, streams, b"x", b"y", b"y")
    result = w.commit([Handoff(again[0], [b"out-1"], "ev-1"),
                       Handoff(again[1], [b"out-2"], "ev-2"),
                       Handoff(again[2], [b"out-2"], "ev-2")])
    assert result == HandoffResult(acked=3, emitted=1, duplicates=2)
    assert outputs(client, streams["output"]) == [b"out-1", b"out-2"]
    assert pending(client, streams) == []
    # entries without an event id are never deduped
    plain = deliver(client, streams, b"p", b"p")
    assert w.commit([Handoff(plain[0], [b"p1"]), Handoff(plain[1], [b"p1"])]) == \
        HandoffResult(2, 2, 0)


def test_event_ids_are_remembered_for_the_current_and_the_previous_window(
    client: Any, streams: dict[str, str]
) -> None:
    ids = deliver(client, streams, b"1")
    assert writer(client, streams, ttl=600, windows=(2, 1)).commit(
        [Handoff(ids[0], [b"o"], "ev")]) == HandoffResult(1, 1, 0)
    window_2 = f"{streams['window']}:2"
    assert client.smembers(window_2) == {b"ev"}
    # the current window's set lives two windows, so it is still there as the previous one
    assert 600 < client.ttl(window_2) <= 1200
    ids = deliver(client, streams, b"2")
    assert writer(client, streams, windows=(3, 2)).commit(
        [Handoff(ids[0], [b"o"], "ev")]) == HandoffResult(1, 0, 1)
    assert not client.exists(f"{streams['window']}:3")  # a duplicate is not remembered again
    # two windows later the id is forgotten: handed off again
    ids = deliver(client, streams, b"3")
    assert writer(client, streams, windows=(4, 3)).commit(
        [Handoff(ids[0], [b"o"], "ev")]) == HandoffResult(1, 1, 0)
    assert client.smembers(f"{streams['window']}:4") == {b"ev"}
    assert outputs(client, streams["output"]) == [b"o", b"o"]


def test_a_dedupe_ttl_of_one_second_still_deduplicates(
    client: Any, streams: dict[str, str]
) -> None:
    w = writer(client, streams, ttl=1)
    ids = deliver(client, streams, b"1", b"2")
    assert w.commit([Handoff(ids[0], [b"o"], "ev"), Handoff(ids[1], [b"o"], "ev")]) == \
        HandoffResult(acked=2, emitted=1, duplicates=1)
    assert client.smembers(f"{streams['window']}:2") == {b"ev"}


def test_a_dedupe_ttl_of_zero_turns_deduplication_off(
    client: Any, streams: dict[str, str]
) -> None:
    w = writer(client, streams, ttl=0)
    ids = deliver(client, streams, b"1", b"2")
    assert w.commit([Handoff(ids[0], [b"o"], "ev"), Handoff(ids[1], [b"o"], "ev")]) == \
        HandoffResult(2, 2, 0)
    assert list(client.scan_iter(match=f"{streams['window']}:*")) == []


def test_a_stage_without_output_only_acks(client: Any, streams: dict[str, str]) -> None:
    ids = deliver(client, streams, b"1", b"2")
    w = writer(client, streams, output=False)
    assert w.commit([Handoff(ids[0], [b"ignored"], "ev-1"), Handoff(ids[1], [], "ev-2")]) == \
        HandoffResult(acked=2, emitted=0, duplicates=0)
    assert pending(client, streams) == []
    assert client.xlen(streams["input"]) == 2  # nothing was added to the input stream
    assert not client.exists(streams["output"])


def test_outputs_are_trimmed_by_the_retention(client: Any, streams: dict[str, str]) -> None:
    # approximate trimming drops whole nodes (100 entries each by default): plenty of entries
    many = [b"%d" % i for i in range(1000)]
    ids = deliver(client, streams, b"big")
    writer(client, streams, retention=Retention(mode="maxlen", maxlen=10)).commit(
        [Handoff(ids[0], many, "ev-big")])
    assert 10 <= client.xlen(streams["output"]) < 300
    # minid: entries older than the age go (ids in the far past), recent ones stay
    old = f"{streams['output']}:aged"
    for i in range(1, 501):
        client.xadd(old, {"event": b"old"}, id=f"1-{i}")
    aged = HandoffWriter(client, streams["input"], "g", old, streams["dead"],
                         Retention(mode="minid", max_age_s=3600.0), 600,
                         lambda: (f"{streams['window']}:a", f"{streams['window']}:b"))
    ids = deliver(client, streams, b"new")
    assert aged.commit([Handoff(ids[0], [b"fresh"], "ev-new")]).emitted == 1
    assert client.xlen(old) < 300
    assert outputs(client, old)[-1] == b"fresh"
    # none: everything stays
    kept = deliver(client, streams, b"k")
    writer(client, streams, retention=NO_TRIM).commit([Handoff(kept[0], many, "ev-k")])
    assert client.xlen(streams["output"]) >= 1000


def test_dead_letters_are_acked_and_moved_with_their_fields_once(
    client: Any, streams: dict[str, str]
) -> None:
    ids = deliver(client, streams, b"bad-1", b"bad-2", b"ok")
    w = writer(client, streams)
    letters = [(ids[0], {"event": b"bad-1", "reason": "no good", "attempts": "5"}),
               (ids[1], {"event": b"bad-2", "reason": "worse", "attempts": "1"})]
    assert w.dead_letter(letters) == {ids[0], ids[1]}
    moved = [{k.decode(): v.decode() for k, v in fields.items()}
             for _, fields in client.xrange(streams["dead"])]
    assert moved == [{"event": "bad-1", "reason": "no good", "attempts": "5"},
                     {"event": "bad-2", "reason": "worse", "attempts": "1"}]
    assert pending(client, streams) == [ids[2]]  # the other entry is untouched
    assert w.dead_letter(letters) == set()  # already acked: not moved twice
    assert client.xlen(streams["dead"]) == 2
    assert w.dead_letter([]) == set()
    # a batch where a peer acknowledged one entry first: only the other one is returned
    more = deliver(client, streams, b"bad-3", b"bad-4")
    assert client.xack(streams["input"], "g", more[0]) == 1
    assert w.dead_letter([(e, {"event": b"x", "reason": "r"}) for e in more]) == {more[1]}
    assert client.xlen(streams["dead"]) == 3


def test_dead_letters_are_trimmed_by_the_retention(client: Any, streams: dict[str, str]) -> None:
    for i in range(1, 501):
        client.xadd(streams["dead"], {"event": b"old"}, id=f"1-{i}")
    ids = deliver(client, streams, b"bad")
    w = writer(client, streams, retention=Retention(mode="maxlen", maxlen=5))
    assert w.dead_letter([(ids[0], {"event": b"bad", "reason": "r"})]) == {ids[0]}
    assert client.xlen(streams["dead"]) < 300
    assert client.xrevrange(streams["dead"], count=1)[0][1][b"event"] == b"bad"
    # minid: entries older than the age go
    aged_streams = {**streams, "dead": f"{streams['dead']}:aged"}
    for i in range(1, 501):
        client.xadd(aged_streams["dead"], {"event": b"old"}, id=f"1-{i}")
    ids = deliver(client, streams, b"bad2")
    aged = writer(client, aged_streams, retention=Retention(mode="minid", max_age_s=3600.0))
    assert aged.dead_letter([(ids[0], {"event": b"bad2", "reason": "r"})]) == {ids[0]}
    assert client.xlen(aged_streams["dead"]) < 300
    # none: everything stays
    kept_streams = {**streams, "dead": f"{streams['dead']}:kept"}
    for i in range(1, 501):
        client.xadd(kept_streams["dead"], {"event": b"old"}, id=f"1-{i}")
    ids = deliver(client, streams, b"bad3")
    kept = writer(client, kept_streams)
    assert kept.dead_letter([(ids[0], {"event": b"b", "r": "r"})]) == {ids[0]}
    assert client.xlen(kept_streams["dead"]) == 501
