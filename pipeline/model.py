"""Domain vocabulary shared by the stages: safety categories, rollout modes, fix kinds and
lifecycle states (with the one table of allowed transitions)."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    SAFE = "SAFE"
    MODERATE = "MODERATE"
    RISKY = "RISKY"

    @property
    def judges_required(self) -> int:
        return {"SAFE": 1, "MODERATE": 2, "RISKY": 3}[self.value]


class Mode(StrEnum):
    OBSERVE = "observe"
    SUGGEST = "suggest"
    AUTO_SAFE = "auto-safe"
    AUTO = "auto"


class FixKind(StrEnum):
    DIFF = "diff"
    COMMAND = "command"
    PLAYBOOK = "playbook"
    ESCALATE = "escalate"  # no safe mechanical fix: explain and hand to a human


class LifecycleState(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    AUTOMATED = "AUTOMATED"
    DEPRECATED = "DEPRECATED"
    QUARANTINED = "QUARANTINED"


#: the one table of allowed lifecycle transitions
LIFECYCLE_TRANSITIONS: dict[LifecycleState, frozenset[LifecycleState]] = {
    LifecycleState.DRAFT: frozenset({LifecycleState.ACTIVE, LifecycleState.QUARANTINED,
                                     LifecycleState.DEPRECATED}),
    LifecycleState.ACTIVE: frozenset({LifecycleState.AUTOMATED, LifecycleState.DEPRECATED,
                                      LifecycleState.QUARANTINED}),
    LifecycleState.AUTOMATED: frozenset({LifecycleState.ACTIVE, LifecycleState.DEPRECATED,
                                         LifecycleState.QUARANTINED}),
    LifecycleState.DEPRECATED: frozenset({LifecycleState.ACTIVE, LifecycleState.QUARANTINED}),
    LifecycleState.QUARANTINED: frozenset({LifecycleState.DRAFT}),  # only via heal unquarantine
}


def can_transition(src: LifecycleState, dst: LifecycleState) -> bool:
    return dst in LIFECYCLE_TRANSITIONS[src]


#: the seeded pattern whose playbook (wait, re-run) is what a flaky failure gets: applying it
#: changes nothing, so it never explains why a step passes afterwards
FLAKY_PATTERN = "test.flaky"
