"""StageWorker against the real embedded Redis: hand-off, idempotence, retries, dead
letters, malformed input, reclaim, retention, drain_inline."""

from __future__ import annotations

import logging
import sys
import time
import types
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import AccessRefused, ConfigError, PermanentError, Retry
from pipeline.events import ErrorEvent
from pipeline.runtime import StageWorker, WorkerOptions, already_done, drain_inline, loader
from pipeline.runtime.hooks import Delivery, Hook
from pipeline.runtime.metrics import MetricsHook, MetricsRegistry
from pipeline.runtime.noop import PassThroughHandler
from pipeline.runtime.options import Retention
from pipeline.stage import Encodable


def event(i: int | str, text: str = "boom") -> bytes:
    return orjson.dumps({"v": 1, "id": f"e{i}", "text": text})


def publish(client: redis.Redis, settings: Settings, *raws: bytes, stream: str = "errors") -> None:
    pipe = client.pipeline(transaction=False)
    for raw in raws:
        pipe.xadd(settings.stream(stream), {"event": raw})
    pipe.execute()


def ids_in(client: redis.Redis, stream: str) -> list[str]:
    return [orjson.loads(f[b"event"])["id"] for _, f in client.xrange(stream)]


def dead(client: redis.Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in client.xrange(settings.stream("dead"))]


def drain(worker: StageWorker) -> int:
    total = 0
    while count := worker.step(None):
        total += count
    return total


def pending(client: redis.Redis, settings: Settings, group: str = "fingerprint") -> int:
    return int(client.xpending(settings.stream("errors"), group)["pending"])


def make_worker(client: redis.Redis, settings: Settings, handler: Any = None, **opts: Any
                ) -> StageWorker:
    worker = StageWorker(client, settings, "fingerprint", handler or PassThroughHandler(),
                         options=WorkerOptions(**opts))
    worker.start()
    return worker


def test_events_are_handed_off_once_and_acked(client: redis.Redis, settings: Settings) -> None:
    publish(client, settings, *(event(i) for i in range(250)))
    worker = make_worker(client, settings)
    assert drain(worker) == 250
    assert ids_in(client, settings.stream("fingerprints")) == [f"e{i}" for i in range(250)]
    assert pending(client, settings) == 0 and dead(client, settings) == []


def test_a_second_entry_with_the_same_event_id_produces_no_second_output(
    client: redis.Redis, settings: Settings
) -> None:
    publish(client, settings, event(1), event(1), event(2))
    worker = make_worker(client, settings)
    drain(worker)
    assert ids_in(client, settings.stream("fingerprints")) == ["e1", "e2"]
    assert worker.already_done("e1") and not worker.already_done("e3")
    assert already_done(client, settings, "fingerprint", "e2")
    assert pending(client, settings) == 0


def test_an_entry_handled_by_two_consumers_is_handed_off_once(
    client: redis.Redis, settings: Settings
) -> None:
    """A slow worker and the peer that reclaimed its entry both finish: one output."""
    publish(client, settings, event(7))
    slow = make_worker(client, settings, dedupe_ttl_s=0)
    entries = slow._read_new(None)
    peer = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                       options=WorkerOptions(claim_idle_ms=1, dedupe_ttl_s=0), consumer="peer")
    time.sleep(0.01)
    assert peer.step(None) == 1  # reclaimed and handed off
    slow.process(entries)  # the slow one finishes later: XACK returns 0, nothing emitted
    assert ids_in(client, settings.stream("fingerprints")) == ["e7"]


def test_retry_backs_off_then_succeeds(client: redis.Redis, settings: Settings) -> None:
    calls: list[float] = []

    def flaky(_event: object) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise Retry("not yet")

    registry = MetricsRegistry()
    worker = StageWorker(client, settings, "fingerprint", PassThroughHandler(on_event=flaky),
                         options=WorkerOptions(backoff_base_s=0.05, max_deliveries=5),
                         hooks=[MetricsHook(registry)])
    worker.start()
    publish(client, settings, event(1))
    deadline = time.monotonic() + 120
    while len(calls) < 3 and time.monotonic() < deadline:
        worker.step(50)
    assert ids_in(client, settings.stream("fingerprints")) == ["e1"]
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # exponential
    assert registry.snapshot()["fingerprint"]["retries"] == 2
    assert pending(client, settings) == 0


