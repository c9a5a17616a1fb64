"""Pure parts of the operator commands: argument parsing, the review loop, rendering."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pipeline.errors import UsageError
from pipeline.operator import issues, metrics
from pipeline.operator.render_explain import render


def test_ages_and_tags() -> None:
    assert issues.parse_age("7d") == dt.timedelta(days=7)
    assert issues.parse_age(" 24h ") == dt.timedelta(hours=24)
    assert issues.parse_age("30m") == dt.timedelta(minutes=30)
    assert issues.parse_age("2w") == dt.timedelta(days=14)
    for bad in ("", "7", "d", "7y", "-1d", "\u0663d"):
        with pytest.raises(UsageError, match="e.g. 7d"):
            issues.parse_age(bad)
    # the maximum (100 years) in every unit, and never an OverflowError or a ValueError
    for top in ("36500d", "5214w", "876000h", "52560000m", "0036500d"):
        assert issues.parse_age(top) <= issues.MAX_AGE
    for over in ("36501d", "5215w", "876001h", "52560001m", "99999999999d", "9" * 5000 + "d"):
        with pytest.raises(UsageError, match="over the maximum of 100 years"):
            issues.parse_age(over)
    assert issues.parse_tag("team = infra") == ("team", "infra")
    assert issues.parse_tag("empty=") == ("empty", "")
    for bad in ("team", "=x"):
        with pytest.raises(UsageError, match="KEY=VALUE"):
            issues.parse_tag(bad)


class _Recorder(issues.Reviewer):
    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.teach = None

    def create_pattern(self, issue: dict[str, Any]) -> str:
        self.done.append(("y", issue["fine"]))
        return issues.pattern_id_for(issue["fine"])

    def ignore(self, issue: dict[str, Any]) -> None:
        self.done.append(("n", issue["fine"]))


def _issue(n: int) -> dict[str, Any]:
    return {"fine": f"fp-v1:{n:016x}", "count": n, "first_seen": "t0", "last_seen": "t1",
            "sample": f"line one\nboom {n}"}


def test_review_loop_asks_again_on_nonsense_and_stops_on_quit_or_eof() -> None:
    answers = iter(["", "what", "Y", "n", "s", "q"])
    shown: list[str] = []
    rev = _Recorder()
    result = rev.interactive([_issue(i) for i in range(1, 6)], lambda _p: next(answers),
                             shown.append)
    assert rev.done == [("y", _issue(1)["fine"]), ("n", _issue(2)["fine"])]
    assert result.skipped == [_issue(3)["fine"]] and result.quit
    assert shown[0].startswith("[1/5] fp-v1:0000000000000001  seen 1x") and "boom 1" in shown[0]
    assert "created DRAFT pattern review.0000000000000001" in shown[1]

    rev = _Recorder()
    result = rev.interactive([_issue(1)], lambda _p: None, shown.append)  # end of input
    assert result.quit and rev.done == []


def test_batch_acts_on_every_selected_group() -> None:
    rev = _Recorder()
    assert rev.batch([_issue(1), _issue(2)], "ignore").ignored == [_issue(1)["fine"],
                                                                     _issue(2)["fine"]]
    assert rev.batch([_issue(3)], "pattern").created == [_issue(3)["fine"]]


def test_metric_windows_and_rates() -> None:
    assert metrics.windows_for(None) == ["24h", "7d", "30d"]
    assert metrics.windows_for("7d") == ["7d"]
    with pytest.raises(UsageError, match="choose one of 24h, 7d, 30d"):
        metrics.windows_for("1y")
    rates = metrics._rates({"errors": 10, "detected": 8, "repair_seconds": [1.0, 2.0, 6.0],
                            "by_status": {"applied": 3, "rolled_back": 1, "failed": 0,
                                          "escalated": 6}})
    assert rates["detection_rate"] == 0.8 and rates["auto_fix_rate"] == 0.3
    assert rates["success_rate"] == 0.75 and rates["mttr_s"] == 3.0 and rates["mttr_p50_s"] == 2.0
    empty = metrics._rates({"errors": 0, "detected": 0, "repair_seconds": [], "by_status": {}})
    assert empty["detection_rate"] is None and empty["success_rate"] is None
    assert empty["mttr_s"] is None
    now = dt.datetime(2026, 1, 10, 5, tzinfo=dt.UTC)
    assert metrics._days(now, dt.timedelta(days=1)) == ["2026-01-09", "2026-01-10"]


def test_explain_render_of_an_unmatched_story() -> None:
    story = {"fingerprint": "fp-v1:00", "level": "fine", "fines": ["fp-v1:00"],
             "why": "no known pattern matched", "sample": "Error: boom", "normalization": {
                 "template": "Error: boom", "hints": [], "params": {}},
             "lookup": {"paths": [], "learned": []}, "patterns": [], "fix_stats": [],
             "rankings": [], "attempts": [], "outcomes": [], "transitions": [],
             "controls": [], "issues": [{"status": "open", "count": 3, "first_seen": "a",
                                         "last_seen": "b"}]}
    text = render(story)
    assert "no pattern matched" in text and "issue queue: open, seen 3x" in text
    assert "hint      nothing masked" in text and "no transitions" in text


def test_explain_text_shows_the_verdict_s_pre_flight_rows() -> None:
    """QA s18c D9: the package manager row was only in ``heal explain --json``."""
    from pipeline.operator.render_explain import _attempt

    attempt = {"created_at": "t", "error_id": "e1", "fix_id": "f", "mode": "suggest",
               "decision": "suggest", "reason": "verified", "votes": [], "runs": [],
               "apply": None, "preflight": [
                   {"name": "applies", "ok": True, "reason": "argv ok"},
                   {"name": "secrets", "ok": False, "reason": "a key in the diff"},
                   {"name": "package manager", "ok": True,
                    "reason": "npm ci (chosen by package-lock.json)"}]}
    lines = _attempt(attempt)
    assert "    pre-flight passed: applies" in lines
    assert "    pre-flight refused secrets: a key in the diff" in lines
    assert "    package manager: npm ci (chosen by package-lock.json)" in lines
    assert _attempt({**attempt, "preflight": None})[-1] == "    reason: verified"
