"""Read-ahead and pipelined commits (pipeline.runtime.overlap) on the real embedded Redis:
a backlog is handled in bursts with Redis working alongside, and a stop, a crash or a Redis
failure with a read-ahead batch outstanding loses nothing and duplicates nothing."""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.runtime import StageWorker, WorkerOptions
from pipeline.runtime.connection import SURVIVABLE
from pipeline.runtime.metrics import MetricsHook, MetricsRegistry
from pipeline.runtime.noop import PassEvent, PassThroughHandler
from pipeline.runtime.overlap import Pipelined, supported
from tests.integration._drills import kill_while_holding, wait_for
from tests.integration.test_runtime_reliability import (
    output_ids,
    pending_of,
    publish,
    start_worker,
    stop,
)


def worker(client: redis.Redis, settings: Settings, handler: Any = None, **options: Any
           ) -> StageWorker:
    return StageWorker(client, settings, "fingerprint", handler or PassThroughHandler(),
                       options=WorkerOptions(**options))


def held_by(client: redis.Redis, settings: Settings, w: StageWorker) -> int:
    return pending_of(client, settings.stream("errors"), "fingerprint", w.consumer.encode())


def exactly_once(client: redis.Redis, settings: Settings, total: int) -> None:
    counts = output_ids(client, settings.stream("fingerprints"))
    assert len(counts) == total and set(counts.values()) == {1}
    assert client.xpending(settings.stream("errors"), "fingerprint")["pending"] == 0
    assert client.xlen(settings.stream("dead")) == 0


def finish_with_peer(client: redis.Redis, settings: Settings) -> None:
    peer = worker(client, settings, claim_idle_ms=1, claim_interval_s=0.0)
    peer.start()
    time.sleep(0.01)  # the left entries are idle past the peer's claim timeout
    while peer.step(None):
        pass


def test_a_backlog_is_handled_in_bursts_in_order_exactly_once(
    client: redis.Redis, settings: Settings
) -> None:
    """Given 1,000 events and batches of 50, one step handles the backlog in a burst of
    batches (more than one batch per step), emits every event once in stream order, counts
    every hand-off in the metrics, and leaves nothing pending; without read-ahead a step
    handles one batch."""
    publish(client, settings.stream("errors"), range(1000))
    registry = MetricsRegistry()
    w = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                    hooks=[MetricsHook(registry)], options=WorkerOptions(batch_size=50))
    w.start()
    assert supported(client)
    first = w.step(None)
    assert first > 50
    rest = 0
    while count := w.step(None):
        rest += count
    assert first + rest == 1000 and w.processed == 1000
    out = [orjson.loads(f[b"event"])["id"]
           for _, f in client.xrange(settings.stream("fingerprints"))]
    assert out == [f"e{i}" for i in range(1000)]
    exactly_once(client, settings, 1000)
    assert registry.snapshot()["fingerprint"]["acked"] == 1000

    publish(client, settings.stream("errors"), range(1000, 1200))
    plain = worker(client, settings, batch_size=50, read_ahead=False)
    assert plain.step(None) == 50