def test_retries_exhausted_dead_letter_with_attempts(
    client: redis.Redis, settings: Settings
) -> None:
    def always(_event: object) -> None:
        raise Retry("upstream down", delay=0.01)

    worker = make_worker(client, settings, handler=PassThroughHandler(on_event=always),
                         max_deliveries=3)
    publish(client, settings, event(1))
    deadline = time.monotonic() + 120
    while not dead(client, settings) and time.monotonic() < deadline:
        worker.step(20)
    [letter] = dead(client, settings)
    assert letter[b"attempts"] == b"3" and letter[b"stage"] == b"fingerprint"
    assert b"gave up after 3 attempts: upstream down" in letter[b"reason"]
    assert letter[b"event"] == event(1) and letter[b"error_id"] == b"e1"
    assert pending(client, settings) == 0


def test_permanent_error_dead_letters_at_once(client: redis.Redis, settings: Settings) -> None:
    def refuse(_event: object) -> None:
        raise PermanentError("no such repository")

    worker = make_worker(client, settings, handler=PassThroughHandler(on_event=refuse))
    publish(client, settings, event(1))
    drain(worker)
    [letter] = dead(client, settings)
    assert b"no such repository" in letter[b"reason"] and letter[b"attempts"] == b"1"


class DeadLetterSpy(Hook):
    def __init__(self) -> None:
        self.entries: list[str] = []

    def on_dead_letter(self, stage: str, delivery: Delivery, reason: str) -> None:
        self.entries.append(delivery.entry_id)


def test_an_entry_a_peer_acknowledged_first_is_no_dead_letter_of_this_worker(
        client: redis.Redis, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A reclaim race: a peer finished (acknowledged) an entry while this worker's handler
    still failed it. The dead-letter script moves only entries it acknowledges itself, and the
    worker once logged and hooked (metrics: dead letters) every entry it asked to move."""
    spy = DeadLetterSpy()
    worker = StageWorker(client, settings, "fingerprint",
                         PassThroughHandler(on_event=lambda _e: None), hooks=[spy])
    worker.start()
    stream = settings.stream("errors")

    def fail(ev: object) -> None:
        if getattr(ev, "id", "") == "e1":  # the peer that reclaimed e1 finishes it first
            [(entry_id, _)] = [(e, f) for e, f in client.xrange(stream)
                               if orjson.loads(f[b"event"])["id"] == "e1"]
            assert client.xack(stream, "fingerprint", entry_id) == 1
        raise PermanentError("no such repository")

    worker.processor.handler = PassThroughHandler(on_event=fail)
    publish(client, settings, event(1), event(2))
    with caplog.at_level(logging.INFO, logger="heal.runtime"):
        drain(worker)
    entries = {orjson.loads(f[b"event"])["id"]: e.decode() for e, f in client.xrange(stream)}
    assert [orjson.loads(d[b"event"])["id"] for d in dead(client, settings)] == ["e2"]
    assert spy.entries == [entries["e2"]]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warned if "dead letter" in m] == [
        f"stage fingerprint: dead letter {entries['e2']}: permanent error: no such repository"]
    assert any(f"{entries['e1']}" in r.getMessage() and "already acknowledged" in r.getMessage()
               for r in caplog.records)
    assert pending(client, settings) == 0


def test_a_config_error_of_one_event_is_its_failure_only_an_acl_refusal_stops_the_stage(
    client: redis.Redis, settings: Settings
) -> None:
    """A handler's ConfigError for one event (a broken stored fix, say) is that event's
    failure: retried, then dead-lettered, while the next events pass. Only Redis's ACL
    refusing heal's keys (AccessRefused) stops the stage, the entry left pending."""
    def one_bad(event: object) -> None:
        if getattr(event, "id", "") == "e1":
            raise ConfigError("fix f1: template uses undeclared params {x}")

    worker = make_worker(client, settings, handler=PassThroughHandler(on_event=one_bad),
                         max_deliveries=2, backoff_base_s=0.01)
    publish(client, settings, event(1), event(2))
    deadline = time.monotonic() + 120
    while not dead(client, settings) and time.monotonic() < deadline:
        worker.step(20)
    [letter] = dead(client, settings)
    assert letter[b"error_id"] == b"e1" and b"undeclared params" in letter[b"reason"]
    assert ids_in(client, settings.stream("fingerprints")) == ["e2"]

    def refused(_event: object) -> None:
        raise AccessRefused("the Redis user of HEAL_REDIS_URL may not use keys under heal:*")

    stopping = make_worker(client, settings, handler=PassThroughHandler(on_event=refused))
    publish(client, settings, event(3))
    with pytest.raises(AccessRefused, match="may not use keys"):
        drain(stopping)
    assert pending(client, settings) == 1  # e3 waits for the ACL to be fixed


class ContractHandler:
    """Decodes with the contract's ErrorEvent (validation, truncation) and hands it on."""

    def __init__(self, settings: Settings) -> None:
        self.decode = lambda raw: ErrorEvent.decode(raw, settings.max_text_bytes)

    def handle(self, event: ErrorEvent) -> list[Encodable]:
        return [event]


def test_malformed_input_is_dead_lettered_and_the_worker_keeps_going(
    client: redis.Redis, settings: Settings
) -> None:
    huge = "x" * (10 * 1024 * 1024) + "\nValueError: the real error at the end"
    publish(
        client, settings,
        b"this is not json",
        orjson.dumps({"v": 1, "text": "no id"}),
        orjson.dumps({"v": 1, "id": "bad-types", "text": 42}),
        orjson.dumps({"v": 1, "id": "bad-exit", "text": "t", "exit_code": "one"}),
        b"\xff\xfe binary",
        event("ok-1"),
        orjson.dumps({"v": 1, "id": "huge", "text": huge}),
        event("ok-2"),
    )
    client.xadd(settings.stream("errors"), {"payload": "wrong field name"})
    worker = make_worker(client, settings, handler=ContractHandler(settings))
    assert drain(worker) == 9
    out = [orjson.loads(f[b"event"]) for _, f in client.xrange(settings.stream("fingerprints"))]
    assert [o["id"] for o in out] == ["eok-1", "huge", "eok-2"]
    assert out[1]["text"].endswith("the real error at the end")  # tail kept
    assert len(out[1]["text"]) <= settings.max_text_bytes + 100
    assert out[1]["tags"]["truncated_bytes"] > 10_000_000 - settings.max_text_bytes
    reasons = [d[b"reason"].decode() for d in dead(client, settings)]
    assert len(reasons) == 6 and all(r for r in reasons)
    assert "not valid JSON" in reasons[0]
    assert "'id'" in reasons[1] and "'text' must be a string" in reasons[2]
    assert "exit_code" in reasons[3] and "'event' field" in reasons[5]
    assert orjson.loads(dead(client, settings)[5][b"event"]) == {"payload": "wrong field name"}
    assert pending(client, settings) == 0


def test_entries_abandoned_by_a_dead_consumer_are_reclaimed(
    client: redis.Redis, settings: Settings
) -> None:
    publish(client, settings, *(event(i) for i in range(30)))
    crashed = make_worker(client, settings)
    crashed._read_new(None)  # read, then "dies" without acking
    assert pending(client, settings) == 30
    survivor = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                           options=WorkerOptions(claim_idle_ms=50), consumer="survivor")
    time.sleep(0.1)
    assert drain(survivor) == 30
    assert sorted(ids_in(client, settings.stream("fingerprints"))) == sorted(
        f"e{i}" for i in range(30))
    assert pending(client, settings) == 0


