"""Playbooks step by step (pipeline.apply.playbook), called directly on a temporary folder:
which steps run in which order, what each record says, when a playbook counts as done
(validated after an action), when the fallback runs, and the reason given when all fail."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.apply import playbook
from pipeline.apply.playbook import PlaybookRunner, StepContext, run_step


def _touch(path: Path, name: str = "touch") -> dict[str, Any]:
    return {"name": name, "argv": ["touch", str(path)], "timeout_s": 5}


def _exists(path: Path, name: str = "exists") -> dict[str, Any]:
    return {"name": name, "argv": ["test", "-e", str(path)], "timeout_s": 5}


FAIL = {"name": "fails", "argv": ["false"], "timeout_s": 5}


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    # only this module's clock: subprocess waits elsewhere call time.sleep too
    monkeypatch.setattr("pipeline.apply.playbook.time", SimpleNamespace(sleep=slept.append))
    return slept


def test_a_command_step_records_its_exit_code_and_output_tail(tmp_path: Path) -> None:
    ctx = StepContext(tmp_path)
    out = run_step(ctx, {"name": "say", "argv": ["sh", "-c", "pwd; printf 'x%.0s' $(seq 600);"
                                                  " exit 3"]})
    assert out["name"] == "say" and out["ok"] is False
    assert out["exit_code"] == 3 and out["detail"] == "exit 3"
    assert out["tail"] == "x" * 500  # the last 500 characters only
    ok = run_step(ctx, {"name": "pwd", "argv": ["pwd"]})
    assert ok["ok"] is True and ok["exit_code"] == 0 and ok["detail"] == "exit 0"
    assert ok["tail"].strip() == str(tmp_path)  # runs in the repository root


def test_a_step_over_its_timeout_says_so(tmp_path: Path) -> None:
    out = run_step(StepContext(tmp_path), {"name": "hang", "argv": ["sleep", "30"],
                                           "timeout_s": 0.2})
    assert out["ok"] is False and out["detail"].endswith(" (timeout)")


def test_a_step_without_a_timeout_gets_sixty_seconds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], str, float]] = []

    def fake_run(argv: list[str], cwd: str, timeout_s: float) -> dict[str, Any]:
        seen.append((argv, cwd, timeout_s))
        return {"exit_code": 0, "timed_out": False, "tail": ""}

    monkeypatch.setattr(playbook, "run_argv", fake_run)
    ctx = StepContext(tmp_path, rerun_argv=("make", "test"), rerun_cwd=tmp_path / "sub")
    run_step(ctx, {"name": "a", "argv": ["true", 7]})
    run_step(ctx, {"action": "rerun"})
    run_step(ctx, {"action": "rerun", "timeout_s": 9})
    assert seen == [(["true", "7"], str(tmp_path), 60.0),
                    (["make", "test"], str(tmp_path / "sub"), 60.0),
                    (["make", "test"], str(tmp_path / "sub"), 9.0)]


def test_the_rerun_action_runs_the_failing_command_where_it_failed(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "here").write_text("")
    ctx = StepContext(tmp_path, rerun_argv=("test", "-e", "here"), rerun_cwd=sub)
    out = run_step(ctx, {"action": "rerun"})
    assert out == {"name": "rerun", "ok": True, "detail": "re-run exit 0", "tail": ""}
    # without a cwd it runs in the root, where the file is not
    out = run_step(StepContext(tmp_path, rerun_argv=("test", "-e", "here")),
                   {"name": "again", "action": "rerun"})
    assert out["name"] == "again" and out["ok"] is False and out["detail"] == "re-run exit 1"
    # nothing to re-run is not a failure
    assert run_step(StepContext(tmp_path), {"action": "rerun"}) == {
        "name": "rerun", "ok": True, "detail": "no failing command to re-run"}


def test_an_action_step_reports_the_action_and_a_bad_one_fails_without_raising(
        tmp_path: Path) -> None:
    ctx = StepContext(tmp_path)
    assert run_step(ctx, {"action": "file_absent", "args": {"path": "x"}}) == {
        "name": "file_absent", "ok": True, "detail": "x absent"}
    bad = run_step(ctx, {"name": "b", "action": "file_absent", "args": {"path": "../x"}})
    assert bad == {"name": "b", "ok": False, "detail": "path '../x' contains '..'"}
    # an action without args gets none (and refuses for the missing path)
    assert run_step(ctx, {"action": "file_exists"})["detail"].startswith(
        "action argument 'path' must be a non-empty string")


def test_a_step_without_argv_is_refused_and_named(tmp_path: Path) -> None:
    assert run_step(StepContext(tmp_path), {}) == {
        "name": "step", "ok": False,
        "detail": "step 'step' has no argv or passes error text to a shell: []"}
    assert run_step(StepContext(tmp_path), {"name": "n", "argv": []})["detail"].startswith(
        "step 'n' has no argv")


def test_a_playbook_is_done_as_soon_as_validation_passes_after_an_action(
        tmp_path: Path) -> None:
    flag, later = tmp_path / "flag", tmp_path / "later"
    runner = PlaybookRunner(StepContext(tmp_path))
    result = runner.run({"primary": [_touch(flag), _touch(later, "not needed")],
                         "validate": [_exists(flag)]})
    assert result.ok and result.detail == "primary steps done and validated"
    assert not later.exists()  # the second action never ran
    assert [(s["phase"], s["name"], s["ok"]) for s in result.steps] == [
        ("primary", "touch", True), ("validate", "exists", True)]


def test_every_validation_step_must_pass(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"primary": [_touch(flag)], "validate": [_exists(flag), FAIL]})
    assert not result.ok
    assert result.detail == ("every step failed or did not validate (fails: exit 1); "
                             "escalated")


def test_without_validation_every_action_must_succeed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    result = PlaybookRunner(StepContext(tmp_path)).run({"primary": [_touch(a), _touch(b)]})
    assert result.ok and a.exists() and b.exists()
    result = PlaybookRunner(StepContext(tmp_path)).run({"primary": [FAIL, _touch(tmp_path / "c")]})
    assert not result.ok and not (tmp_path / "c").exists()
    assert [s["name"] for s in result.steps] == ["fails"]


def test_no_steps_at_all_is_not_a_success(tmp_path: Path) -> None:
    result = PlaybookRunner(StepContext(tmp_path)).run({})
    assert not result.ok and result.steps == []
    assert result.detail == ("every step failed or did not validate (validation failed); "
                             "escalated")


def test_the_fallback_runs_only_after_the_primary_fails(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"primary": [FAIL], "fallback": [_touch(flag, "fb")], "validate": [_exists(flag)]})
    assert result.ok and result.detail == "primary failed; fallback steps done and validated"
    assert [(s["phase"], s["name"]) for s in result.steps] == [
        ("primary", "fails"), ("fallback", "fb"), ("validate", "exists")]
    other = tmp_path / "other"
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"primary": [_touch(tmp_path / "p")], "fallback": [_touch(other)]})
    assert result.ok and not other.exists()


def test_when_everything_fails_the_last_failed_step_is_named(tmp_path: Path) -> None:
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"primary": [FAIL], "fallback": [{"name": "also", "argv": ["sh", "-c", "exit 4"]}]})
    assert not result.ok
    assert result.detail == "every step failed or did not validate (also: exit 4); escalated"


def test_a_diagnosis_is_tried_three_times_half_a_second_apart_before_giving_up(
        tmp_path: Path, no_sleep: list[float]) -> None:
    touched = tmp_path / "t"
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"diagnosis": [{"name": "probe", "argv": ["false"]}], "primary": [_touch(touched)]})
    assert not result.ok and not touched.exists()
    assert result.detail == ("diagnosis step 'probe' failed: this playbook does not fit; "
                             "escalated")
    assert [s["phase"] for s in result.steps] == ["diagnosis"] * 3
    assert no_sleep == [0.5, 0.5]


def test_a_diagnosis_that_turns_true_lets_the_playbook_run(
        tmp_path: Path, no_sleep: list[float]) -> None:
    counter = tmp_path / "n"
    # false on the first look, true on the second
    probe = {"name": "probe", "argv": ["sh", "-c", f"test -e {counter} || "
                                       f"{{ touch {counter}; exit 1; }}"]}
    done = tmp_path / "done"
    result = PlaybookRunner(StepContext(tmp_path)).run(
        {"diagnosis": [probe], "primary": [_touch(done)]})
    assert result.ok and done.exists()
    assert [s["phase"] for s in result.steps] == ["diagnosis", "diagnosis", "primary"]
    assert no_sleep == [0.5]


def test_the_rerun_action_keeps_the_last_500_characters_of_the_output(tmp_path: Path) -> None:
    ctx = StepContext(tmp_path, rerun_argv=("sh", "-c", "printf 'x%.0s' $(seq 600); printf END"))
    out = run_step(ctx, {"action": "rerun"})
    assert out["tail"] == "x" * 497 + "END"
