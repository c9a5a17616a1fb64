"""What an approval surface shows a fix will run (pipeline.apply.preview) and the built-in
playbook actions (pipeline.apply.actions), called directly: the CLI and API tests reach them
only through a heal subprocess, which the mutation run cannot attribute to them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.apply.actions import file_absent, file_exists, run_action
from pipeline.apply.preview import describe_run, will_run
from pipeline.errors import FixError

PLAYBOOK = {
    "kind": "playbook",
    "rendered": {"steps": {
        "pre": [{"name": "lock gone", "action": "file_absent", "args": {"path": ".git/x.lock"}},
                "not a step"],
        "fix": [{"name": "rerun", "argv": ["python", "-m", "unittest", 3]},
                {"name": "wait", "action": "sleep"}],
    }},
}


def test_a_playbook_preview_lists_every_step_with_its_phase_name_and_what_it_runs() -> None:
    assert will_run(PLAYBOOK) == {"steps": [
        {"phase": "pre", "name": "lock gone", "action": "file_absent",
         "args": {"path": ".git/x.lock"}},
        {"phase": "fix", "name": "rerun", "argv": ["python", "-m", "unittest", "3"]},
        {"phase": "fix", "name": "wait", "action": "sleep", "args": {}},
    ]}
    assert describe_run(PLAYBOOK) == [
        '  pre: lock gone: file_absent {"path": ".git/x.lock"}',  # as in the YAML, no repr
        "  fix: rerun: python -m unittest 3",
        "  fix: wait: sleep",
    ]


def test_a_step_without_a_name_is_shown_with_an_empty_one() -> None:
    fix = {"kind": "playbook", "rendered": {"steps": {"fix": [{"argv": ["true"]}]}}}
    assert will_run(fix) == {"steps": [{"phase": "fix", "name": "", "argv": ["true"]}]}


def test_a_command_preview_shows_the_argv_quoted_and_the_manifest_diff() -> None:
    fix = {"kind": "command", "rendered": {"argv": ["pip", "install", "a b"],
                                           "manifest_diff": "+a b\n+c"}}
    assert will_run(fix) == {"argv": ["pip", "install", "a b"], "manifest_diff": "+a b\n+c"}
    assert describe_run(fix) == [
        "  runs: pip install 'a b'",
        "  then declares the dependency (left uncommitted for review):",
        "    +a b", "    +c"]


def test_a_diff_preview_shows_the_diff_and_nothing_shows_for_an_unknown_kind() -> None:
    fix = {"kind": "diff", "rendered": {"diff": "-a\n+b"}}
    assert describe_run(fix) == ["  applies this diff:", "    -a", "    +b"]
    assert will_run({"kind": "other", "rendered": {"argv": ["x"]}}) == {}
    assert will_run(None) == {} and describe_run(None) == []


def test_file_absent_and_file_exists_check_the_path_inside_the_repository(
        tmp_path: Path) -> None:
    assert file_absent(tmp_path, {"path": "x.lock"}) == (True, "x.lock absent")
    (tmp_path / "x.lock").write_text("")
    assert file_absent(tmp_path, {"path": "x.lock"}) == (False, "x.lock still exists")
    assert file_exists(tmp_path, {"path": "x.lock"}) == (True, "x.lock exists")
    with pytest.raises(FixError, match="contains '..'"):
        file_absent(tmp_path, {"path": "../x.lock"})


def test_remove_stale_lock_removes_only_an_old_lock(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    lock.write_text("")
    ok, detail = run_action(tmp_path, "remove_stale_lock", {"path": "index.lock",
                                                            "min_age_s": 60})
    assert not ok and "may be live" in detail and lock.exists()
    old = time.time() - 120
    os.utime(lock, (old, old))
    ok, detail = run_action(tmp_path, "remove_stale_lock", {"path": "index.lock"})
    assert ok and detail.startswith("removed index.lock") and not lock.exists()


def test_a_playbook_step_passing_error_text_to_a_shell_is_refused_and_nothing_runs(
        tmp_path: Path) -> None:
    from pipeline.apply.playbook import StepContext, run_step

    marker = tmp_path / "ran"
    ctx = StepContext(tmp_path, params={"module": "evil"})
    result = run_step(ctx, {"name": "s", "argv": ["sh", "-c", f"echo evil > {marker}"]})
    assert not result["ok"] and "passes error text to a shell" in result["detail"]
    assert not marker.exists()
    # a constant script (no error text in it) runs
    result = run_step(ctx, {"name": "s", "argv": ["sh", "-c", f"echo fine > {marker}"]})
    assert result["ok"] and marker.read_text() == "fine\n"


def test_the_rerun_step_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    from pipeline.apply.playbook import StepContext, run_step

    ctx = StepContext(tmp_path, rerun_argv=("sleep", "5"), rerun_cwd=tmp_path)
    started = time.monotonic()
    result = run_step(ctx, {"action": "rerun", "timeout_s": 0.3})
    assert not result["ok"] and time.monotonic() - started < 4


def test_the_fallbacks_are_the_fix_then_its_unattended_alternatives_only() -> None:
    from pipeline.apply.applier import fallbacks

    fix = {"id": "a", "kind": "command", "alternatives": [
        {"id": "b", "kind": "playbook", "category": "SAFE"},
        {"id": "c", "kind": "playbook", "category": "RISKY"},
        {"id": "d", "kind": "diff", "category": "SAFE"},
        {"id": "e", "kind": "command", "category": "SAFE",
         "rendered": {"argv": ["python", "-m", "pip", "install", "x"]}},
        {"id": "f", "kind": "command", "category": "MODERATE", "rendered": {"argv": ["true"]}},
        "not a fix"]}
    assert [f["id"] for f in fallbacks(fix)] == ["a", "b", "f"]
