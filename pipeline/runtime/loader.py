"""Stage loading: ``consumers/<stage>.py`` imported lazily by stage name.

A consumer module declares ``GROUP``, ``INPUT``, ``OUTPUT`` (stream suffixes) and
``build(ctx) -> StageHandler``; optionally ``BATCH_SIZE`` and ``CLAIM_IDLE_MS`` to suit
slow handlers. Stages are independent: loading one never imports another.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pipeline.config import STAGES, Settings
from pipeline.errors import ConfigError, HealError, UsageError
from pipeline.runtime import group as groups
from pipeline.runtime.hooks import Hook
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.worker import StageWorker
from pipeline.stage import StageContext, StageHandler


class StageNotBuilt(HealError):
    """The stage is part of the design but its consumer module does not exist yet."""


@dataclass(frozen=True)
class StageSpec:
    name: str
    group: str
    input: str
    output: str | None
    build: Callable[[StageContext], StageHandler]
    batch_size: int | None = None
    claim_idle_ms: int | None = None


def _import(stage: str) -> ModuleType:
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; the stages are: {', '.join(STAGES)}")
    name = f"consumers.{stage}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise StageNotBuilt(f"stage {stage} is not built yet (no module {name})") from exc
        raise


def load_stage(stage: str) -> StageSpec:
    """Import ``consumers.<stage>`` and check its declarations.

    Raises:
        UsageError: not a stage name.
        StageNotBuilt: the consumer module does not exist yet.
        ConfigError: the module lacks GROUP/INPUT/OUTPUT/build.
    """
    module = _import(stage)
    missing = [n for n in ("GROUP", "INPUT", "OUTPUT", "build") if not hasattr(module, n)]
    if missing:
        raise ConfigError(f"consumers/{stage}.py must define {', '.join(missing)}")
    return StageSpec(
        name=stage,
        group=module.GROUP,
        input=module.INPUT,
        output=module.OUTPUT,
        build=module.build,
        batch_size=getattr(module, "BATCH_SIZE", None),
        claim_idle_ms=getattr(module, "CLAIM_IDLE_MS", None),
    )


def built_stages(stages: Sequence[str] | None = None) -> list[StageSpec]:
    """Specs of the given stages (all, in pipeline order, when None).

    With ``stages=None`` the stages not built yet are skipped; named stages must exist.

    Raises:
        UsageError / StageNotBuilt / ConfigError: see :func:`load_stage`.
    """
    if stages is not None:
        return [load_stage(name) for name in stages]
    specs: list[StageSpec] = []
    for name in STAGES:
        try:
            specs.append(load_stage(name))
        except StageNotBuilt:
            continue
    return specs


def stage_options(spec: StageSpec, options: WorkerOptions, explicit: set[str]) -> WorkerOptions:
    """The module's suggestions, unless the user set the option explicitly."""
    changes: dict[str, Any] = {}
    if spec.batch_size and "batch_size" not in explicit:
        changes["batch_size"] = int(spec.batch_size)
    if spec.claim_idle_ms and "claim_idle_ms" not in explicit:
        changes["claim_idle_ms"] = int(spec.claim_idle_ms)
    return dataclasses.replace(options, **changes) if changes else options


def build_worker(
    client: Any,
    settings: Settings,
    spec: StageSpec,
    *,
    options: WorkerOptions | None = None,
    explicit: set[str] | None = None,
    hooks: Sequence[Hook] | None = None,
    index: int = 0,
    consumer: str | None = None,
    resources: dict[str, Any] | None = None,
) -> StageWorker:
    """Build the stage's handler (with its StageContext) and a worker around it."""
    consumer = consumer or groups.consumer_name(index)
    ctx = StageContext(settings=settings, stage=spec.name, consumer=consumer)
    ctx.resources.update(resources or {})
    ctx.resources.setdefault("redis", client)
    resolved = stage_options(spec, options or WorkerOptions(), explicit or set())
    ctx.resources["already_done"] = lambda event_id: groups.already_done(
        client, settings, spec.name, event_id, resolved.dedupe_ttl_s
    )
    # every stage event is sealed on the way out and checked on the way in (pipeline.trust)
    from pipeline.trust.seal import SealedHandler

    handler = SealedHandler(spec.build(ctx), settings, spec.input, spec.output)
    return StageWorker(
        client, settings, spec.name, handler,
        group=spec.group, input_stream=spec.input, output_stream=spec.output,
        options=resolved, hooks=hooks, consumer=consumer,
    )


def build_partition_workers(
    client: Any,
    settings: Settings,
    spec: StageSpec,
    **kwargs: Any,
) -> list[StageWorker]:
    """One StageWorker per partition the settings address (one when unpartitioned or bound
    to one partition), all sharing ONE handler: handlers use global keys only, and a process
    builds its model, database pool and caches once. Keyword arguments: see build_worker."""
    views = [settings] if settings.partition is not None else settings.partition_views()
    first = build_worker(client, views[0], spec, **kwargs)
    workers = [first]
    for view in views[1:]:
        workers.append(StageWorker(
            client, view, spec.name, first.processor.handler,
            group=spec.group, input_stream=spec.input, output_stream=spec.output,
            options=first.options, hooks=kwargs.get("hooks"), consumer=first.consumer,
        ))
    return workers


def build_stage_worker(client: Any, settings: Settings, spec: StageSpec, **kwargs: Any) -> Any:
    """A StageWorker, or a PartitionedWorker over every partition (HEAL_PARTITIONS > 1)."""
    from pipeline.runtime.partitions import PartitionedWorker

    workers = build_partition_workers(client, settings, spec, **kwargs)
    return workers[0] if len(workers) == 1 else PartitionedWorker(workers)
