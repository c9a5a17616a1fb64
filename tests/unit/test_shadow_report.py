"""Shadow report arithmetic: which fixes a mode applies by itself, verification outcomes,
auto-fix rate and precision (n/a when nothing was verified)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.events import ErrorEvent, VerdictEvent
from pipeline.shadow.report import Row, ShadowReport, _count, _verified, eligible, render


def _verdict(decision: str, runs: list[dict[str, object]], fix: dict[str, object] | None = None
             ) -> VerdictEvent:
    error = ErrorEvent(id="e1", text="boom")
    return VerdictEvent(id="e1:validate", error_id="e1", error=error, fine="fp", decision=decision,
                        reason="r", fix=fix or {}, verification=runs)


RUNS_OK = [{"phase": "before", "name": "failing-command", "exit_code": 1},
           {"phase": "after", "name": "failing-command", "exit_code": 0}]
RUNS_GONE = [{"phase": "before", "name": "failing-command", "exit_code": 0},
             {"phase": "after", "name": "failing-command", "exit_code": 0}]


@pytest.mark.parametrize(("fix", "mode", "expected"), [
    ({"category": "SAFE", "state": "ACTIVE"}, "auto-safe", True),
    ({"category": "SAFE", "state": "DRAFT"}, "auto-safe", False),
    ({"category": "MODERATE", "state": "AUTOMATED"}, "auto-safe", False),
    ({"category": "MODERATE", "state": "AUTOMATED"}, "auto", True),
    ({"category": "SAFE", "state": "QUARANTINED"}, "auto", False),
    ({"category": "RISKY", "state": "ACTIVE"}, "suggest", True),
    ({"category": "SAFE", "state": "QUARANTINED"}, "suggest", False),
    ({"category": "SAFE", "kind": "escalate"}, "auto", False),
])
def test_eligible_follows_validates_rule(fix: dict[str, object], mode: str,
                                         expected: bool) -> None:
    assert eligible(fix, mode) is expected


def test_verification_outcomes() -> None:
    assert _verified(_verdict("apply", RUNS_OK)) == "passed"
    assert _verified(_verdict("reject", RUNS_OK)) == "failed"
    assert _verified(_verdict("reject", RUNS_GONE)) == "not reproducible"
    assert _verified(_verdict("suggest", [])) == "not run"


def test_precision_counts_only_verified_eligible_fixes() -> None:
    report = ShadowReport(mode="auto-safe", errors=4)
    safe: dict[str, object] = {"category": "SAFE", "state": "ACTIVE", "id": "f"}
    moderate: dict[str, object] = {"category": "MODERATE", "state": "ACTIVE", "id": "m"}
    cases = [(_verdict("apply", RUNS_OK, safe), "1"), (_verdict("reject", RUNS_OK, safe), "2"),
             (_verdict("reject", RUNS_GONE, safe), "1"), (_verdict("suggest", [], moderate), "1")]
    for verdict, tier in cases:
        _count(report, Row("e", "e", pattern="p", tier=tier), verdict, "auto-safe")
    assert (report.would_apply, report.rejected, report.suggestions) == (1, 2, 1)
    assert report.by_tier == {"1": 3, "2": 1}
    assert (report.eligible_verified, report.eligible_passed) == (2, 1)
    assert report.not_reproducible == 1
    assert report.precision == 0.5
    assert report.auto_fix_rate == 0.25


def test_render_says_na_when_nothing_could_be_measured() -> None:
    report = ShadowReport(mode="auto", errors=0)
    _count(report, Row("e", "e"), None, "auto")
    text = render(report)
    assert "auto-fix rate     n/a" in text and "precision         n/a" in text
    assert "no verdict        1" in text
    assert report.to_dict()["precision"] is None


def test_render_lists_the_fix_decisions() -> None:
    report = ShadowReport(mode="auto-safe", errors=2)
    report.rows = [Row("e1", "hist-1", fix_id="format/fix", category="SAFE", tier="1",
                       decision="apply", verified="passed"),
                   Row("e2", "hist-2", decision="escalate")]
    text = render(report)
    assert "apply     format/fix (SAFE, tier 1, passed)  hist-1" in text
    assert "hist-2" not in text  # escalations have no fix to show


def test_repeats_of_a_decided_request_are_counted_apart() -> None:
    report = ShadowReport(mode="auto-safe", errors=3)
    safe: dict[str, object] = {"category": "SAFE", "state": "ACTIVE", "id": "f"}
    _count(report, Row("e1", "e1", pattern="p", tier="1"), _verdict("apply", RUNS_OK, safe),
           "auto-safe")
    repeat = replace(_verdict("reject", [], safe), reason="pre-flight refused: dedupe: "
                     "identical request (same fingerprint and fix) already in flight")
    repeats = [Row(eid, eid, pattern="p", tier="1") for eid in ("e2", "e3")]
    for row in repeats:
        _count(report, row, repeat, "auto-safe")
    assert [r.decision for r in repeats] == ["repeat", "repeat"]
    assert (report.would_apply, report.duplicates, report.rejected) == (1, 2, 0)
    assert report.auto_fix_rate == 1.0
    assert "repeats           2" in render(report)


def test_render_groups_errors_with_the_same_decision_and_fix() -> None:
    report = ShadowReport(mode="auto-safe", errors=3)
    report.rows = [Row(f"e{i}", f"hist-{i}", fix_id="net/fix", category="MODERATE", tier="1",
                       decision="suggest") for i in range(3)]
    text = render(report)
    assert "suggest   net/fix (MODERATE, tier 1, not run)  hist-0 (+2 more)" in text
    assert text.count("net/fix") == 1