def test_stop_with_a_read_ahead_batch_outstanding_loses_and_duplicates_nothing(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a burst that has already read the next batch ahead, when the worker is asked to
    stop mid-batch, the step commits what it decided and returns; the rest of the batch and
    the read-ahead batch stay pending, handed back (idle as if abandoned, no delivery
    counted), so a peer with the same claim timeout takes them over at once and hands off
    exactly the rest."""
    publish(client, settings.stream("errors"), range(500))
    seen: list[str] = []

    def on_event(event: object) -> None:
        assert isinstance(event, PassEvent)
        seen.append(event.id)
        if len(seen) == 70:  # the second batch of 50, with the third read ahead
            wait_for(lambda: held_by(client, settings, w) > 50, 30,
                     "the read-ahead batch to be delivered")
            w.stop()

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=50)
    w.start()
    assert w.step(None) == 70
    held = held_by(client, settings, w)
    assert held > 30, "no read-ahead batch was outstanding: the test tests nothing"
    assert client.xlen(settings.stream("fingerprints")) == 70
    assert w.in_flight == ()
    # handed back: a peer with the same claim timeout takes them over at once
    peer = worker(client, settings)
    taken = peer.reclaimer.claim_abandoned(1000)
    assert len(taken) == held and all(d.deliveries == 2 for d in taken)
    assert peer.process(taken) == held
    while peer.step(None):
        pass
    exactly_once(client, settings, 500)


class Crash(BaseException):
    """Not an Exception: nothing in the runtime contains it (a crash of the process)."""


def test_a_crash_with_a_read_ahead_batch_outstanding_loses_and_duplicates_nothing(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a burst with commits and a read-ahead in flight, when the handler crashes the
    worker, the pipelined connection is dropped (not returned to the pool with replies
    unread), and a peer reclaims the batch in hand and the read-ahead batch: every event
    handed off once."""
    publish(client, settings.stream("errors"), range(400))
    count = [0]

    def on_event(_event: object) -> None:
        count[0] += 1
        if count[0] == 130:  # the third batch of 50, with the fourth read ahead
            wait_for(lambda: held_by(client, settings, w) > 50, 30,
                     "the read-ahead batch to be delivered")
            raise Crash

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=50)
    w.start()
    with pytest.raises(Crash):
        w.step(None)
    # the batch in hand and the one read ahead (more than one batch): the scenario
    assert held_by(client, settings, w) > 50, "no read-ahead batch was held: tests nothing"
    assert client.ping()  # the pool's connections still answer in order
    finish_with_peer(client, settings)
    exactly_once(client, settings, 400)


@pytest.mark.parametrize("batch_aware", [False, True])
def test_a_redis_failure_mid_burst_is_recovered_with_the_read_ahead_batch(
    client: redis.Redis, redis_url: str, settings: Settings, batch_aware: bool
) -> None:
    """Given a burst with a read-ahead outstanding, when Redis drops the worker's
    connections, the step raises the Redis error, the worker's own recovery re-reads the
    entries it holds (read-ahead included), and every event is handed off exactly once by
    this worker alone (no peer, no reclaim timeout). The same for a batch-aware handler,
    which reads the read-ahead and prepares the next batch before writing a hand-off."""
    publish(client, settings.stream("errors"), range(600))
    killer = redis.Redis.from_url(redis_url)
    count = [0]

    def on_event(_event: object) -> None:
        count[0] += 1
        if count[0] == 120:  # every other client's connections, the pipelined one too
            killer.client_kill_filter(_type="normal", skipme=True)

    own = redis.Redis.from_url(redis_url)
    handler = (Preparing(client, settings.stream("fingerprints"), on_event) if batch_aware
               else PassThroughHandler(on_event=on_event))
    w = StageWorker(own, settings, "fingerprint", handler,
                    options=WorkerOptions(batch_size=50, reconnect_base_s=0.01))
    w.start()
    failures = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if not w.step(None) and not held_by(client, settings, w):
                break
        except SURVIVABLE as exc:
            failures += 1
            w.on_redis_failure(exc, failures)
    assert failures >= 1, "the connection kill did not hit the burst: tests nothing"
    exactly_once(client, settings, 600)
    killer.close()
    own.close()


