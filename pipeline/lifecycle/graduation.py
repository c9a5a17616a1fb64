"""When a (fingerprint, fix) pair changes lifecycle state, and why. Pure functions over the
one transition table of :mod:`pipeline.model`.

    DRAFT ──first verified success──▶ ACTIVE ──lower 95% bound ≥ threshold, ≥ N tries──▶ AUTOMATED
    AUTOMATED ──lower bound falls below threshold──▶ ACTIVE
    ACTIVE/AUTOMATED ──upper bound < deprecate_below, or unused for unused_days──▶ DEPRECATED
    DEPRECATED ──verified success──▶ ACTIVE
    any ──reverted──▶ QUARANTINED ──heal unquarantine only──▶ DRAFT
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipeline.errors import HealError
from pipeline.lifecycle.posterior import Posterior
from pipeline.model import LifecycleState, can_transition

S = LifecycleState


class IllegalTransition(HealError):
    """A state change the transition table does not allow (a bug in the caller)."""


@dataclass(frozen=True)
class LifecyclePolicy:
    automate_threshold: float = 0.9
    min_attempts: int = 10
    deprecate_below: float = 0.5
    unused_days: float = 90.0
    confidence: float = 0.95
    unrunnable_after: int = 3  # a fix whose command cannot run this often is quarantined


#: how the detail of a "failed" outcome begins when the fix's command could not run at all
#: (exit 127: not installed, not found): a failed attempt that counts toward quarantine
UNRUNNABLE = "the fix cannot run"


def cannot_run(runs: list[dict[str, object]]) -> dict[str, object] | None:
    """The first run record that could not start its command (exit code 127), or None."""
    for run in runs:
        if run.get("exit_code") == 127:
            return run
    return None


@dataclass(frozen=True)
class Decision:
    dst: LifecycleState
    reason: str


def check(src: LifecycleState, dst: LifecycleState) -> None:
    """Raises IllegalTransition unless the table allows ``src -> dst``."""
    if not can_transition(src, dst):
        raise IllegalTransition(f"lifecycle: {src} -> {dst} is not an allowed transition")


def after_outcome(
    state: LifecycleState, stats: Posterior, outcome: str, policy: LifecyclePolicy
) -> Decision | None:
    """The transition an outcome causes (``stats`` already include it), or None.

    ``outcome`` is "success" (applied and verified), "failure" (attempted, did not hold but
    nothing was reverted) or "revert" (applied, then rolled back).
    """
    if state is S.QUARANTINED:
        return None  # only `heal unquarantine` leaves quarantine
    if outcome == "revert":
        return Decision(S.QUARANTINED, "reverted: never retried until `heal unquarantine`")
    level = int(policy.confidence * 100)
    if outcome == "success" and state in (S.DRAFT, S.DEPRECATED):
        return Decision(S.ACTIVE, "first verified success" if state is S.DRAFT
                        else "verified success after deprecation")
    lower = stats.lower(policy.confidence)
    enough = stats.attempts >= policy.min_attempts
    if state is S.ACTIVE and automates(stats, policy):
        return Decision(S.AUTOMATED, f"lower {level}% bound {lower:.3f} >= "
                        f"{policy.automate_threshold} over {stats.attempts} attempts")
    upper = stats.upper(policy.confidence)
    if state in (S.ACTIVE, S.AUTOMATED) and enough and upper < policy.deprecate_below:
        return Decision(S.DEPRECATED, f"upper {level}% bound {upper:.3f} < "
                        f"{policy.deprecate_below} over {stats.attempts} attempts")
    if state is S.AUTOMATED and lower < policy.automate_threshold:
        return Decision(S.ACTIVE, f"lower {level}% bound {lower:.3f} fell below "
                        f"{policy.automate_threshold}")
    return None


def automates(stats: Posterior, policy: LifecyclePolicy) -> bool:
    """Whether an ACTIVE pair with ``stats`` graduates to AUTOMATED under ``policy``."""
    return (stats.attempts >= policy.min_attempts
            and stats.lower(policy.confidence) >= policy.automate_threshold)


#: straight successes looked ahead for AUTOMATED at most
LOOKAHEAD = 100_000

#: why a DRAFT fix is never applied automatically (the decision and ``heal explain`` say it)
DRAFT_NOTE = ("the fix is DRAFT: its first verified success (an application that holds, "
              "e.g. by `heal apply`) makes it ACTIVE")


def successes_to_automate(stats: Posterior, policy: LifecyclePolicy) -> int | None:
    """The fewest further straight successes that make an ACTIVE pair AUTOMATED (0: it
    qualifies now), or None when not even :data:`LOOKAHEAD` would (:func:`automates` grows
    with successes, so a binary search)."""
    def enough(k: int) -> bool:
        return automates(Posterior(stats.successes + k, stats.failures), policy)

    if not enough(LOOKAHEAD):
        return None
    low, high = 0, LOOKAHEAD
    while low < high:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid + 1
    return low


def progress(state: LifecycleState, stats: Posterior, policy: LifecyclePolicy) -> str:
    """What the pair needs for its next automatic step, from ``policy``'s thresholds:
    e.g. ``AUTOMATED when the lower 95% bound reaches 0.9 over at least 10 attempts (now
    0.891 over 25): 3 more straight successes (25 of 28)``."""
    level = int(policy.confidence * 100)
    lower = stats.lower(policy.confidence)
    if state is S.DRAFT:
        return f"not applied automatically: {DRAFT_NOTE}"
    if state is S.ACTIVE:
        rule = (f"AUTOMATED when the lower {level}% bound reaches {policy.automate_threshold:g} "
                f"over at least {policy.min_attempts} attempts (now {lower:.3f} over "
                f"{stats.attempts})")
        more = successes_to_automate(stats, policy)
        if more is None:
            return f"{rule}: not within {LOOKAHEAD} more straight successes"
        total = stats.successes + more
        return f"{rule}: {more} more straight successes ({stats.successes} of {total} successes)"
    if state is S.AUTOMATED:
        return (f"stays AUTOMATED while the lower {level}% bound stays >= "
                f"{policy.automate_threshold:g} (now {lower:.3f})")
    if state is S.DEPRECATED:
        return "a verified success makes it ACTIVE again"
    if state is S.QUARANTINED:
        return "only `heal unquarantine` lifts it (back to DRAFT)"
    return ""


def when_unused(
    state: LifecycleState, last_used: dt.datetime | None, now: dt.datetime,
    policy: LifecyclePolicy,
) -> Decision | None:
    """DEPRECATED for an ACTIVE/AUTOMATED pair unused for ``unused_days``."""
    if state not in (S.ACTIVE, S.AUTOMATED) or last_used is None:
        return None
    idle = (now - last_used).total_seconds() / 86400
    if idle >= policy.unused_days:
        return Decision(S.DEPRECATED, f"unused for {idle:.0f} days (policy {policy.unused_days:g})")
    return None


def outcome_kind(status: str) -> str | None:
    """Map an OutcomeEvent status to a lifecycle outcome; None when it is not an attempt."""
    return {"applied": "success", "rolled_back": "revert", "failed": "failure"}.get(status)


@dataclass(frozen=True)
class Transition:
    """One lifecycle state change of a (fingerprint, fix) pair, with its reason."""

    fingerprint: str
    fix_id: str
    src: LifecycleState
    dst: LifecycleState
    reason: str
