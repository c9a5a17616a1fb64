"""The CI providers' formats, on reports built by hand: escaping of workflow commands, the
GITHUB_OUTPUT file, Code Quality merging, the decision JSON of an unresolved error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.ci import github, gitlab, markdown, providers
from pipeline.ci.report import RunReport, headline, locate
from pipeline.events import ErrorEvent, OutcomeEvent, Repo


def _report(tmp_path: Path, status: str = "escalated", exit_status: int = 1) -> RunReport:
    (tmp_path / "a,b.py").write_text("x = 1\n")
    event = ErrorEvent(id="run-1", text="a,b.py:3:1: E999 100% broken\nFound 1 error.",
                       repo=Repo(path=str(tmp_path)), command=("ruff", "check", "."),
                       exit_code=1)
    outcome = OutcomeEvent(id="run-1:apply", error_id="run-1", error=event, fine="fp-v1:abc",
                           status=status, detail="no verified fix\nsecond line")
    # a comma in a file name is rare, but must not break the annotation's properties
    return RunReport(event, exit_status, outcome, params={"file": "a,b.py", "line": 3})


def test_an_unresolved_error_is_an_escaped_error_annotation(tmp_path: Path) -> None:
    report = _report(tmp_path)
    (line,) = github.workflow_commands(report)
    assert line.startswith("::error file=a%2Cb.py,line=3,title=heal::")
    assert "100%25 broken" in line and "\n" not in line


def test_outputs_summary_and_artifacts_without_a_fix(tmp_path: Path) -> None:
    report = _report(tmp_path)
    summary, output = tmp_path / "summary.md", tmp_path / "out"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(tmp_path / "t")}
    assert providers(env) == ["github"]
    stderr = io.StringIO()
    github.report_github(report, env, stderr=stderr)
    assert stderr.getvalue().startswith("::error file=a%2Cb.py,line=3,title=heal::")
    values = dict(ln.split("=", 1) for ln in output.read_text().splitlines())
    assert values["decision"] == "escalated" and values["resolved"] == "false"
    assert values["patch-path"] == "" and values["fix-id"] == ""
    assert not (tmp_path / "t" / "heal" / "fix.patch").exists()
    text = summary.read_text()
    assert "escalated to a human" in text and "no verified fix second line" in text
    assert "no known pattern" in text and "<details>" not in text
    decision = json.loads((tmp_path / "t" / "heal" / "decision.json").read_text())
    assert decision["error"] == {"file": "a,b.py", "line": 3,
                                 "headline": "a,b.py:3:1: E999 100% broken"}


def test_code_quality_merges_steps_and_drops_a_healed_one(tmp_path: Path) -> None:
    path = tmp_path / "gl-code-quality-report.json"
    path.write_text(json.dumps([{"fingerprint": "other", "check_name": "eslint"}]))
    failing = _report(tmp_path)
    issues = gitlab.update_code_quality(failing, path)
    assert [i["fingerprint"] for i in issues] == ["other", gitlab.issue_fingerprint(failing)]
    assert issues[1]["location"] == {"path": "a,b.py", "lines": {"begin": 3}}
    healed = _report(tmp_path, "applied", 0)
    assert [i["fingerprint"] for i in gitlab.update_code_quality(healed, path)] == ["other"]


def test_locate_names_only_files_of_the_repository(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    text = "/usr/lib/python3/x.py:9: in f\n./pkg/mod.py:12:4: error: boom"
    assert locate(text, str(tmp_path)) == ("pkg/mod.py", 12)
    assert locate("nothing here", str(tmp_path)) is None


def test_headline_and_pr_comment(tmp_path: Path) -> None:
    text = "F401 [*] `os` imported but unused\n --> calc/x.py:1:8\n  |\nFound 1 error."
    assert headline(text, 1) == "F401 [*] `os` imported but unused (calc/x.py:1:8)"
    assert headline("", 3) == "command exited with status 3"
    comment = markdown.pr_comment(_report(tmp_path))
    assert comment.startswith("<!-- heal:run -->") and "`ruff check .`" in comment


def test_a_first_time_pass_sets_only_the_outputs(tmp_path: Path) -> None:
    output = tmp_path / "out"
    github.report_passed({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output)})
    values = dict(ln.split("=", 1) for ln in output.read_text().splitlines())
    assert values["decision"] == "none" and values["resolved"] == "true"
    github.report_passed({"GITHUB_OUTPUT": str(tmp_path / "elsewhere")})  # not on GitHub
    assert not (tmp_path / "elsewhere").exists()


def test_issues_list_shows_the_line_that_says_what_failed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from pipeline.cli import issues

    sample = ("F401 [*] `os` imported but unused\n --> calc/util.py:3:8\n  |\n"
              "Found 1 error.\n[*] 1 fixable with the `--fix` option.\n")
    rows = [{"fine": "fp-v1:aa", "count": 2, "last_seen": "2026-11-30 10:00:00",
             "sample": sample}]

    class Store:
        def __init__(self, _db: object) -> None:
            pass

        def open_issues(self, _limit: int) -> list[dict[str, object]]:
            return rows

        def open_issue_count(self) -> int:
            return len(rows)

    class Db:
        def close(self) -> None:
            pass

    monkeypatch.setattr("storage.reports.ReportStore", Store)
    monkeypatch.setattr("storage.engines.open_database", lambda _s: Db())
    assert issues.run_list(argparse.Namespace(limit=10, json=False)) == 0
    out = capsys.readouterr().out
    # the group's label: its fingerprint's headline and failing file (not the raw last line)
    assert "F401: `os` imported but unused (calc/util.py)" in out
    assert "fixable with" not in out and "Found 1 error" not in out


def test_a_diff_with_bidi_controls_is_shown_with_them_visible_and_its_tabs_kept(
    tmp_path: Path
) -> None:
    # Given a fix whose patch hides code behind a right-to-left override (Trojan Source)
    report = _report(tmp_path)
    report.diff = "+\tif role != \"user\u202e \u2066// admin\u2069 \u2066\":\r\n+\tok()\n"
    # When it is shown in the comment and the summary
    for text in (markdown.pr_comment(report), markdown.summary(report)):
        # Then the controls are written out, the tabs and lines kept
        assert "\u202e" not in text and "\u2066" not in text and "\r" not in text
        assert '+\tif role != "user\\u202e \\u2066// admin\\u2069 \\u2066":\n+\tok()' in text


def test_bare_urls_in_prose_cells_are_code_not_links(tmp_path: Path) -> None:
    report = _report(tmp_path)
    assert report.outcome is not None
    report.outcome = OutcomeEvent(
        id="run-1:apply", error_id="run-1", error=report.event, fine="fp-v1:abc",
        status="escalated", detail="verify said HTTPS://evil.example/x|y and www.x.example. ok")
    for text in (markdown.summary(report), markdown.pr_comment(report)):
        (row,) = [line for line in text.splitlines() if line.startswith("| decision |")]
        # (the sentence's full stop stays outside the code span: copying gives the name)
        assert "`HTTPS://evil.example/x\\|y` and `www.x.example`. ok |" in row, row


def test_issue_and_commit_references_in_prose_cells_are_code_not_references(
    tmp_path: Path,
) -> None:
    from pipeline.markdown_text import prose_cell

    # Given prose holding words GitHub turns into references to someone else's issue or
    # commit (a cross-reference on its timeline): #123, owner/repo#1, GH-12, owner/repo@sha,
    # user@sha and a bare SHA
    sha = "0123456789abcdef0123456789abcdef01234567"
    text = (f"see torvalds/linux#1, (#123) GH-12 gh-7 torvalds/linux@{sha[:12]} "
            f"octocat@{sha[:7]} {sha} utf-8 issue 42 #x abcdef")
    # Then each such word is a code span (the punctuation of the sentence around it outside),
    # the rest plain (and still readable)
    assert prose_cell(text) == (
        f"see `torvalds/linux#1`, \\(`#123`\\) `GH-12` `gh-7` `torvalds/linux@{sha[:12]}` "
        f"`octocat@{sha[:7]}` `{sha}` utf-8 issue 42 \\#x abcdef")
    # in bounded time on a long hostile word
    import time

    start = time.monotonic()
    prose_cell("a1" * 500_000 + " " + "#" * 500_000 + " " + "0" * 1_000_000)
    assert time.monotonic() - start < 5
    # and in the job summary and the PR comment
    report = _report(tmp_path)
    assert report.outcome is not None
    report.outcome = OutcomeEvent(
        id="run-1:apply", error_id="run-1", error=report.event, fine="fp-v1:abc",
        status="escalated", detail=f"see torvalds/linux#1 and {sha}")
    for summary in (markdown.summary(report), markdown.pr_comment(report)):
        (row,) = [line for line in summary.splitlines() if line.startswith("| decision |")]
        assert f"see `torvalds/linux#1` and `{sha}` |" in row, row


def test_a_verified_suggestion_with_a_patch_is_called_verified_and_offers_the_patch(
    tmp_path: Path,
) -> None:
    from pipeline.events import VerdictEvent

    # Given a suggestion re-run in a worktree (an "after" run) whose fix has a diff
    report = _report(tmp_path, "suggested")
    assert report.outcome is not None
    report.outcome = OutcomeEvent(
        id="run-1:apply", error_id="run-1", error=report.event, fine="fp-v1:abc",
        status="suggested", fix_id="fmt/fix",
        detail="verified on branch heal/x; apply with: heal apply fmt/fix")
    report.verdict = VerdictEvent(id="run-1:v", error_id="run-1", error=report.event,
                                  decision="suggest", reason="RISKY: heal apply fmt/fix2",
                                  verification=[{"phase": "after", "exit_code": 0}])
    report.diff = "diff --git a/a b/a\n"
    # Then it is called verified, the patch is offered, and the rows name the error id
    (line,) = github.workflow_commands(report)
    assert "heal suggests a verified fix fmt/fix; apply it with: heal apply run-1" in line
    text = markdown.summary(report)
    assert "**verified; waiting to be applied**" in text
    assert "apply with: heal apply `run-1`" in text or "apply with: heal apply run-1" in text
    assert "heal apply fmt/fix2" in text  # another fix's id is left as it is
    assert "Apply it with `heal apply run-1` or `git apply fix.patch`" in text