def test_the_read_ahead_batch_is_touched_and_listed_while_a_slow_batch_is_handled(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a batch slower than half the claim timeout, the entries read ahead are listed
    in held_ids (the heartbeat keeps them fresh) and touched with the rest of the batch, so
    a peer does not find them idle past the timeout while this worker means to handle them."""
    publish(client, settings.stream("errors"), range(30))
    seen: list[str] = []
    snapshot: dict[str, Any] = {}

    def on_event(event: object) -> None:
        assert isinstance(event, PassEvent)
        seen.append(event.id)
        time.sleep(0.05)
        if event.id == "e9":  # the end of the first batch: 0.5 s, past the 0.4 s timeout
            snapshot["held"] = set(w.held_ids())
            rows = client.xpending_range(settings.stream("errors"), "fingerprint", "-", "+",
                                         100, consumername=w.consumer)
            snapshot["idle"] = {r["message_id"].decode(): r["time_since_delivered"]
                                for r in rows}

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=10,
               claim_idle_ms=400)
    w.start()
    while w.step(None):
        pass
    ahead = [eid.decode() for eid, _ in client.xrange(settings.stream("errors"))][10:20]
    assert set(ahead) <= snapshot["held"]
    assert all(snapshot["idle"][eid] < 400 for eid in ahead)
    exactly_once(client, settings, 30)


def test_pipelined_replies_come_back_in_order_and_an_unread_reply_never_reaches_the_pool(
    client: redis.Redis, prefix: str
) -> None:
    """Replies are read in the order the commands were sent; closing with a reply unread
    disconnects the connection instead of handing it back with the reply on it."""
    stream = f"{prefix}:s"
    client.xgroup_create(stream, "g", id="0", mkstream=True)
    client.xadd(stream, {"event": b"x"})
    with Pipelined(client) as pipe:
        pipe.send_read("g", "c", stream, 10)
        replies: list[Any] = []
        pipe.send_script(str(client.script_load("return {1, 2, 3}")), [], [], replies.append)
        entries = pipe.take_read()
        assert entries is not None and [f for _, f in entries] == [[b"event", b"x"]]
        assert pipe.take_read() is None
        assert pipe.flush() == [] and replies == [[1, 2, 3]]
    pipe = Pipelined(client)
    pipe.send_read("g", "c", stream, 10)
    conn = pipe._conn
    pipe.close()
    assert conn._sock is None  # dropped, not reused with a stray reply
    assert client.ping()


@pytest.mark.slow
def test_sigkill_while_holding_a_read_ahead_batch_loses_and_duplicates_nothing(
    client: redis.Redis, redis_url: str, settings: Settings
) -> None:
    """A worker process killed with SIGKILL while it holds more than one batch (the batch
    in hand and the one read ahead): a peer reclaims both, every event once."""
    errors = settings.stream("errors")
    total = 3000
    publish(client, errors, range(total))
    victim = start_worker(redis_url, settings.prefix, 0, "--sleep-ms", "1",
                          "--claim-idle-ms", "1000")
    name = f"{socket.gethostname()}-{victim.pid}-0".encode()
    try:
        wait_for(lambda: client.xlen(settings.stream("fingerprints")) >= 300, 120,
                 "the worker to get going")
        held = kill_while_holding(
            victim, lambda: max(pending_of(client, errors, "fingerprint", name) - 100, 0),
            lambda: client.xlen(settings.stream("fingerprints")) >= total)
        assert held > 0
        assert victim.returncode == -signal.SIGKILL
    finally:
        stop(victim)
    peer = worker(client, settings, claim_idle_ms=1000, claim_interval_s=0.0)
    peer.start()
    time.sleep(1.1)
    while peer.step(None):
        pass
    counts: Counter[str] = output_ids(client, settings.stream("fingerprints"))
    assert len(counts) == total and set(counts.values()) == {1}
    exactly_once(client, settings, total)


def test_a_health_checked_connection_is_pipelined_without_mistaking_replies(
    redis_url: str, settings: Settings
) -> None:
    """A client whose URL asks for health checks on every command still bursts correctly:
    the check (a PING and its reply) never runs with replies of ours outstanding."""
    sep = "&" if "?" in redis_url else "?"
    checked = redis.Redis.from_url(f"{redis_url}{sep}health_check_interval=1")
    publish(checked, settings.stream("errors"), range(300))
    count = [0]

    def on_event(_event: object) -> None:
        count[0] += 1
        if count[0] == 30:  # mid-burst, with a read-ahead outstanding: the check falls due
            time.sleep(1.1)

    w = worker(checked, settings, PassThroughHandler(on_event=on_event), batch_size=20)
    w.start()
    assert w.step(None) > 40
    while w.step(None):
        pass
    exactly_once(checked, settings, 300)
    checked.close()


def test_the_heartbeat_keeps_a_read_ahead_batch_from_peers_during_one_long_event(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given one event that takes longer than the claim timeout while the next batch is read
    ahead (its ids not yet read by the worker), the heartbeat touches every entry the worker
    holds, so a peer looking for abandoned entries meanwhile finds none; all handed off once."""
    from pipeline.runtime import heartbeat

    monkeypatch.setattr(heartbeat, "INTERVAL_S", 0.05)
    publish(client, settings.stream("errors"), range(30))
    found: dict[str, Any] = {}
    peer = worker(client, settings, claim_idle_ms=400)

    def on_event(event: object) -> None:
        assert isinstance(event, PassEvent)
        if event.id == "e0":  # 1 s, with the second batch read ahead meanwhile
            wait_for(lambda: held_by(client, settings, w) > 10, 30,
                     "the read-ahead batch to be delivered")
            time.sleep(1.0)
            found["claimed"] = peer.reclaimer.claim_abandoned(100)

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=10,
               claim_idle_ms=400)
    w.start()
    beat = heartbeat.Heartbeat(client, settings, [w]).start()
    try:
        while w.step(None):
            pass
    finally:
        beat.stop()
    assert found["claimed"] == []
    exactly_once(client, settings, 30)