def test_an_event_that_kills_every_worker_is_eventually_dead_lettered(
    client: redis.Redis, settings: Settings
) -> None:
    publish(client, settings, event("poison"))
    make_worker(client, settings)._read_new(None)
    for n in range(3):  # three more consumers take it over and "crash" too
        time.sleep(0.01)
        StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                    options=WorkerOptions(claim_idle_ms=1), consumer=f"c{n}"
                    ).reclaimer.claim_abandoned(10)
    time.sleep(0.01)
    last = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                       options=WorkerOptions(claim_idle_ms=1, max_deliveries=4), consumer="x")
    assert last.step(None) == 1
    [letter] = dead(client, settings)
    assert b"delivered 5 times" in letter[b"reason"] and letter[b"attempts"] == b"5"


def test_retention_trims_outputs_approximately(client: redis.Redis, settings: Settings) -> None:
    publish(client, settings, *(event(i) for i in range(3000)))
    worker = make_worker(client, settings, retention=Retention.parse("maxlen:500"))
    drain(worker)
    assert 500 <= client.xlen(settings.stream("fingerprints")) < 1500


def test_stopping_mid_batch_hands_the_rest_back(client: redis.Redis, settings: Settings) -> None:
    worker = make_worker(client, settings)
    seen: list[object] = []

    def stop_after_three(ev: object) -> None:
        seen.append(ev)
        if len(seen) == 3:
            worker.stop()

    worker.processor.handler = PassThroughHandler(on_event=stop_after_three)
    publish(client, settings, *(event(i) for i in range(10)))
    assert worker.step(None) == 3
    assert len(ids_in(client, settings.stream("fingerprints"))) == 3
    assert pending(client, settings) == 7  # handed back, reclaimed by peers later


