"""The stream runtime: the one piece of code that runs a consumer group.

    worker.StageWorker     read (XREADGROUP batches) → decide (processing) → commit (handoff)
    processing             one delivery → hand off | retry later | dead letter
    handoff                atomic Lua: XACK + XADD outputs + event-id dedupe marker
    reclaim                XAUTOCLAIM of abandoned entries; re-claim of due retries; touch
    retries / backoff      the local retry schedule; capped exponential backoff
    deadletter             what goes to ``<prefix>:dead``
    hooks / metrics        the single extension point; per-stage counters
    loader                 consumers/<stage>.py loaded lazily; build_worker
    drain                  drain_inline: all stages in this process until empty
    runner                 threads (heal up) or processes (heal worker --concurrency)
    heartbeat              alive keys per worker; live_stages() for heal run / status
    connection             Redis failures: reconnect vs. StreamUnavailable at the edge
    options                WorkerOptions, Retention
"""

from pipeline.runtime.drain import drain_inline
from pipeline.runtime.group import already_done, consumer_name, ensure_group
from pipeline.runtime.heartbeat import live_stages
from pipeline.runtime.hooks import Delivery, Hook, HookChain
from pipeline.runtime.loader import StageNotBuilt, StageSpec, build_worker, load_stage
from pipeline.runtime.metrics import MetricsHook, snapshot
from pipeline.runtime.options import Retention, WorkerOptions
from pipeline.runtime.worker import StageWorker

__all__ = [
    "Delivery",
    "Hook",
    "HookChain",
    "MetricsHook",
    "Retention",
    "StageNotBuilt",
    "StageSpec",
    "StageWorker",
    "WorkerOptions",
    "already_done",
    "build_worker",
    "consumer_name",
    "drain_inline",
    "ensure_group",
    "live_stages",
    "load_stage",
    "snapshot",
]