def test_dead_letters_and_retries_inside_a_burst_are_decided_as_without_one(
    client: redis.Redis, settings: Settings
) -> None:
    """A backlog with malformed entries and an event that fails once: in a burst the
    malformed ones go to the dead-letter stream with their reason, the failing one is retried
    after its backoff and handed off, every other event once, nothing left pending."""
    from pipeline.errors import Retry

    errors = settings.stream("errors")
    publish(client, errors, range(120))
    client.xadd(errors, {"event": b"not json"})
    client.xadd(errors, {"other": b"field"})
    publish(client, errors, range(120, 300))
    failed: list[str] = []

    def on_event(event: object) -> None:
        assert isinstance(event, PassEvent)
        if event.id == "e130" and not failed:
            failed.append(event.id)
            raise Retry("not yet", delay=0.05)

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=50,
               backoff_base_s=0.05)
    w.start()
    assert w.step(None) > 50  # a burst
    deadline = time.monotonic() + 30
    while (w.step(None) or len(w.retries)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed == ["e130"]
    counts = output_ids(client, settings.stream("fingerprints"))
    assert len(counts) == 300 and set(counts.values()) == {1}
    reasons = sorted(f[b"reason"].decode() for _, f in client.xrange(settings.stream("dead")))
    assert len(reasons) == 2
    assert reasons[0].startswith("stream entry has no 'event' field")
    assert reasons[1].startswith("undecodable")
    assert client.xpending(errors, "fingerprint")["pending"] == 0


def test_a_stop_without_read_ahead_hands_the_rest_of_the_batch_back_at_once(
    client: redis.Redis, settings: Settings
) -> None:
    """One round trip at a time (read-ahead off): a stop mid-batch hands the undecided rest
    back, so a peer with the same claim timeout takes it over at its next reclaim pass."""
    publish(client, settings.stream("errors"), range(50))
    seen: list[object] = []

    def on_event(event: object) -> None:
        seen.append(event)
        if len(seen) == 20:
            w.stop()

    w = worker(client, settings, PassThroughHandler(on_event=on_event), batch_size=50,
               read_ahead=False)
    w.start()
    assert w.step(None) == 20
    peer = worker(client, settings)
    taken = peer.reclaimer.claim_abandoned(100)
    assert len(taken) == 30
    assert peer.process(taken) == 30
    exactly_once(client, settings, 50)


class Preparing(PassThroughHandler):
    """A batch-aware pass-through: notes each batch it prepares, and how many outputs the
    output stream held at that moment."""

    def __init__(self, client: redis.Redis, out: str, on_event: Any = None) -> None:
        super().__init__(on_event=on_event)
        self.client, self.out = client, out
        self.prepared: list[tuple[list[str], int]] = []

    def prepare(self, events: list[PassEvent]) -> None:
        self.prepared.append(([e.id for e in events], self.client.xlen(self.out)))


def test_a_batch_aware_handler_prepares_the_read_ahead_batch_before_the_hand_off(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a batch-aware handler in a burst whose read-ahead has arrived, each batch is
    prepared once, in order, before the previous batch's hand-off is written (so a round
    trip of its own in prepare does not wait behind that hand-off in Redis), and every
    event is still handed off exactly once in stream order."""
    out = settings.stream("fingerprints")
    publish(client, settings.stream("errors"), range(600))
    count = [0]

    def on_event(_event: object) -> None:
        count[0] += 1
        done = count[0] // 50  # batches handled, this one included
        if count[0] % 50 == 0 and count[0] < 600:  # the last event of a batch: let Redis
            # run the previous hand-off and deliver the read-ahead batch (it then has both
            # replies ready, as a slow handler's batch finds them)
            wait_for(lambda: client.xlen(out) == 50 * (done - 1)
                     and held_by(client, settings, w) == 100, 30,
                     "the previous hand-off and the read-ahead batch")

    handler = Preparing(client, out, on_event)
    w = worker(client, settings, handler, batch_size=50, block_ms=60_000,
               claim_interval_s=600.0)
    w.start()
    total = 0
    while stepped := w.step(None):
        total += stepped
    assert total == 600
    assert [ids for ids, _ in handler.prepared] == [
        [f"e{i}" for i in range(k * 50, k * 50 + 50)] for k in range(12)]
    # batch k (k >= 1) was prepared when batches 0..k-2 were handed off, not k-1
    assert [held for _, held in handler.prepared[1:]] == [50 * (k - 1) for k in range(1, 12)]
    out_ids = [orjson.loads(f[b"event"])["id"] for _, f in client.xrange(out)]
    assert out_ids == [f"e{i}" for i in range(600)]
    exactly_once(client, settings, 600)


def test_a_crash_while_preparing_the_read_ahead_batch_loses_and_duplicates_nothing(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a batch-aware handler that has handled a batch and is preparing the read-ahead
    batch before writing that batch's hand-off, when the process crashes there, neither
    batch was handed off; a peer reclaims both, and every event is handed off once."""
    publish(client, settings.stream("errors"), range(300))

    class CrashingPrepare(Preparing):
        def prepare(self, events: list[PassEvent]) -> None:
            super().prepare(events)
            if len(self.prepared) == 3:  # batch 3, read ahead while batch 2 is in hand
                raise Crash

    out = settings.stream("fingerprints")
    count = [0]

    def on_event(_event: object) -> None:
        count[0] += 1
        if count[0] == 100:  # the end of batch 2: batch 1 handed off, batch 3 delivered
            wait_for(lambda: client.xlen(out) == 50 and held_by(client, settings, w) == 100,
                     30, "batch 1's hand-off and the read-ahead batch")

    handler = CrashingPrepare(client, out, on_event)
    w = worker(client, settings, handler, batch_size=50, block_ms=60_000,
               claim_interval_s=600.0)
    w.start()
    with pytest.raises(Crash):
        w.step(None)
    assert held_by(client, settings, w) == 100  # batches 2 and 3
    assert client.xlen(out) == 50  # batch 2's hand-off was not written
    finish_with_peer(client, settings)
    exactly_once(client, settings, 300)
