"""Reclaimer on the real embedded Redis, called directly: what touch, delivery_counts and
forget_idle_consumers do to the group's pending list (the worker calls touch from its batch
loop and the heartbeat; these tests see its effect without a thread)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from pipeline.runtime.reclaim import Reclaimer


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
