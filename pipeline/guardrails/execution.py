"""Execution state per workflow, shared by every worker through Redis.

    RUNNING ──3 consecutive failures of one kind──▶ DEGRADED ──3 successes──▶ RUNNING
    any ──10 failures within 10 minutes──▶ QUARANTINED ──quiet for 1 hour, or reset──▶ DEGRADED

DEGRADED raises the confidence a fix needs, pauses learning and makes validation strict.
QUARANTINED applies no automatic fix and tells the orchestrator to stop executing the step.
The small API an orchestrator calls: :meth:`ExecutionGuard.should_execute_step` before a step
and :meth:`ExecutionGuard.on_step_result` after it. State changes run as one Lua script, so
concurrent workers agree.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.guardrails.audit import AuditLog
from pipeline.runtime.connection import glob_escape, redis_failure

log = logging.getLogger("heal.execution")


class WorkflowState(StrEnum):
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    QUARANTINED = "QUARANTINED"


@dataclass(frozen=True)
class ExecutionPolicy:
    degrade_after: int = 3  # consecutive failures of one kind
    recover_after: int = 3  # consecutive successes that end DEGRADED
    quarantine_failures: int = 10
    quarantine_window_s: float = 600.0
    quarantine_quiet_s: float = 3600.0  # no failure for this long lifts QUARANTINED
    degraded_confidence_bonus: float = 0.1


@dataclass(frozen=True)
class StepDecision:
    execute: bool  # run the step at all
    auto_fix: bool  # may heal apply fixes automatically
    state: WorkflowState
    min_confidence_bonus: float  # added to every confidence threshold
    learning: bool  # may the lifecycle learn from this workflow now
    strict_validation: bool
    reason: str


_RESULT = r"""
local h, fails = KEYS[1], KEYS[2]
local now, ok, kind, member = tonumber(ARGV[1]), ARGV[2] == '1', ARGV[3], ARGV[4]
local degrade_after, recover_after = tonumber(ARGV[5]), tonumber(ARGV[6])
local q_n, q_window, quiet = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local state = redis.call('HGET', h, 'state') or 'RUNNING'
local last = tonumber(redis.call('HGET', h, 'last_failure_at') or '0')
local new, why = state, ''
if state == 'QUARANTINED' and now - last >= quiet then
  new, why = 'DEGRADED', 'quiet for ' .. quiet .. 's'
  redis.call('HSET', h, 'successes', 0)  -- recovery from DEGRADED starts counting now
end
if ok then
  redis.call('HSET', h, 'streak_kind', '', 'streak', 0)
  local good = redis.call('HINCRBY', h, 'successes', 1)
  if new == 'DEGRADED' and good >= recover_after then
    new, why = 'RUNNING', good .. ' consecutive successes'
  end
else
  redis.call('HSET', h, 'successes', 0, 'last_failure_at', now)
  local streak = 1
  if redis.call('HGET', h, 'streak_kind') == kind then
    streak = redis.call('HINCRBY', h, 'streak', 1)
  else
    redis.call('HSET', h, 'streak_kind', kind, 'streak', 1)
  end
  redis.call('ZADD', fails, now, member)
  redis.call('ZREMRANGEBYSCORE', fails, '-inf', now - q_window)
  redis.call('EXPIRE', fails, math.ceil(q_window) + 60)
  local recent = redis.call('ZCARD', fails)
  if recent >= q_n then
    if new ~= 'QUARANTINED' then
      new, why = 'QUARANTINED', recent .. ' failures within ' .. q_window .. 's'
    end
  elseif new == 'RUNNING' and streak >= degrade_after then
    new, why = 'DEGRADED', streak .. ' consecutive ' .. kind .. ' failures'
  end
end
if new ~= state then
  redis.call('HSET', h, 'state', new, 'reason', why, 'since', now)
  if new == 'DEGRADED' then redis.call('HSET', h, 'successes', 0) end