def test_drain_inline_runs_built_stages_in_order(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def module(name: str, inp: str, out: str | None) -> types.ModuleType:
        mod = types.ModuleType(f"consumers.{name}")
        mod.GROUP, mod.INPUT, mod.OUTPUT = name, inp, out  # type: ignore[attr-defined]
        mod.build = lambda ctx: PassThroughHandler()  # type: ignore[attr-defined]
        return mod

    stages = {"first": ("errors", "fingerprints"), "second": ("fingerprints", "candidates"),
              "last": ("candidates", None)}
    monkeypatch.setattr(loader, "STAGES", stages)
    for name, (inp, out) in stages.items():
        monkeypatch.setitem(sys.modules, f"consumers.{name}", module(name, inp, out))
    publish(client, settings, *(event(i) for i in range(20)))
    assert drain_inline(settings, client) == 60
    assert len(ids_in(client, settings.stream("candidates"))) == 20
    assert client.xpending(settings.stream("candidates"), "last")["pending"] == 0
    assert client.xinfo_consumers(settings.stream("errors"), "first") == []
    assert drain_inline(settings, client, stages=["first"]) == 0


def test_departed_consumers_holding_nothing_are_forgotten(
    client: redis.Redis, settings: Settings
) -> None:
    publish(client, settings, event(1), event(2))
    holder = make_worker(client, settings, batch_size=1)
    holder._read_new(None)  # holds one entry: must never be forgotten
    done = StageWorker(client, settings, "fingerprint", PassThroughHandler(), consumer="gone")
    drain(done)
    live = StageWorker(client, settings, "fingerprint", PassThroughHandler(), consumer="live")
    time.sleep(0.02)
    assert live.reclaimer.forget_idle_consumers(max_idle_ms=10) == ["gone"]
    names = {c["name"].decode() for c in client.xinfo_consumers(settings.stream("errors"),
                                                                  "fingerprint")}
    assert names == {holder.consumer}


def test_a_pending_entry_deleted_from_the_stream_is_dead_lettered_not_reclaimed_forever(
    client: redis.Redis, settings: Settings
) -> None:
    publish(client, settings, event(1), event(2), event(3))
    crashed = make_worker(client, settings)
    taken = crashed._read_new(None)
    client.xdel(settings.stream("errors"), taken[1].entry_id)  # e.g. trimmed by retention
    survivor = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                           options=WorkerOptions(claim_idle_ms=1), consumer="survivor")
    time.sleep(0.01)
    assert drain(survivor) == 3
    assert sorted(ids_in(client, settings.stream("fingerprints"))) == ["e1", "e3"]
    [letter] = dead(client, settings)
    assert b"deleted from the stream" in letter[b"reason"]
    assert letter[b"entry_id"].decode() == taken[1].entry_id
    assert pending(client, settings) == 0


def test_the_heartbeat_keeps_held_entries_from_looking_abandoned(
    client: redis.Redis, settings: Settings
) -> None:
    """Given a worker in a long handler (or waiting out a retry), its entries stay young, so a
    peer with a short claim timeout does not take them over; after the worker dies, it does."""
    from pipeline.runtime.heartbeat import Heartbeat, live_stages

    publish(client, settings, event(1))
    holder = make_worker(client, settings)
    batch = holder._read_new(None)
    holder.in_flight = tuple(d.entry_id for d in batch)  # as during a long handler
    # The window is long against the beat interval, and each check runs right after a beat,
    # so a loaded machine cannot make a beaten entry look abandoned; the four beats together
    # still span more than one window, so only the beats can be what keeps it young.
    peer = StageWorker(client, settings, "fingerprint", PassThroughHandler(),
                       options=WorkerOptions(claim_idle_ms=1000), consumer="peer")
    beat = Heartbeat(client, settings, [holder])
    for _ in range(4):
        beat.beat()
        assert peer.reclaimer.claim_abandoned(10) == []
        time.sleep(0.3)
    assert live_stages(client, settings) == {"fingerprint"}
    # no more beats: the holder "died"; wait on the condition, with a generous deadline
    deadline = time.monotonic() + 120
    claimed: list[str] = []
    while not claimed and time.monotonic() < deadline:
        claimed = [d.entry_id for d in peer.reclaimer.claim_abandoned(10)]
        time.sleep(0.05)
    assert claimed == list(holder.in_flight)


