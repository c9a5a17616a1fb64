"""A batch handler (``handle_batch``) under the real runtime and Redis: the same hand-offs as
``handle`` per event, each event decided on its own when a batch fails, hooks that must see
every event first keep the per-event path, and the stop flag is honoured between slices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import redis

from consumers import fingerprint as fingerprint_stage
from pipeline.config import Settings
from pipeline.errors import PermanentError
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.runtime import StageWorker, WorkerOptions
from pipeline.runtime.handoff import Handoff
from pipeline.runtime.hooks import Delivery, Hook, HookChain
from pipeline.runtime.metrics import MetricsHook, MetricsRegistry
from pipeline.runtime.noop import PassEvent, PassThroughHandler
from pipeline.runtime.processing import EventProcessor
from pipeline.runtime.worker import BATCH_SLICE
from pipeline.stage import Encodable, StageContext
from pipeline.trust.seal import SealedHandler, unseal
from tests.integration.test_runtime_worker import drain, publish

TEXTS = [f"Invalid user {u} from 10.1.0.{i} port {2000 + i}" for i, u in
         enumerate(["ann", "bob", "cy", "dee", "eve"])] + [
    "Traceback (most recent call last):\n  File \"/srv/app/x.py\", line 3, in <module>\n"
    "    import yaml\nModuleNotFoundError: No module named 'yaml'\n", "disk full", "disk full"]


def raw_event(i: int, text: str) -> bytes:
    return orjson.dumps({"v": 1, "id": f"e{i}", "text": text})


class Batched(PassThroughHandler):
    """Pass-through with a batch path; ``handle_batch`` fails for a batch holding ``poison``,
    whose ``handle`` then refuses it alone."""

    def __init__(self, on_batch: Any = None) -> None:
        super().__init__(on_event=self._refuse_poison)
        self.batches: list[int] = []
        self.on_batch = on_batch

    @staticmethod
    def _refuse_poison(event: object) -> None:
        if isinstance(event, PassEvent) and b"poison" in event.raw:
            raise PermanentError("poison refused")

    def handle_batch(self, events: Sequence[Any]) -> list[Sequence[Encodable]]:
        self.batches.append(len(events))
        if self.on_batch is not None:
            self.on_batch(events)
        if any(isinstance(e, PassEvent) and b"poison" in e.raw for e in events):
            raise RuntimeError("a poisoned batch")
        return [[e] for e in events]


def worker_for(client: redis.Redis, settings: Settings, handler: Any, hooks: Sequence[Hook]
               ) -> StageWorker:
    worker = StageWorker(client, settings, "fingerprint", handler, hooks=list(hooks),
                         options=WorkerOptions(batch_size=500))
    worker.start()
    return worker


def test_the_batch_path_seals_the_same_bytes_as_handle(tmp_path: Any) -> None:
    # Given the real fingerprint handler, sealed as the runtime seals it, and a prepared batch
    settings = Settings(redis_url=None, database_url=None, home=tmp_path, prefix="t")
    inner = fingerprint_stage.build(StageContext(settings=settings, stage="fingerprint"))
    sealed = SealedHandler(inner, settings, "errors", "fingerprints")
    processor = EventProcessor("fingerprint", sealed, HookChain(), WorkerOptions())
    deliveries = [Delivery("s", f"{i}-0", raw_event(i, t)) for i, t in enumerate(TEXTS)]
    events = [processor.decode(d) for d in deliveries]
    processor.prepare(events)
    # When it is decided as a batch and event by event
    assert processor.batches
    batched = processor.handle_batch(deliveries, events)
    one_by_one = [processor.handle(d, e) for d, e in zip(deliveries, events, strict=True)]
    # Then the hand-offs are the same, byte for byte, and each seal is valid
    assert batched == one_by_one
    assert batched is not None and len(batched) == len(TEXTS)
    for decision in batched:
        assert isinstance(decision, Handoff)
        body = unseal(settings, "fingerprints", decision.outputs[0])
        assert body is not None
        assert FingerprintEvent.decode(body).error_id == decision.dedupe_id


def test_a_failing_batch_is_decided_event_by_event(
        client: redis.Redis, settings: Settings) -> None:
    # Given a batch handler whose batch holds one event it refuses
    registry = MetricsRegistry()
    handler = Batched()
    worker = worker_for(client, settings, handler, [MetricsHook(registry)])
    raws = [raw_event(i, "poison" if i == 150 else f"ok {i}") for i in range(250)]
    publish(client, settings, *raws)
    # When the worker drains them
    assert drain(worker) == 250
    # Then the slices went to handle_batch; the poisoned one was decided per event: only the
    # refused event is dead-lettered, every other one handed off once
    assert handler.batches == [BATCH_SLICE, BATCH_SLICE, 50]
    out = [orjson.loads(f[b"event"])["id"]
           for _, f in client.xrange(settings.stream("fingerprints"))]
    assert sorted(out) == sorted(f"e{i}" for i in range(250) if i != 150)
    dead = client.xrange(settings.stream("dead"))
    assert len(dead) == 1 and b"poison refused" in dead[0][1][b"reason"]
    # and the metrics counted every handled event (the dead letter through its own hook)
    stats = registry.snapshot()["fingerprint"]
    assert stats["handled"] == 249 and stats["dead_letters"] == 1
    assert sum(stats["latency_buckets"]) == 249


class Seen(Hook):
    def __init__(self) -> None:
        self.before: list[object] = []
        self.after: list[object] = []

    def after_handle(self, stage: str, event: Any, outputs: Sequence[Any],
                     elapsed_s: float) -> None:
        self.after.append(event)


class Gate(Seen):
    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        self.before.append(event)


@pytest.mark.parametrize(("hook_class", "batches"), [(Seen, [30]), (Gate, [])],
                         ids=["after-hook: batch path", "before-hook: per-event path"])
def test_hooks_see_every_event_and_a_before_hook_keeps_the_per_event_path(
        client: redis.Redis, settings: Settings, hook_class: type[Seen], batches: list[int]
) -> None:
    handler, hook = Batched(), hook_class()
    worker = worker_for(client, settings, handler, [hook])
    raws = [raw_event(i, f"ok {i}") for i in range(30)]
    publish(client, settings, *raws)
    assert drain(worker) == 30
    assert handler.batches == batches
    assert sorted(getattr(e, "raw", b"") for e in hook.after) == sorted(raws)
    assert len(hook.before) == (30 if hook_class is Gate else 0)


def test_stop_is_honoured_between_slices(client: redis.Redis, settings: Settings) -> None:
    worker: StageWorker | None = None

    def stop(_events: Sequence[Any]) -> None:
        assert worker is not None
        worker.stop()

    handler = Batched(on_batch=stop)
    worker = worker_for(client, settings, handler, [])
    publish(client, settings, *[raw_event(i, f"ok {i}") for i in range(250)])
    assert worker.step(None) == BATCH_SLICE
    assert handler.batches == [BATCH_SLICE]
    pending = client.xpending(settings.stream("errors"), "fingerprint")["pending"]
    assert pending == 250 - BATCH_SLICE  # handed back, reclaimed by peers later


def test_the_fingerprint_stage_decides_real_texts_through_its_batch_path(
        client: redis.Redis, settings: Settings) -> None:
    from pipeline.runtime.drain import drain_inline
    publish(client, settings, *[ErrorEvent(id=f"r{i}", text=t).encode()
                                for i, t in enumerate(TEXTS)])
    calls: list[int] = []
    original = fingerprint_stage.FingerprintHandler.handle_batch

    def counting(self: Any, events: Sequence[ErrorEvent]) -> list[Sequence[FingerprintEvent]]:
        calls.append(len(events))
        return original(self, events)

    fingerprint_stage.FingerprintHandler.handle_batch = counting  # type: ignore[method-assign]
    try:
        assert drain_inline(settings, client, stages=["fingerprint"]) == len(TEXTS)
    finally:
        fingerprint_stage.FingerprintHandler.handle_batch = original  # type: ignore[method-assign]
    assert calls == [len(TEXTS)]
    out = [FingerprintEvent.decode(f[b"event"]) for _, f in
           client.xrange(settings.stream("fingerprints"))]
    assert sorted(e.error_id for e in out) == sorted(f"r{i}" for i in range(len(TEXTS)))
    assert out[-1].fine == out[-2].fine  # the repeated text