end
return {state, new, why}
"""


def workflow_name(workflow_id: str, repo_path: str) -> str:
    """The workflow whose state gates a failure: its ``workflow.id`` (``heal run --workflow``,
    ``HEAL_WORKFLOW``, the hooks' workflow id), else ``repo:<repository path>``."""
    return workflow_id or f"repo:{repo_path}"


def published_workflow_name(workflow_id: str, repo_path: str) -> str:
    """:func:`workflow_name` of a workflow id and repository path given by a caller (the
    hooks, ``heal unquarantine --workflow``), as the event they publish names it: each cut
    and redacted as the event carries it (:func:`pipeline.events.carried_field`), so the
    state is kept under the name the validate and apply stages look up (``gate_for``). Two
    ids over 1 KiB sharing their start are then one workflow's state: the stages cannot tell
    them apart, and a quarantine of one holds the other's fixes too (never the reverse)."""
    from pipeline.events import carried_field

    return workflow_name(carried_field(workflow_id), carried_field(repo_path))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ExecutionGuard:
    """Raises StreamUnavailable (every method) when Redis cannot be reached, AccessRefused
    when the ACL of its user refuses (``redis_failure``)."""

    def __init__(self, client: redis.Redis, settings: Settings,
                 policy: ExecutionPolicy | None = None, *,
                 clock: Callable[[], float] = time.time, audit: Any = None) -> None:
        self.client = client
        self.audit = audit if audit is not None else AuditLog(
            settings, redis_client=client)
        self.settings = settings
        self.policy = policy or ExecutionPolicy()
        self.clock = clock
        self._script = client.register_script(_RESULT)

    def _keys(self, workflow: str) -> list[str]:
        base = self.settings.key("{execution}", workflow or "-")
        return [f"{base}:state", f"{base}:failures"]

    def state(self, workflow: str) -> tuple[WorkflowState, str]:
        try:
            raw = self.client.hmget(self._keys(workflow)[0], "state", "reason", "last_failure_at")
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc
        state = WorkflowState(_text(raw[0])) if raw[0] else WorkflowState.RUNNING
        last = float(_text(raw[2])) if raw[2] else 0.0
        if (state is WorkflowState.QUARANTINED
                and self.clock() - last >= self.policy.quarantine_quiet_s):
            return WorkflowState.DEGRADED, "quarantine lifted after a quiet period"
        return state, _text(raw[1]) if raw[1] else ""

    def known(self, workflow: str) -> bool:
        """Whether any state or failure is recorded for ``workflow`` (:meth:`state` calls a
        workflow never seen, or reset, RUNNING as well)."""
        try:
            return bool(self.client.exists(*self._keys(workflow)))
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc

    def since(self, workflow: str) -> float:
        """When the current state began (epoch seconds; 0.0 for a workflow never changed)."""
        try:
            raw = self.client.hget(self._keys(workflow)[0], "since")
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc
        return float(_text(raw)) if raw else 0.0

    def workflows(self) -> list[dict[str, Any]]:
        """Every workflow with a recorded state: ``[{"workflow", "state", "reason", "since"}]``
        (the state as :meth:`state` reports it, so a quiet quarantine shows as lifted)."""
        head, tail = self.settings.key("{execution}", ""), ":state"
        try:
            keys = [_text(k) for k in self.client.scan_iter(
                match=f"{glob_escape(head)}*{glob_escape(tail)}", count=500)]
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc
        out = []
        for key in sorted(keys):
            workflow = key[len(head):-len(tail)]
            state, reason = self.state(workflow)
            out.append({"workflow": workflow, "state": state.value, "reason": reason,
                        "since": self.since(workflow)})
        return out

    def should_execute_step(self, workflow: str, step: str = "") -> StepDecision:
        """What heal allows for the next run of ``step`` in ``workflow``."""
        state, reason = self.state(workflow)
        if state is WorkflowState.QUARANTINED:
            return StepDecision(False, False, state, 1.0, False, True,
                                f"workflow {workflow} QUARANTINED ({reason}): no automatic fixes")
        if state is WorkflowState.DEGRADED:
            return StepDecision(True, True, state, self.policy.degraded_confidence_bonus, False,
                                True, f"workflow {workflow} DEGRADED ({reason})")
        return StepDecision(True, True, state, 0.0, True, False, "running")

    def on_step_result(self, workflow: str, step: str, ok: bool, kind: str = "",
                       event_id: str = "") -> tuple[WorkflowState, WorkflowState, str]:
        """Record one step result; returns (state before, state after, reason of a change).
        ``kind`` is the failure's kind (a fingerprint or category): only a streak of one kind
        degrades the workflow."""
        p = self.policy
        args: list[str | float] = [
            self.clock(), "1" if ok else "0", kind or "unknown",
            event_id or uuid.uuid4().hex, p.degrade_after, p.recover_after,
            p.quarantine_failures, p.quarantine_window_s, p.quarantine_quiet_s,
        ]
        try:
            before, after, why = self._script(keys=self._keys(workflow), args=args)
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc
        result = WorkflowState(_text(before)), WorkflowState(_text(after)), _text(why)
        if result[0] is not result[1]:
            try:
                self.audit.append("execution.transition", workflow, {
                    "from": result[0].value, "to": result[1].value, "reason": result[2],
                    "step": step})
            except (HealError, OSError) as exc:  # the state change stands; say it is unlogged
                log.error("workflow %s %s->%s (%s) not audited: %s", workflow, *result, exc)
        return result

    def reset(self, workflow: str) -> None:
        """Back to RUNNING with no history (a person looked at it)."""
        try:
            self.client.delete(*self._keys(workflow))
        except redis.RedisError as exc:
            raise redis_failure(exc, "execution state", self.settings.prefix) from exc


def lift_command(workflow: str) -> str:
    """The command that lifts ``workflow``'s state, its id one shell word (``$'...'``
    escapes for control characters): a workflow id is event text (``x; rm -rf ~``), and
    its visible form would name another id."""
    from pipeline.console import shell_quote

    return f"heal unquarantine --workflow {shell_quote(workflow)}"


def execution_status(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """The ``execution`` section of ``heal status --json`` (and ``/api/status``):
    ``{"counts": {state: n}, "workflows": [{"workflow", "state", "reason", "since"}]}``,
    a held (not RUNNING) workflow also with ``lift``: the command that lifts it, its id
    shell-quoted (a workflow id is event text: ``x; rm -rf ~`` pasted from the dashboard
    must stay one argument). Only workflows with a recorded state are listed; any other
    workflow is RUNNING.

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    workflows = ExecutionGuard(client, settings).workflows()
    counts = {s.value: 0 for s in WorkflowState}
    for w in workflows:
        counts[w["state"]] += 1
        if w["state"] != WorkflowState.RUNNING.value:
            w["lift"] = lift_command(str(w["workflow"]))
    return {"counts": counts, "workflows": workflows}
