"""Reclaimer on the real embedded Redis, called directly: what touch, delivery_counts and
forget_idle_consumers do to the group's pending list (the worker calls touch from its batch
loop and the heartbeat; these tests see its effect without a thread); which entries are taken
over (only those idle past the timeout, up to the count asked), what each comes back as (its
bytes, its delivery count, deleted or fieldless entries), and re-claiming a worker's own
entries."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest

from pipeline.runtime.hooks import Delivery
from pipeline.runtime.reclaim import Reclaimer, make_delivery


@pytest.fixture
def stream(client: Any, prefix: str) -> str:
    name = f"{prefix}:errors"
    client.xgroup_create(name, "g", id="0", mkstream=True)
    return name


def read(client: Any, stream: str, consumer: str, count: int = 10) -> list[str]:
    reply = client.xreadgroup("g", consumer, {stream: ">"}, count=count)
    return [eid.decode() for _, entries in reply for eid, _ in entries]


def pending(client: Any, stream: str) -> dict[str, dict[str, Any]]:
    rows = client.xpending_range(stream, "g", min="-", max="+", count=100)
    return {r["message_id"].decode(): {"consumer": r["consumer"].decode(),
                                        "idle": int(r["time_since_delivered"]),
                                        "times": int(r["times_delivered"])} for r in rows}


def test_touch_makes_entries_young_without_counting_a_delivery(
    client: Any, stream: str
) -> None:
    first = client.xadd(stream, {"event": b"{}"}).decode()
    second = client.xadd(stream, {"event": b"{}"}).decode()
    assert read(client, stream, "w") == [first, second]
    deadline = time.monotonic() + 30
    while min(p["idle"] for p in pending(client, stream).values()) < 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reclaimer = Reclaimer(client, stream, "g", "w", claim_idle_ms=1000)
    reclaimer.touch([first])
    after = pending(client, stream)
    # the touched entry is younger than the untouched one, still ours, still delivered once
    assert after[first]["idle"] < after[second]["idle"]
    assert after[first]["idle"] < 200
    assert after[second]["idle"] >= 200
    assert after[first]["consumer"] == after[second]["consumer"] == "w"
    assert after[first]["times"] == after[second]["times"] == 1
    reclaimer.touch([])  # nothing to touch: no command (XCLAIM with no id is an error)
    assert pending(client, stream)[first]["times"] == 1


def test_delivery_counts_are_read_from_the_pending_list(
    client: Any, stream: str
) -> None:
    first = client.xadd(stream, {"event": b"{}"}).decode()
    second = client.xadd(stream, {"event": b"{}"}).decode()
    never_read = client.xadd(stream, {"event": b"{}"}).decode()
    assert read(client, stream, "w", count=2) == [first, second]
    client.xclaim(stream, "g", "peer", 0, [second])  # counts a second delivery
    client.xclaim(stream, "g", "peer", 0, [second])  # and a third
    reclaimer = Reclaimer(client, stream, "g", "w", claim_idle_ms=1000)
    assert reclaimer.delivery_counts([first, second, never_read]) == {
        first: 1, second: 3, never_read: 1}
    assert reclaimer.delivery_counts([second]) == {second: 3}
    assert reclaimer.delivery_counts([]) == {}


def test_only_departed_consumers_that_hold_nothing_are_forgotten(
    client: Any, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    client.xadd(stream, {"event": b"{}"})
    client.xadd(stream, {"event": b"{}"})
    read(client, stream, "holder", count=1)  # holds an entry: never forgotten
    read(client, stream, "gone", count=1)
    client.xack(stream, "g", *pending(client, stream).keys() - {
        eid for eid, p in pending(client, stream).items() if p["consumer"] == "holder"})
    client.xgroup_createconsumer(stream, "g", "me")  # this worker: never forgotten
    time.sleep(0.05)
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=1000)

    def consumers() -> set[str]:
        return {c["name"].decode() for c in client.xinfo_consumers(stream, "g")}

    assert reclaimer.forget_idle_consumers(max_idle_ms=60_000) == []  # none idle that long
    assert consumers() == {"holder", "gone", "me"}
    with caplog.at_level(logging.INFO, logger="heal.runtime.reclaim"):
        assert reclaimer.forget_idle_consumers(max_idle_ms=10) == ["gone"]
    assert consumers() == {"holder", "me"}
    assert f"{stream}/g: removed 1 departed consumers" in caplog.messages
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="heal.runtime.reclaim"):
        assert reclaimer.forget_idle_consumers(max_idle_ms=10) == []
    assert caplog.messages == []  # nothing removed, nothing said


def test_forget_deletes_only_a_consumer_that_holds_nothing(
    client: Any, stream: str
) -> None:
    client.xadd(stream, {"event": b"{}"})
    read(client, stream, "holder")
    client.xgroup_createconsumer(stream, "g", "empty")
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=1000)
    assert reclaimer.forget("holder") is False
    assert reclaimer.forget("empty") is True
    assert {c["name"].decode() for c in client.xinfo_consumers(stream, "g")} == {"holder"}


def test_claiming_abandoned_entries_is_logged_with_their_number(
    client: Any, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [client.xadd(stream, {"event": b'{"id": "e%d"}' % i}).decode() for i in range(3)]
    read(client, stream, "dead-worker")
    time.sleep(0.05)
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=20)
    with caplog.at_level(logging.INFO, logger="heal.runtime.reclaim"):
        claimed = reclaimer.claim_abandoned(10)
    assert [d.entry_id for d in claimed] == ids
    assert [d.deliveries for d in claimed] == [2, 2, 2]
    assert [d.raw for d in claimed] == [b'{"id": "e%d"}' % i for i in range(3)]
    assert f"{stream}/g: reclaimed 3 abandoned entries" in caplog.messages
    assert {p["consumer"] for p in pending(client, stream).values()} == {"me"}
    caplog.clear()
    # just claimed: young again (a minute-long timeout, so no load can make them old meanwhile)
    patient = Reclaimer(client, stream, "g", "me", claim_idle_ms=60_000)
    with caplog.at_level(logging.INFO, logger="heal.runtime.reclaim"):
        assert patient.claim_abandoned(10) == []
    assert caplog.messages == []


def owners(client: Any, stream: str) -> dict[str, tuple[str, int]]:
    rows = client.xpending_range(stream, "g", min="-", max="+", count=100)
    return {r["message_id"].decode(): (r["consumer"].decode(), int(r["times_delivered"]))
            for r in rows}


def wait_idle(client: Any, stream: str, ms: int) -> None:
    """Until every pending entry has been idle at least ``ms`` (a generous deadline)."""
    deadline = time.monotonic() + 60
    while True:
        rows = client.xpending_range(stream, "g", min="-", max="+", count=100)
        if all(int(r["time_since_delivered"]) >= ms for r in rows):
            return
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_only_entries_idle_past_the_timeout_are_taken_over(client: Any, stream: str) -> None:
    old = [client.xadd(stream, {"event": b"old-%d" % i}).decode() for i in range(3)]
    assert read(client, stream, "dead-worker") == old
    wait_idle(client, stream, 100)
    young = client.xadd(stream, {"event": b"young"}).decode()
    assert read(client, stream, "busy-worker") == [young]
    patient = Reclaimer(client, stream, "g", "me", claim_idle_ms=3_600_000)
    assert patient.claim_abandoned(10) == []  # nothing idle an hour: nothing moves
    assert owners(client, stream)[old[0]] == ("dead-worker", 1)
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=100)
    # up to the count asked, oldest first; the young entry stays with its worker
    first = reclaimer.claim_abandoned(2)
    assert [(d.entry_id, d.raw, d.deliveries, d.deleted) for d in first] == [
        (old[0], b"old-0", 2, False), (old[1], b"old-1", 2, False)]
    assert all(d.stream == stream for d in first)
    after = owners(client, stream)
    assert after[old[0]] == after[old[1]] == ("me", 2)
    assert after[old[2]] == ("dead-worker", 1)
    assert after[young] == ("busy-worker", 1)


def test_a_young_entry_first_in_the_pending_list_does_not_use_up_the_count(
    client: Any, stream: str
) -> None:
    ids = [client.xadd(stream, {"event": b"e%d" % i}).decode() for i in range(3)]
    read(client, stream, "slow-worker", count=1)
    read(client, stream, "dead-worker")
    wait_idle(client, stream, 200)
    # the slow worker's entry (the oldest id) is still being handled: touched, young again
    Reclaimer(client, stream, "g", "slow-worker", claim_idle_ms=200).touch([ids[0]])
    claimed = Reclaimer(client, stream, "g", "me", claim_idle_ms=200).claim_abandoned(1)
    assert [d.entry_id for d in claimed] == [ids[1]]
    assert owners(client, stream)[ids[0]] == ("slow-worker", 1)


def test_an_abandoned_entry_deleted_from_the_stream_comes_back_deleted(
    client: Any, stream: str
) -> None:
    kept, gone = (client.xadd(stream, {"event": b"k"}).decode(),
                  client.xadd(stream, {"event": b"g"}).decode())
    read(client, stream, "dead-worker")
    client.xdel(stream, gone)  # trimmed while pending
    wait_idle(client, stream, 50)
    claimed = Reclaimer(client, stream, "g", "me", claim_idle_ms=50).claim_abandoned(10)
    by_id = {d.entry_id: d for d in claimed}
    assert set(by_id) == {kept, gone}
    assert (by_id[kept].raw, by_id[kept].deleted, by_id[kept].deliveries) == (b"k", False, 2)
    assert by_id[gone] == Delivery(stream, gone, None, 2, deleted=True)


def test_own_entries_are_reclaimed_with_one_more_delivery(client: Any, stream: str) -> None:
    ids = [client.xadd(stream, {"event": b"e%d" % i}).decode() for i in range(2)]
    read(client, stream, "me")
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=3_600_000)
    again = reclaimer.claim_own([ids[1]])
    assert [(d.entry_id, d.raw, d.deliveries) for d in again] == [(ids[1], b"e1", 2)]
    assert owners(client, stream) == {ids[0]: ("me", 1), ids[1]: ("me", 2)}
    assert reclaimer.claim_own([]) == []
    # one taken over by a peer meanwhile comes back to us
    client.xclaim(stream, "g", "peer", 0, [ids[0]])
    assert [d.deliveries for d in reclaimer.claim_own([ids[0]])] == [3]
    assert owners(client, stream)[ids[0]] == ("me", 3)


def test_to_deliveries_counts_each_entry_and_skips_missing_ids(
    client: Any, stream: str
) -> None:
    ids = [client.xadd(stream, {"event": b"e%d" % i}).decode() for i in range(2)]
    read(client, stream, "me")
    client.xclaim(stream, "g", "me", 0, [ids[1]])
    reclaimer = Reclaimer(client, stream, "g", "me", claim_idle_ms=1000)
    entries = [(ids[0].encode(), {b"event": b"e0"}), (None, None), (ids[1], {b"event": b"e1"})]
    assert reclaimer.to_deliveries(entries) == [Delivery(stream, ids[0], b"e0", 1),
                                                Delivery(stream, ids[1], b"e1", 2)]
    assert reclaimer.to_deliveries([]) == []


def test_a_delivery_is_made_from_whatever_fields_the_entry_has() -> None:
    assert make_delivery("s", "1-0", {b"event": b"raw"}, 3) == Delivery("s", "1-0", b"raw", 3)
    assert make_delivery("s", "1-0", {"event": "text"}, 1) == Delivery("s", "1-0", b"text", 1)
    # deleted while pending: no fields at all
    assert make_delivery("s", "1-0", None, 2) == Delivery("s", "1-0", None, 2, deleted=True)
    assert make_delivery("s", "1-0", {}, 2) == Delivery("s", "1-0", None, 2, deleted=True)
    # fields but no event: the fields themselves, as JSON, so the dead letter keeps them
    odd = make_delivery("s", "1-0", {b"payload": b"\xffx", "n": 3, b"name": "v"}, 4)
    assert (odd.missing_event, odd.deleted, odd.deliveries) == (True, False, 4)
    assert odd.raw is not None
    assert orjson.loads(odd.raw) == {"payload": "\ufffdx", "n": "3", "name": "v"}
