"""`heal demo` end to end on the real engines: every breakage ends as the demo promises."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main


def test_heal_demo_end_to_end(heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]
                              ) -> None:
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "6/6 as expected" in out
    assert "detected 6, fixed and verified 4, rolled back 1, escalated 1" in out
    # the rollback is explained by the verification evidence
    assert "the fix breaks checks that passed before: tests" in out
    assert "verify failing-command: exit 1 before, 0 with the fix" in out
    # the guardrails: two reverts in one step trip the breaker, the next fix is refused, and
    # the trip, the quarantines and the workflow's degradation are notified with reasons
    assert "heal breaker step:demo-guardrails/checks: CLOSED -> OPEN (2 revert(s)" in out
    assert "pre-flight refused: breaker: breaker OPEN at step:demo-guardrails/checks" in out
    assert "-> QUARANTINED (reverted" in out
    assert "heal execution demo-guardrails: RUNNING -> DEGRADED (3 consecutive SAFE" in out
    assert "breaker tripped: yes; quarantine or degradation: yes; as expected" in out
    # and it runs again with the same result (its database and streams are its own); with
    # --json, stdout is one JSON object (progress on stderr) that carries the guardrails too
    assert main(["demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_expected"] and report["guardrails"]["as_expected"]
    assert report["guardrails"]["breaker_tripped"]
