"""drain_inline: run the stages in this process until nothing is waiting (no workers needed).

Used by ``heal run`` and ``heal demo`` in embedded mode. Stages are visited in pipeline order
and the round repeats until a full round handles nothing, so one event can travel the whole
pipeline in a single call. Events waiting for a retry backoff are waited for (bounded by
``max_deliveries`` and the backoff cap), so on return every event was handed off or
dead-lettered.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.runtime import group as groups
from pipeline.runtime.connection import stream_errors
from pipeline.runtime.hooks import Hook
from pipeline.runtime.loader import build_partition_workers, built_stages
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.worker import StageWorker


def _round(workers: Sequence[StageWorker]) -> int:
    handled = 0
    for worker in workers:
        while True:
            count = worker.step(None)
            if count == 0:
                break
            handled += count
    return handled


def drain_inline(
    settings: Settings,
    client: Any,
    stages: Sequence[str] | None = None,
    ctx_resources: dict[str, Any] | None = None,
    *,
    options: WorkerOptions | None = None,
    hooks: Sequence[Hook] | None = None,
) -> int:
    """Handle everything waiting on ``stages`` (all built stages when None), in order.

    Returns the number of entries taken off the input streams (handed off or
    dead-lettered).

    Raises:
        StreamUnavailable: Redis unreachable or failing.
        StageNotBuilt: a stage named in ``stages`` has no consumer module yet.
        UsageError: an unknown stage name.
    """
    specs = built_stages(stages)
    consumer = f"inline-{socket.gethostname()}-{os.getpid()}"
    workers: list[StageWorker] = []
    try:
        with stream_errors("draining the pipeline inline", settings.prefix):
            for spec in specs:  # stage by stage, each over the partitions the settings address
                workers.extend(build_partition_workers(
                    client, settings, spec, options=options, hooks=hooks, consumer=consumer,
                    resources=ctx_resources))
            for worker in workers:
                groups.ensure_group(client, worker.stream, worker.group)
            total = 0
            while True:
                handled = _round(workers)
                total += handled
                if handled:
                    continue
                waits = [w.retries.seconds_until_next() for w in workers if len(w.retries)]
                if not waits:
                    break
                time.sleep(min(w for w in waits if w is not None) + 0.001)
            for worker in workers:  # the throwaway inline consumer, if it holds nothing
                worker.reclaimer.forget(worker.consumer)
    finally:
        # also when the drain failed (Redis gone mid-drain, a stage that cannot be built):
        # e.g. the lookup's outbox reaches PostgreSQL, the lifecycle's sweep timer stops;
        # once per handler (a stage's partition workers share one, see PartitionedWorker)
        finished: set[int] = set()
        for worker in workers:
            if id(worker.processor.handler) not in finished:
                finished.add(id(worker.processor.handler))
                worker.finish()
    return total
