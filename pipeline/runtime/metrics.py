"""In-process counters per stage, filled by :class:`MetricsHook` (Prometheus export reads
:func:`snapshot` later; nothing here talks to the network)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.runtime.hooks import Delivery, Hook

#: upper bounds (seconds) of the handler latency histogram
LATENCY_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0, float("inf"))
_FIRST_BOUND = LATENCY_BUCKETS[0]


@dataclass
class StageMetrics:
    handled: int = 0
    emitted: int = 0
    acked: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_letters: int = 0
    reconnects: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))


class MetricsRegistry:
    """Thread-safe per-stage counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, StageMetrics] = {}

    def _get(self, stage: str) -> StageMetrics:
        found = self._stages.get(stage)
        if found is None:
            found = self._stages[stage] = StageMetrics()
        return found

    def observe_handle(self, stage: str, elapsed_s: float, count: int = 1) -> None:
        """``count`` events handled in ``elapsed_s`` each (a batch: its mean)."""
        # once per event: the bucket is found before taking the lock, and the stage's
        # counters without a helper call
        bucket = 0 if elapsed_s <= _FIRST_BOUND else bisect.bisect_left(LATENCY_BUCKETS,
                                                                         elapsed_s)
        with self._lock:
            m = self._stages.get(stage) or self._get(stage)
            m.handled += count
            m.latency_sum_s += elapsed_s * count
            if elapsed_s > m.latency_max_s:
                m.latency_max_s = elapsed_s
            m.latency_buckets[bucket] += count

    def add(self, stage: str, **counts: int) -> None:
        with self._lock:
            m = self._get(stage)
            for name, value in counts.items():
                setattr(m, name, getattr(m, name) + value)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: asdict(m) for name, m in self._stages.items()}


#: the process-wide registry used unless a test passes its own
REGISTRY = MetricsRegistry()


def snapshot() -> dict[str, dict[str, Any]]:
    return REGISTRY.snapshot()


class MetricsHook(Hook):
    """Counts events, outputs, retries, dead letters and handler latency per stage."""

    def __init__(self, registry: MetricsRegistry | None = None) -> None:
        self.registry = registry or REGISTRY

    def after_handle(
        self, stage: str, event: Any, outputs: Sequence[Any], elapsed_s: float
    ) -> None:
        self.registry.observe_handle(stage, elapsed_s)

    def after_handle_batch(
        self, stage: str, events: Sequence[Any], outputs: Sequence[Sequence[Any]],
        elapsed_s: float,
    ) -> None:
        self.registry.observe_handle(stage, elapsed_s, len(events))

    def on_retry(self, stage: str, delivery: Delivery, reason: str, delay_s: float) -> None:
        self.registry.add(stage, retries=1)

    def on_dead_letter(self, stage: str, delivery: Delivery, reason: str) -> None:
        self.registry.add(stage, dead_letters=1)

    def after_handoff(self, stage: str, acked: int, emitted: int, duplicates: int) -> None:
        self.registry.add(stage, acked=acked, emitted=emitted, duplicates=duplicates)

    def on_reconnect(self, stage: str, error: BaseException, attempt: int) -> None:
        self.registry.add(stage, reconnects=1)
