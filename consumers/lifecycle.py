"""The ``lifecycle`` consumer group: outcomes -> statistics, lifecycle transitions, breaker,
escalation, causal edges learned from applied fixes; a timer (one worker at a time, by Redis
lease) sweeps the time-based rules."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from pipeline.config import STREAM_OUTCOMES, Settings
from pipeline.errors import EngineError, Retry
from pipeline.events import OutcomeEvent
from pipeline.guardrails._connect import connect_redis, open_database
from pipeline.guardrails.alerts import AlertingAudit, build_notifier
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.learn.references import ResolutionReferences
from pipeline.lifecycle.causes import CauseLearner
from pipeline.lifecycle.escalate import EscalationHook, repo_escalation
from pipeline.lifecycle.service import LifecycleService
from pipeline.lifecycle.sweeper import Sweeper
from pipeline.lookup.catalog import load_catalog
from pipeline.runtime.connection import redis_failure
from pipeline.stage import Encodable, StageContext
from pipeline.trust.operator import operator_config
from storage.causal import CausalGraph
from storage.lifecycle import LifecycleStore

if TYPE_CHECKING:
    from storage.db import Database

GROUP = "lifecycle"
INPUT = STREAM_OUTCOMES
OUTPUT = None


class LifecycleHandler:
    decode = staticmethod(OutcomeEvent.decode)

    def __init__(self, service: LifecycleService, sweeper: Sweeper | None = None,
                 owned_db: Database | None = None, settings: Settings | None = None) -> None:
        self.service = service
        #: whose operator configuration sets the lifecycle and breaker thresholds (None: the
        #: defaults)
        self.settings = settings
        self.sweeper = sweeper
        #: the database this stage's build opened (not one given in the resources):
        #: ``finish`` closes it
        self._owned_db = owned_db

    def handle(self, event: Any) -> Sequence[Encodable]:
        try:
            # graduation and quarantine thresholds, and the breaker's: they change state
            # every repository shares, so they are the operator's ([lifecycle], [breaker]
            # in operator configuration), never the heal.toml of the repository the
            # outcome names (pipeline.trust.operator.cap_limits)
            self.refresh()
            self.service.handle(event)
        except EngineError as exc:  # engines come back; the event must not be lost
            raise Retry(str(exc), delay=5.0) from exc
        return []

    def refresh(self) -> None:
        """Take the lifecycle and breaker thresholds of the operator configuration now in
        force (hot reloaded: :func:`pipeline.trust.operator.operator_config`)."""
        if self.settings is None:
            return
        limits = operator_config(self.settings).limits
        self.service.policy = limits.lifecycle()
        if self.service.breaker is not None:
            self.service.breaker.config = limits.breaker()

    def probe_keys(self) -> list[tuple[str, str]]:
        """The sweep lease, tried by the worker at start (``pipeline.stage.StartupProbe``)."""
        return [] if self.sweeper is None else [("sweep lease", self.sweeper.lease_key)]

    def tick(self) -> None:
        """Start the sweep timer (idempotent), once the worker or drain that runs this stage
        started: started at build, its first sweep raced the worker's start-up checks, and a
        Redis user refused heal's keys got a "sweep lease unavailable" warning before the
        refusal that says what to grant."""
        if self.sweeper is not None:
            self.sweeper.start()

    def finish(self) -> None:
        """End of an inline drain (`heal run`, `heal apply`) or of a worker's run (`heal up`,
        `heal worker lifecycle`), failed or not: stop the sweep timer, letting a sweep in
        progress complete, so no timer thread outlives the drain or worker that started it."""
        if self.sweeper is not None:
            self.sweeper.stop(timeout_s=60.0)  # a sweep is a few queries; never cut short
        # (after the sweep, which uses it) a pool per drain would pile up in a long-lived
        # process that drains again and again (the Dagster adapter, the Python API)
        db, self._owned_db = self._owned_db, None
        if db is not None:
            db.close()


def _count(client: redis.Redis, settings: Settings, fingerprint: str, fix_id: str) -> int:
    """One more "could not run" for the pair (kept 30 days).

    Raises: StreamUnavailable (the event is retried); AccessRefused (the ACL of Redis's user
    refused it: the stage stops saying what to grant)."""
    key = settings.key("lifecycle", "unrunnable", fingerprint, fix_id)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 30 * 86400)
        n, _ = pipe.execute()
    except redis.RedisError as exc:
        raise redis_failure(exc, "lifecycle", settings.prefix) from exc
    return int(n)


def build(ctx: StageContext) -> LifecycleHandler:
    settings = ctx.settings
    given = ctx.resources.get("db")
    db = given or open_database(settings)
    client = ctx.resources.get("redis") or connect_redis(settings)
    notifier = build_notifier(settings, client)  # raises HealError for a bad webhook URL
    # the audit log notifies breaker trips, quarantines and workflow state changes
    audit = AlertingAudit(AuditLog(settings, db=db, redis_client=client), notifier)
    store = LifecycleStore(db)
    limits = operator_config(settings).limits  # the operator's [lifecycle] and [breaker]
    # [escalation] per repository, its dedupe_hours as the operator's side lets it be
    escalation = EscalationHook(store, notifier,
                                policy_of=functools.partial(repo_escalation, settings))
    service = LifecycleService(
        store=store,
        breaker=CircuitBreaker(client, settings, limits.breaker(), audit=audit),
        audit=audit,
        policy=limits.lifecycle(),
        references=ResolutionReferences(db),
        escalation=escalation,
        causes=CauseLearner(load_catalog(), CausalGraph(db)),
        count_unrunnable=lambda fp, fix_id: _count(client, settings, fp, fix_id),
    )

    def deprecate_unused() -> None:
        handler.refresh()  # the operator's [lifecycle] unused_days and deprecate_below
        for t in store.deprecate_unused(service.policy):
            audit.append("lifecycle.transition", f"{t.fingerprint}/{t.fix_id}",
                         {"from": t.src.value, "to": t.dst.value, "reason": t.reason})

    # this build's own timer, over this build's store and notifier: ``tick`` starts it (the
    # worker's first round, after its start-up checks), ``finish`` stops it
    sweeper = Sweeper(client, settings.key("lifecycle", "sweep"),
                      [deprecate_unused, escalation.sweep], interval_s=settings.sweep_interval_s,
                      prefix=settings.prefix)
    handler = LifecycleHandler(service, sweeper, owned_db=None if given else db,
                               settings=settings)
    return handler