@pytest.mark.parametrize(("read_ahead", "batch_size"), [(False, 10), (True, 1), (True, 10)])
def test_an_entry_with_two_event_fields_is_dead_lettered_not_half_handled(
    client: redis.Redis, settings: Settings, read_ahead: bool, batch_size: int
) -> None:
    """``XADD heal:errors * event A event B``: a dict of the fields kept B alone, silently.
    Whichever way the worker reads it (a plain XREADGROUP: no read-ahead, or fewer entries
    than a batch; a read-ahead: batches of one, the second read is one) it is dead-lettered
    with the reason, never half handled (QA contract 5: the plain read folded it)."""
    publish(client, settings, event("first"))
    client.execute_command("XADD", settings.stream("errors"), "*", "event", event("a"),
                           "event", event("b"))
    publish(client, settings, event("c"))
    worker = make_worker(client, settings, handler=ContractHandler(settings),
                         batch_size=batch_size, read_ahead=read_ahead)
    assert drain(worker) == 3
    out = [orjson.loads(f[b"event"]) for _, f in client.xrange(settings.stream("fingerprints"))]
    assert [o["id"] for o in out] == ["efirst", "ec"]
    (letter,) = dead(client, settings)
    assert letter[b"reason"].decode().startswith("stream entry has 2 'event' fields")
    assert [name for name, _ in orjson.loads(letter[b"event"])] == ["event", "event"]
    assert pending(client, settings) == 0


def test_an_entry_with_two_event_fields_is_dead_lettered_when_reclaimed(
    client: redis.Redis, settings: Settings
) -> None:
    """The same entry left pending by a worker that died is dead-lettered by the peer that
    claims it (XCLAIM's reply was folded into a dict as well)."""
    stream = settings.stream("errors")
    client.execute_command("XADD", stream, "*", "event", event("a"), "event", event("b"))
    worker = make_worker(client, settings, handler=ContractHandler(settings))
    (entry_id, _), = client.xreadgroup("fingerprint", "gone", {stream: ">"})[0][1]  # it died
    (delivery,) = worker.reclaimer.claim_own([entry_id.decode()])
    assert delivery.problem is not None and "2 'event' fields" in delivery.problem
    assert delivery.missing_event


class DurableHandler(PassThroughHandler):
    """A pass-through stage that keeps a write per event in memory and makes them durable
    in ``before_handoff`` (as the lookup stage's outbox buffer); it records, at that moment,
    what the output stream and the pending list show, and may fail."""

    def __init__(self, client: redis.Redis, settings: Settings, failures: int = 0) -> None:
        super().__init__(on_event=lambda ev: self.buffer.append(ev.id))  # type: ignore[attr-defined]
        self.client, self.settings, self.failures = client, settings, failures
        self.buffer: list[str] = []
        self.durable: list[str] = []
        #: (outputs handed off, entries pending) seen at each call
        self.seen: list[tuple[int, int]] = []

    def before_handoff(self) -> None:
        self.seen.append((self.client.xlen(self.settings.stream("fingerprints")),
                          pending(self.client, self.settings)))
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.durable += self.buffer
        self.buffer.clear()


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "one-at-a-time"])
def test_before_handoff_runs_before_the_batch_is_acknowledged(
    client: redis.Redis, settings: Settings, read_ahead: bool
) -> None:
    handler = DurableHandler(client, settings)
    publish(client, settings, *(event(i) for i in range(250)))
    worker = make_worker(client, settings, handler, batch_size=50, read_ahead=read_ahead)
    assert drain(worker) == 250
    out = ids_in(client, settings.stream("fingerprints"))
    assert out == [f"e{i}" for i in range(250)]
    # once per batch, each time before that batch's outputs and acknowledgement (with
    # read-ahead, the hand-off of the batch before may still be on its way)
    assert len(handler.seen) == 5
    assert all(handed <= 50 * k and held >= 50
               for k, (handed, held) in enumerate(handler.seen))
    assert sorted(handler.durable) == sorted(out) and pending(client, settings) == 0


def test_a_batch_whose_writes_cannot_be_made_durable_is_not_acknowledged(
    client: redis.Redis, settings: Settings
) -> None:
    handler = DurableHandler(client, settings, failures=1)
    publish(client, settings, *(event(i) for i in range(10)))
    worker = make_worker(client, settings, handler, backoff_base_s=0.05)
    assert worker.step(None) == 10
    # nothing handed off or acknowledged: parked, as in an outage (the delivery not counted)
    assert ids_in(client, settings.stream("fingerprints")) == []
    assert pending(client, settings) == 10 and len(worker.retries) == 10
    deadline = time.monotonic() + 60
    while pending(client, settings) and time.monotonic() < deadline:
        worker.step(50)
    assert ids_in(client, settings.stream("fingerprints")) == [f"e{i}" for i in range(10)]
    assert sorted(set(handler.durable)) == sorted(f"e{i}" for i in range(10))
    assert dead(client, settings) == []
