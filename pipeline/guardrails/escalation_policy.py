"""The ``[escalation]`` block of ``heal.toml``: who hears about what, and when.

::

    [escalation]
    defaults = true                 # keep the built-in rules after yours (default true)
    dedupe_hours = 24               # one notification per (fingerprint, rule) in this period;
                                    # a repository may only lower the operator's (its
                                    # [escalation] dedupe_hours): the key is shared

    [[escalation.rules]]
    name = "database-now"           # required, unique
    when = "immediate"              # immediate | attempts | unresolved
    attempts = 2                    # when = "attempts": after this many failed attempts
    after_hours = 4                 # when = "unresolved": still unfixed this long after first seen
    patterns = ["db.*"]             # pattern ids (globs); empty or absent: any pattern
    categories = ["MODERATE"]       # SAFE | MODERATE | RISKY; empty or absent: any
    severity = "critical"           # info | warning | critical (default warning)
    action = "page the on-call DBA" # the suggested action in the notification

Rules are tried in order, yours first; the first that matches notifies. Time-based rules
(``unresolved``) are checked by the lifecycle stage's sweep as well as after each outcome.
Invalid values raise :class:`~pipeline.errors.PolicyError` naming the key, the value and the
rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import PolicyError, bound
from pipeline.guardrails.escalation import DEFAULT_RULES, EscalationRule, Severity, Trigger

KEYS = {"defaults", "dedupe_hours", "rules"}
RULE_KEYS = {"name", "when", "attempts", "after_hours", "patterns", "categories", "severity",
             "action"}
WHEN = {"immediate": Trigger.IMMEDIATE, "attempts": Trigger.AFTER_ATTEMPTS,
        "unresolved": Trigger.AFTER_DURATION}
CATEGORIES = ("SAFE", "MODERATE", "RISKY")
MAX_HOURS = 24 * 365


@dataclass(frozen=True)
class EscalationPolicy:
    rules: tuple[EscalationRule, ...] = DEFAULT_RULES
    dedupe_hours: float = 24.0
    #: the file set ``dedupe_hours`` (else the operator's value is in force)
    dedupe_set: bool = False

    @property
    def dedupe_s(self) -> int:
        return int(self.dedupe_hours * 3600)


def _table(key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(key, value, "must be a table")
    for sub in value:
        if sub not in allowed:
            raise PolicyError(f"{key}.{sub}", value[sub],
                              "unknown key; allowed: " + ", ".join(sorted(allowed)))
    return value


def _number(key: str, value: Any, low: float, high: float, *, integer: bool = False) -> float:
    ok = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise PolicyError(key, value, f"must be {kind} from {bound(low)} to {bound(high)}")
    return float(value)


def _strings(key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(key, value, "must be a list of non-empty strings")
    return frozenset(value)


def _rule(key: str, raw: Any) -> EscalationRule:
    raw = _table(key, raw, RULE_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{key}.name", name, "every rule needs a non-empty name")
    when = raw.get("when", "immediate")
    if when not in WHEN:
        raise PolicyError(f"{key}.when", when, "must be one of " + ", ".join(WHEN))
    trigger = WHEN[when]
    attempts = 0
    duration_s = 0.0
    if trigger is Trigger.AFTER_ATTEMPTS:
        if "attempts" not in raw:
            raise PolicyError(f"{key}.attempts", None, 'required when when = "attempts"')
        attempts = int(_number(f"{key}.attempts", raw["attempts"], 1, 1000, integer=True))
    if trigger is Trigger.AFTER_DURATION:
        if "after_hours" not in raw:
            raise PolicyError(f"{key}.after_hours", None, 'required when when = "unresolved"')
        duration_s = _number(f"{key}.after_hours", raw["after_hours"], 0.01, MAX_HOURS) * 3600
    categories = _strings(f"{key}.categories", raw.get("categories", []))
    wrong = sorted(c for c in categories if c not in CATEGORIES)
    if wrong:
        raise PolicyError(f"{key}.categories", wrong, "must be among " + ", ".join(CATEGORIES))
    severity = raw.get("severity", "warning")
    if severity not in Severity.__members__.values():
        raise PolicyError(f"{key}.severity", severity,
                          "must be one of " + ", ".join(s.value for s in Severity))
    action = raw.get("action", "look at the error and the actions tried, then fix it by hand")
    if not isinstance(action, str):
        raise PolicyError(f"{key}.action", action, "must be a string")
    return EscalationRule(name, trigger, attempts=attempts, duration_s=duration_s,
                          categories=categories,
                          patterns=_strings(f"{key}.patterns", raw.get("patterns", [])),
                          severity=Severity(severity), suggested_action=action)


def parse_escalation(raw: Any) -> EscalationPolicy:
    """Build the escalation policy from the ``[escalation]`` table (absent: the defaults).

    Raises:
        PolicyError: names the key (``escalation.rules[N].when``...), the value and the rule.
    """
    table = _table("escalation", raw, KEYS)
    defaults = table.get("defaults", True)
    if not isinstance(defaults, bool):
        raise PolicyError("escalation.defaults", defaults, "must be true or false")
    dedupe = _number("escalation.dedupe_hours", table.get("dedupe_hours", 24), 0, MAX_HOURS)
    rules_raw = table.get("rules", [])
    if not isinstance(rules_raw, list):
        raise PolicyError("escalation.rules", rules_raw, "must be an array of tables "
                          "([[escalation.rules]])")
    rules = [_rule(f"escalation.rules[{i}]", r) for i, r in enumerate(rules_raw)]
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyError("escalation.rules", dupes, "rule names must be unique")
    return EscalationPolicy(tuple(rules) + (DEFAULT_RULES if defaults else ()), dedupe,
                            dedupe_set="dedupe_hours" in table)
