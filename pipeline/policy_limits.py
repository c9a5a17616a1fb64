"""The guardrails' thresholds as ``heal.toml`` keys: one table of (section, key, kind, range,
default), validated with a message naming the key and the allowed range.

    [execution]                     # workflow execution state (pipeline/guardrails/execution.py)
    degrade_after = 3               # consecutive failures of one kind -> DEGRADED
    recover_after = 3               # consecutive successes -> back to RUNNING
    quarantine_failures = 10        # failures within the window -> QUARANTINED
    quarantine_window_minutes = 10
    quarantine_quiet_minutes = 60   # no failure for this long lifts QUARANTINED
    degraded_confidence_bonus = 0.1 # DEGRADED: added to min_auto_confidence
    min_auto_confidence = 0.7       # lowest lookup score an automatic fix may act on

    [budget]                        # cost controls (pipeline/guardrails/budget.py)
    automatic_fixes = 20            # token bucket: automatic fixes per ...
    automatic_fixes_minutes = 10    # ... this many minutes
    deferred_retry_seconds = 30     # a deferred automatic fix is retried after this long
    verification_minutes = 240      # daily limits
    llm_tokens = 500000
    fix_applications = 200

    [breaker]                       # circuit breaker (pipeline/guardrails/breaker.py)
    window_minutes = 60
    step_threshold = 2
    workflow_threshold = 2
    global_threshold = 5
    min_volume = 2
    cooldown_minutes = 30
    half_open_probes = 1            # fixes let through after the cooldown to test recovery
    probe_timeout_minutes = 15      # a probe with no outcome by then re-opens the breaker

    [lifecycle]                     # graduation (pipeline/lifecycle/graduation.py)
    automate_threshold = 0.9
    min_attempts = 10
    deprecate_below = 0.5
    unused_days = 90
    confidence = 0.95
    unrunnable_quarantine_after = 3 # a fix whose command cannot run, this many times

    [branches]                      # heal's heal/ branches per repository (pipeline/branches.py)
    keep = 20                       # the newest this many are kept (0: none beyond need)
    max_age_days = 14               # an older one is removed

The same tables may appear in operator configuration (``pipeline.trust.operator``), which
decides what a repository's ``heal.toml`` may do with each key (:attr:`Key.tighter`):

- ``[branches]`` the repository decides (they are its own branches); the operator's value is
  the default where the file says nothing;
- ``[breaker]`` and ``[lifecycle]`` are the operator's only: the breaker's state and a fix's
  lifecycle state are shared by every repository, so one repository's file must not decide
  them; a repository's value is ignored with a warning naming the key;
- ``[execution]`` degrade_after, recover_after and the quarantine_* keys are the operator's
  only too: they move a workflow's execution state, which is keyed by the workflow's name
  alone (``GITHUB_WORKFLOW`` is "CI" in many repositories), so it is shared;
- ``execution.min_auto_confidence``, ``execution.degraded_confidence_bonus`` and ``[budget]``
  a repository may only tighten (lower or higher, per key), relative to the operator's value
  (the default where the operator says nothing); a looser value is replaced by the
  operator's, with a warning; ``budget.deferred_retry_seconds`` may only be raised (a
  shorter wait re-publishes a deferred fix, with an audit row and an outcome, more often).

:meth:`Limits.source` says where each value in force came from (``file``, ``operator`` or
``default``); ``pipeline.trust.operator.cap_limits`` applies the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PolicyError, bound


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    integer: bool
    low: float
    high: float
    default: float
    low_open: bool = False  # True: the value must be > low (not >=)
    #: what a repository's heal.toml may do with it: "operator" (nothing: the operator's
    #: only), "lower" / "higher" (only tighten: a lower / higher value is the stricter one),
    #: "rate" (the token bucket's window: only as long as the refill rate, automatic_fixes
    #: per automatic_fixes_minutes, stays at most the operator's), "" (the repository
    #: decides)
    tighter: str = "operator"

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    def rule(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low = f"> {bound(self.low)}" if self.low_open else f">= {bound(self.low)}"
        return f"must be {kind} {low} and <= {bound(self.high)}"

    def parse(self, value: Any) -> float:
        ok_type = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            raise PolicyError(self.path, value, self.rule())
        # NaN compares False with everything (no range check holds it), infinity is no limit
        if isinstance(value, float) and not math.isfinite(value):
            raise PolicyError(self.path, value, self.rule())
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            raise PolicyError(self.path, value, self.rule())
        return float(value)


KEYS: tuple[Key, ...] = (
    # the workflow's state is keyed by its name alone ("CI" in many repositories), so the
    # thresholds that move it are the operator's; the two below gate this repository's fixes
    Key("execution", "degrade_after", True, 1, 1000, 3),
    Key("execution", "recover_after", True, 1, 1000, 3),
    Key("execution", "quarantine_failures", True, 1, 100_000, 10),
    Key("execution", "quarantine_window_minutes", False, 0, 10_080, 10, low_open=True),
    Key("execution", "quarantine_quiet_minutes", False, 0, 43_200, 60, low_open=True),
    Key("execution", "degraded_confidence_bonus", False, 0, 1, 0.1, tighter="higher"),
    Key("execution", "min_auto_confidence", False, 0, 1, 0.7, tighter="higher"),
    Key("budget", "automatic_fixes", True, 1, 1_000_000, 20, tighter="lower"),
    Key("budget", "automatic_fixes_minutes", False, 0, 10_080, 10, low_open=True,
        tighter="rate"),
    Key("budget", "deferred_retry_seconds", False, 0.1, 86_400, 30, tighter="higher"),
    Key("budget", "verification_minutes", False, 0, 1e9, 240, tighter="lower"),
    Key("budget", "llm_tokens", False, 0, 1e12, 500_000, tighter="lower"),
    Key("budget", "fix_applications", False, 0, 1e9, 200, tighter="lower"),
    Key("breaker", "window_minutes", False, 0, 10_080, 60, low_open=True),
    Key("breaker", "step_threshold", True, 1, 1000, 2),
    Key("breaker", "workflow_threshold", True, 1, 1000, 2),
    Key("breaker", "global_threshold", True, 1, 10_000, 5),
    Key("breaker", "min_volume", True, 1, 10_000, 2),
    Key("breaker", "cooldown_minutes", False, 0, 10_080, 30, low_open=True),
    Key("breaker", "half_open_probes", True, 1, 100, 1),
    Key("breaker", "probe_timeout_minutes", False, 0, 10_080, 15, low_open=True),
    Key("lifecycle", "automate_threshold", False, 0, 1, 0.9),
    Key("lifecycle", "min_attempts", True, 1, 100_000, 10),
    Key("lifecycle", "deprecate_below", False, 0, 1, 0.5),
    Key("lifecycle", "unused_days", False, 0, 36_500, 90, low_open=True),
    Key("lifecycle", "confidence", False, 0.5, 0.999, 0.95),
    Key("lifecycle", "unrunnable_quarantine_after", True, 1, 1000, 3),
    # heal's own heal/ branches in each repository (pipeline/branches.py): the repository's
    Key("branches", "keep", True, 0, 100_000, 20, tighter=""),
    Key("branches", "max_age_days", False, 0, 36_500, 14, low_open=True, tighter=""),
)
SECTIONS = tuple(dict.fromkeys(k.section for k in KEYS))
_BY_PATH = {k.path: k for k in KEYS}


@dataclass(frozen=True)
class Limits:
    """Every guardrail threshold in force (defaults where the file says nothing)."""

    values: tuple[tuple[str, float], ...] = tuple((k.path, k.default) for k in KEYS)
    from_file: frozenset[str] = frozenset()
    #: keys whose value is the operator configuration's (it set them, or capped the file's)
    from_operator: frozenset[str] = frozenset()

    def get(self, path: str) -> float:
        return dict(self.values)[path]

    def count(self, path: str) -> int:
        return int(self.get(path))

    def source(self, path: str) -> str:
        if path in self.from_file:
            return "file"
        return "operator" if path in self.from_operator else "default"

    # -- the guardrails' own config objects ---------------------------------------------------

    def execution(self) -> Any:
        from pipeline.guardrails.execution import ExecutionPolicy

        g = self.get
        return ExecutionPolicy(
            degrade_after=self.count("execution.degrade_after"),
            recover_after=self.count("execution.recover_after"),
            quarantine_failures=self.count("execution.quarantine_failures"),
            quarantine_window_s=g("execution.quarantine_window_minutes") * 60,
            quarantine_quiet_s=g("execution.quarantine_quiet_minutes") * 60,
            degraded_confidence_bonus=g("execution.degraded_confidence_bonus"))

    def budget(self) -> Any:
        from pipeline.guardrails.budget import BudgetConfig

        g = self.get
        return BudgetConfig(
            daily_limits={kind: g(f"budget.{kind}")
                          for kind in ("verification_minutes", "llm_tokens", "fix_applications")})

    def breaker(self) -> Any:
        from pipeline.guardrails.breaker import BreakerConfig

        return BreakerConfig(
            window_s=self.get("breaker.window_minutes") * 60,
            step_threshold=self.count("breaker.step_threshold"),
            workflow_threshold=self.count("breaker.workflow_threshold"),
            global_threshold=self.count("breaker.global_threshold"),
            min_volume=self.count("breaker.min_volume"),
            cooldown_s=self.get("breaker.cooldown_minutes") * 60,
            half_open_probes=self.count("breaker.half_open_probes"),
            probe_timeout_s=self.get("breaker.probe_timeout_minutes") * 60)

    def lifecycle(self) -> Any:
        from pipeline.lifecycle.graduation import LifecyclePolicy

        return LifecyclePolicy(
            automate_threshold=self.get("lifecycle.automate_threshold"),
            min_attempts=self.count("lifecycle.min_attempts"),
            deprecate_below=self.get("lifecycle.deprecate_below"),
            unused_days=self.get("lifecycle.unused_days"),
            confidence=self.get("lifecycle.confidence"),
            unrunnable_after=self.count("lifecycle.unrunnable_quarantine_after"))


def parse_limits(data: dict[str, Any]) -> Limits:
    """The ``[execution]``, ``[budget]``, ``[breaker]``, ``[lifecycle]`` and ``[branches]``
    tables.

    Raises:
        PolicyError: an unknown key, or a value outside its range (the message names both).
    """
    values = {k.path: k.default for k in KEYS}
    seen: set[str] = set()
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise PolicyError(section, table, "must be a table")
        for name, value in table.items():
            key = _BY_PATH.get(f"{section}.{name}")
            if key is None:
                allowed = ", ".join(k.name for k in KEYS if k.section == section)
                raise PolicyError(f"{section}.{name}", value, f"unknown key; allowed: {allowed}")
            values[key.path] = key.parse(value)
            seen.add(key.path)
    return Limits(tuple(values.items()), frozenset(seen))
