"""Circuit breaker with resilience4j semantics, shared by every worker through Redis.

States (:class:`BreakerState`): CLOSED lets fixes through; OPEN refuses every fix until the
cooldown has elapsed; then the first ``allow`` moves it to HALF_OPEN, which lets a bounded
number of SAFE probes through, each with a timeout of its own (an unanswered probe re-opens
the breaker, like resilience4j's ``maxWaitDurationInHalfOpenState``); enough successful
probes close it, a revert re-opens it. FORCED_OPEN is set by hand (``heal breaker open``) and
only ``heal breaker reset`` clears it.

Three levels are checked together: the workflow step (``step:<workflow>/<step>``), the
workflow (``workflow:<workflow>``) and ``global``. Each keeps time-based sliding windows of
calls and reverts (Redis sorted sets scored by time); a level trips when its reverts in the
window reach its threshold and its calls reach the minimum volume. Defaults: 2 reverts within
an hour trip a step or a workflow, 5 trip the whole installation; 30 minutes cooldown.

All state changes run as Lua scripts inside Redis, so concurrent workers never disagree, and
Redis persistence makes the state survive restarts. Every transition is appended to the
audit log (``$HEAL_HOME/audit.jsonl`` unless another auditor is given); a failing audit
write of the breaker's own transition is logged, never turned into a refused or allowed fix.
A reset by hand (it lets fixes through again) is audited first and not made without its
record; ``force_open`` engages like a trip, its lost record logged.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis

from pipeline.config import Settings
from pipeline.errors import HealError, UsageError
from pipeline.guardrails import _breaker_lua as lua
from pipeline.guardrails.actor import current
from pipeline.guardrails.audit import AuditLog
from pipeline.runtime.connection import redis_failure

GLOBAL = "global"

log = logging.getLogger("heal.breaker")


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    FORCED_OPEN = "FORCED_OPEN"


#: worst first: the state ``breaker_status`` reports for the whole installation
SEVERITY = (BreakerState.FORCED_OPEN, BreakerState.OPEN, BreakerState.HALF_OPEN,
            BreakerState.CLOSED)


@dataclass(frozen=True)
class BreakerConfig:
    """Policy of the breaker (resilience4j names in brackets)."""

    window_s: float = 3600.0  # [slidingWindowSize, TIME_BASED]
    step_threshold: int = 2  # reverts in the window that trip a step
    workflow_threshold: int = 2
    global_threshold: int = 5
    min_volume: int = 2  # [minimumNumberOfCalls]
    cooldown_s: float = 1800.0  # [waitDurationInOpenState]
    half_open_probes: int = 1  # [permittedNumberOfCallsInHalfOpenState]
    probe_timeout_s: float = 900.0  # [maxWaitDurationInHalfOpenState]

    def threshold(self, scope: str) -> int:
        if scope == GLOBAL:
            return self.global_threshold
        if scope.startswith("workflow:"):
            return self.workflow_threshold
        return self.step_threshold


class Auditor(Protocol):
    def append(self, kind: str, subject: str, data: dict[str, Any], *,
               once: str = "") -> Any: ...


@dataclass(frozen=True)
class Transition:
    scope: str
    src: BreakerState
    dst: BreakerState
    reason: str


def scopes_for(step: str | None, workflow: str | None) -> list[str]:
    """Breaker scopes for one workflow step, narrowest first (``global`` always last)."""
    out: list[str] = []
    if step:
        out.append(f"step:{workflow}/{step}" if workflow else f"step:{step}")
    if workflow:
        out.append(f"workflow:{workflow}")
    out.append(GLOBAL)
    return out


def error_scope(error: Any) -> tuple[str | None, str | None]:
    """(step, workflow) the breaker counts an error's fixes under: the workflow is the one
    whose execution state gates it (``workflow.id``, else ``repo:<repository path>``,
    :func:`pipeline.guardrails.execution.workflow_name`), so a default ``heal run`` in one
    checkout never opens the breaker of a same-named step in another."""
    from pipeline.guardrails.execution import workflow_name

    wf, path = error.workflow, error.repo.path
    return wf.step or None, (workflow_name(wf.id, path) if wf.id or path else None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CircuitBreaker:
    """The breaker every stage consults before applying a fix.

    Raises:
        StreamUnavailable: from every method when Redis cannot be reached.
        AccessRefused: from every method when the ACL of its user refuses (exit 2).
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        audit: Auditor | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.config = config or BreakerConfig()
        self.clock = clock
        self.audit: Auditor = audit if audit is not None else AuditLog(
            settings, redis_client=client)
        self._allow = client.register_script(lua.ALLOW)
        self._record_lua = client.register_script(lua.RECORD)

    # --- keys -------------------------------------------------------------------------
    def _base(self, scope: str) -> str:
        # one hash tag for every breaker key, so the scripts also run on Redis Cluster
        return self.settings.key("{breaker}", scope)

    def _keys(self, scopes: list[str]) -> list[str]:
        keys: list[str] = []
        for scope in scopes:
            base = self._base(scope)
            keys += [f"{base}:state", f"{base}:calls", f"{base}:reverts", f"{base}:probes"]
        return keys

    @property
    def _index(self) -> str:
        return self.settings.key("{breaker}", "scopes")

    # --- decisions --------------------------------------------------------------------
    def allow(
        self, scope_step: str | None, scope_workflow: str | None, category: str = "SAFE"
    ) -> tuple[bool, str]:
        """May a fix of ``category`` run for this step now? Returns (allowed, reason).

        In HALF_OPEN this takes a probe slot; the outcome (``record_success`` /
        ``record_revert``) releases it, or its timeout re-opens the breaker.
        """
        scopes = scopes_for(scope_step, scope_workflow)
        c = self.config
        args: list[str | float] = [
            self.clock(), c.cooldown_s, c.half_open_probes, c.probe_timeout_s,
            str(category).upper(), uuid.uuid4().hex, *scopes,
        ]
        try:
            allowed, reason, _token, changes = self._allow(keys=self._keys(scopes), args=args)
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        self._audit_changes(changes)
        return bool(int(allowed)), _text(reason)

    def refusal(self, scope_step: str | None, scope_workflow: str | None,
                category: str = "SAFE", probe: bool = False) -> str:
        """Why a fix decided earlier may not be applied now ('' when it may); reads only.

        The apply stage asks this right before an automatic application: a verdict decided
        while the breaker was CLOSED must not be applied after it opened. OPEN refuses
        whatever its cooldown (the cooldown is for new decisions, whose ``allow`` takes a
        probe); HALF_OPEN lets through only the SAFE fix whose own pre-flight took the probe
        (``probe``); FORCED_OPEN refuses.

        Raises:
            StreamUnavailable: Redis cannot be reached.
        """
        scopes = scopes_for(scope_step, scope_workflow)
        try:
            pipe = self.client.pipeline(transaction=False)
            for scope in scopes:
                pipe.hmget(f"{self._base(scope)}:state", "state", "reason")
            rows = pipe.execute()
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        for scope, (raw_state, raw_reason) in zip(scopes, rows, strict=True):
            state = _text(raw_state) if raw_state else BreakerState.CLOSED.value
            why = _text(raw_reason) if raw_reason else ""
            if state == BreakerState.FORCED_OPEN:
                return f"breaker FORCED_OPEN at {scope} ({why}); run heal breaker reset"
            if state == BreakerState.OPEN:
                return f"breaker OPEN at {scope} ({why})"
            if state == BreakerState.HALF_OPEN and not (
                    probe and str(category).upper() == "SAFE"):
                return f"breaker HALF_OPEN at {scope}: only its SAFE probe may be applied"
        return ""

    def record_revert(
        self, scope_step: str | None, scope_workflow: str | None, event_id: str = ""
    ) -> list[Transition]:
        """Count a reverted (rolled back) fix; may trip the breaker. Idempotent per event id."""
        return self._record("revert", scope_step, scope_workflow, event_id)

    def record_success(
        self, scope_step: str | None, scope_workflow: str | None, event_id: str = ""
    ) -> list[Transition]:
        """Count a fix that held; closes a HALF_OPEN breaker after enough probes."""
        return self._record("success", scope_step, scope_workflow, event_id)

    def _record(
        self, kind: str, step: str | None, workflow: str | None, event_id: str
    ) -> list[Transition]:
        scopes = scopes_for(step, workflow)
        c = self.config
        args: list[Any] = [self.clock(), c.window_s, c.half_open_probes, kind,
                           event_id or uuid.uuid4().hex, int(c.window_s * 2) + 60]
        for scope in scopes:
            args += [scope, c.threshold(scope), c.min_volume]
        try:
            self.client.sadd(self._index, *scopes)
            changes = self._record_lua(keys=self._keys(scopes), args=args)
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        # (the error whose revert or success made the change: heal explain finds the trip a
        # fingerprint's rollback caused by it)
        return self._audit_changes(changes, event_id)

    # --- manual control ---------------------------------------------------------------
    def force_open(self, scope: str = GLOBAL, reason: str = "opened by hand") -> Transition:
        """``heal breaker open``: refuse every fix at ``scope`` until ``reset``."""
        # the brake engages even when its record cannot be written (logged as not audited,
        # like the breaker's own trips): refusing fixes is never what an audit guards against
        return self._set(scope, BreakerState.FORCED_OPEN, reason, strict=False)

    def known(self, scope: str) -> bool:
        """Whether ``scope`` is ``global`` or one the breaker has counted or been set at.

        Raises:
            StreamUnavailable: Redis cannot be reached.
        """
        try:
            return scope == GLOBAL or bool(self.client.sismember(self._index, scope))
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc

    def reset(self, scope: str = GLOBAL, reason: str = "reset by hand") -> Transition:
        """``heal breaker reset``: CLOSED with empty windows.

        Raises: AuditError (nothing changed), StreamUnavailable."""
        base = self._base(scope)
        return self._set(scope, BreakerState.CLOSED, reason,
                         clear=(f"{base}:calls", f"{base}:reverts", f"{base}:probes"))

    def _set(self, scope: str, state: BreakerState, reason: str,
             clear: tuple[str, ...] = (), strict: bool = True) -> Transition:
        """A change by hand. ``strict`` (a reset, which lets fixes through again): audited
        before it is made, and not made when the record cannot be written; else made, and a
        record that cannot be written is logged as missing (as for the breaker's own trips).

        Raises: AuditError (strict: nothing changed), StreamUnavailable."""
        check_scope(scope)
        key = f"{self._base(scope)}:state"
        try:
            old = self.client.hget(key, "state")
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        src = BreakerState(_text(old)) if old else BreakerState.CLOSED
        transition = Transition(scope, src, state, reason)
        if strict:
            self.audit.append("breaker.transition", scope,
                              {"from": src.value, "to": state.value, "reason": reason})
        try:
            if clear:
                self.client.delete(*clear)
            # who set it by hand (shown for FORCED_OPEN, which only a person sets and only
            # a reset, by hand too, ends)
            self.client.hset(key, mapping={"state": state.value, "opened_at": self.clock(),
                                           "reason": reason,
                                           "by": (current() or {}).get("who", "")})
            self.client.sadd(self._index, scope)
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        if not strict:
            self._audit([transition])
        return transition

    # --- status -----------------------------------------------------------------------
    def scope_status(self, scope: str) -> dict[str, Any]:
        base = self._base(scope)
        now = self.clock()
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(f"{base}:state")
        pipe.zcount(f"{base}:calls", now - self.config.window_s, "+inf")
        pipe.zcount(f"{base}:reverts", now - self.config.window_s, "+inf")
        pipe.zcard(f"{base}:probes")
        raw, calls, reverts, probes = pipe.execute()
        fields = {_text(k): _text(v) for k, v in raw.items()}
        state = BreakerState(fields.get("state", "CLOSED"))
        out: dict[str, Any] = {
            "state": state.value,
            "reason": fields.get("reason", ""),
            "calls_in_window": int(calls),
            "reverts_in_window": int(reverts),
            "threshold": self.config.threshold(scope),
            "probes_in_flight": int(probes),
        }
        if state is BreakerState.FORCED_OPEN and fields.get("by"):
            out["by"] = fields["by"]
        if state is BreakerState.OPEN:
            opened = float(fields.get("opened_at", now))
            remaining = self.config.cooldown_s - (now - opened)
            out["cooldown_remaining_s"] = max(0.0, round(remaining, 1))
        return out

    def status(self) -> dict[str, Any]:
        """Every known scope and the worst state among them (``state``)."""
        try:
            names = sorted({_text(s) for s in self.client.smembers(self._index)} | {GLOBAL})
            scopes = {name: self.scope_status(name) for name in names}
        except redis.RedisError as exc:
            raise redis_failure(exc, "circuit breaker", self.settings.prefix) from exc
        states = {BreakerState(s["state"]) for s in scopes.values()}
        worst = next(s for s in SEVERITY if s in states or s is BreakerState.CLOSED)
        open_scopes = [n for n, s in scopes.items() if s["state"] != BreakerState.CLOSED]
        return {"state": worst.value, "open_scopes": open_scopes, "scopes": scopes,
                "config": asdict(self.config)}

    # --- audit ------------------------------------------------------------------------
    def _audit_changes(self, changes: Any, error_id: str = "") -> list[Transition]:
        transitions = []
        for raw in changes or []:
            scope, src, dst, reason = _text(raw).split("|", 3)
            transitions.append(Transition(scope, BreakerState(src), BreakerState(dst), reason))
        self._audit(transitions, error_id)
        return transitions

    def _audit(self, transitions: list[Transition], error_id: str = "") -> None:
        for t in transitions:
            data = {"from": t.src.value, "to": t.dst.value, "reason": t.reason}
            if error_id:
                data["error_id"] = error_id
            try:
                self.audit.append("breaker.transition", t.scope, data)
            except (HealError, OSError) as exc:  # the decision stands; say loudly it is unlogged
                log.error("breaker transition %s %s->%s not audited: %s",
                          t.scope, t.src, t.dst, exc)


def check_scope(scope: str) -> None:
    """Raises UsageError unless ``scope`` is ``global``, ``workflow:W``, ``step:W/S`` or
    ``step:S`` (a step outside any workflow), each name holding more than blanks and ``/``
    (no event makes such a scope: ``scopes_for`` skips an empty step or workflow)."""
    kind, _, name = scope.partition(":")
    if scope == GLOBAL or (kind in ("workflow", "step") and name.strip(" \t/")):
        return
    raise UsageError(
        f"unknown breaker scope {scope!r}: use 'global', 'workflow:NAME' or 'step:WORKFLOW/STEP'"
    )


def breaker_status(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """The breaker section of ``heal status --json``: ``{"state", "open_scopes", "scopes",
    "config"}``.

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    from pipeline.trust.operator import operator_config

    # the thresholds in force: the operator's [breaker] (or the defaults)
    return CircuitBreaker(client, settings, operator_config(settings).limits.breaker()).status()
