"""The ``[escalation]`` table parsed into rules, field by field (pipeline.guardrails
.escalation_policy), checked on the values themselves."""

from __future__ import annotations

from pipeline.guardrails.escalation import Severity, Trigger
from pipeline.guardrails.escalation_policy import parse_escalation


def test_a_rule_keeps_every_field_it_was_given_and_defaults_the_rest() -> None:
    policy = parse_escalation({"rules": [
        {"name": "twice", "when": "attempts", "attempts": 2, "categories": ["SAFE"],
         "patterns": ["format.*"], "severity": "critical", "action": "call Ana"},
        {"name": "plain"},
    ]})
    rules = {r.name: r for r in policy.rules}
    twice, plain = rules["twice"], rules["plain"]
    assert (twice.trigger, twice.attempts, twice.duration_s) == (Trigger.AFTER_ATTEMPTS, 2, 0.0)
    assert twice.categories == frozenset({"SAFE"}) and twice.patterns == frozenset({"format.*"})
    assert twice.severity is Severity("critical") and twice.suggested_action == "call Ana"
    assert (plain.trigger, plain.attempts, plain.patterns, plain.categories) == (
        Trigger.IMMEDIATE, 0, frozenset(), frozenset())
    assert policy.dedupe_hours == 24 and policy.dedupe_s == 24 * 3600
