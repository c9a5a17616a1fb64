"""The built-in playbook actions (pipeline.apply.actions), called directly: what each one
changes on disk, what it refuses (hostile paths, wrong files, out-of-range waits) and the
detail it reports. The apply stage reaches them through playbooks; these pin each effect."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.apply.actions import (
    chmod_exec,
    file_exists,
    remove_stale_lock,
    run_action,
    sleep,
)
from pipeline.errors import FixError


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("bad", [None, "", 3, ["x.lock"]])
def test_a_missing_or_non_string_path_is_refused_saying_what_was_given(
        tmp_path: Path, bad: object) -> None:
    with pytest.raises(FixError) as err:
        file_exists(tmp_path, {"path": bad})
    assert str(err.value) == (f"action argument 'path' must be a non-empty string, "
                              f"got {bad!r}")


def test_a_path_with_dotdot_is_refused_even_when_it_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(FixError) as err:
        file_exists(tmp_path, {"path": "a/../x.lock"})
    assert str(err.value) == "path 'a/../x.lock' contains '..'"


def test_a_symlink_leading_outside_is_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    victim = outside / "index.lock"
    victim.write_text("")
    _age(victim, 600)
    (root / "link").symlink_to(outside)
    with pytest.raises(FixError) as err:
        remove_stale_lock(root, {"path": "link/index.lock"})
    assert str(err.value) == "path 'link/index.lock' resolves outside the repository"
    assert victim.exists()
    # an absolute path is outside too
    with pytest.raises(FixError, match="resolves outside the repository"):
        file_exists(root, {"path": str(victim)})


def test_a_path_inside_through_an_inner_symlink_and_the_root_itself_are_allowed(
        tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert file_exists(tmp_path, {"path": "alias/f"}) == (True, "alias/f exists")
    assert file_exists(tmp_path, {"path": "."}) == (True, ". exists")
    assert file_exists(tmp_path, {"path": "nope"}) == (False, "nope missing")


def test_remove_stale_lock_refuses_a_file_that_is_not_a_lock(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.write_text("keep")
    _age(target, 600)
    with pytest.raises(FixError) as err:
        remove_stale_lock(tmp_path, {"path": "index"})
    assert str(err.value) == "remove_stale_lock only removes *.lock files, not index"
    assert target.read_text() == "keep"


def test_remove_stale_lock_of_a_missing_lock_succeeds_saying_it_is_gone(tmp_path: Path) -> None:
    assert remove_stale_lock(tmp_path, {"path": "index.lock"}) == (
        True, "index.lock already gone")


def test_remove_stale_lock_waits_two_seconds_by_default_and_reports_the_age(
        tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    lock.write_text("")
    _age(lock, 1.0)
    ok, detail = remove_stale_lock(tmp_path, {"path": "index.lock"})
    assert not ok and lock.exists()
    assert detail.startswith("index.lock is 1.") and detail.endswith(
        "s old (< 2s): may be live"), detail
    _age(lock, 3.4)
    ok, detail = remove_stale_lock(tmp_path, {"path": "index.lock"})
    assert (ok, detail) == (True, "removed index.lock (3s old)")
    assert not lock.exists()


def test_remove_stale_lock_takes_its_minimum_age_from_the_args(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("")
    _age(lock, 10.0)
    ok, detail = remove_stale_lock(tmp_path, {"path": "x.lock", "min_age_s": "30"})
    assert not ok and "(< 30s)" in detail and lock.exists()
    # old enough: at least min_age_s (the file is a little older than 10 s by now)
    ok, _ = remove_stale_lock(tmp_path, {"path": "x.lock", "min_age_s": 10})
    assert ok and not lock.exists()


def test_chmod_exec_adds_execute_for_everyone_and_keeps_the_other_bits(
        tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o640)
    assert chmod_exec(tmp_path, {"path": "run.sh"}) == (True, "chmod +x run.sh")
    assert stat.S_IMODE(script.stat().st_mode) == 0o751


def test_chmod_exec_of_a_directory_or_a_missing_file_fails_and_changes_nothing(
        tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d").chmod(0o700)
    assert chmod_exec(tmp_path, {"path": "d"}) == (False, "d is not a file")
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert chmod_exec(tmp_path, {"path": "gone.sh"}) == (False, "gone.sh is not a file")


def test_sleep_waits_the_given_seconds_within_zero_to_sixty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []
    # only this module's clock: subprocess waits elsewhere call time.sleep too
    monkeypatch.setattr("pipeline.apply.actions.time",
                        SimpleNamespace(time=time.time, sleep=waited.append))
    assert sleep(tmp_path, {}) == (True, "waited 1s")
    assert sleep(tmp_path, {"seconds": 0}) == (True, "waited 0s")
    assert sleep(tmp_path, {"seconds": "60"}) == (True, "waited 60s")
    assert sleep(tmp_path, {"seconds": 0.25}) == (True, "waited 0.25s")
    assert waited == [1.0, 0.0, 60.0, 0.25]
    for bad in (-0.5, 60.5):
        with pytest.raises(FixError) as err:
            sleep(tmp_path, {"seconds": bad})
        assert str(err.value) == f"sleep seconds must be within 0..60, got {bad}"
    assert waited == [1.0, 0.0, 60.0, 0.25]


def test_run_action_knows_the_aliases_and_names_the_known_ones_for_an_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.apply.actions.time",
                        SimpleNamespace(time=time.time, sleep=lambda s: None))
    lock = tmp_path / "a.lock"
    lock.write_text("")
    _age(lock, 600)
    assert run_action(tmp_path, "remove_lock", {"path": "a.lock"})[0] and not lock.exists()
    assert run_action(tmp_path, "wait", {"seconds": 2}) == (True, "waited 2s")
    assert run_action(tmp_path, "file_absent", {"path": "a.lock"}) == (True, "a.lock absent")
    assert run_action(tmp_path, "file_exists", {"path": "."}) == (True, ". exists")
    (tmp_path / "s").write_text("")
    assert run_action(tmp_path, "chmod_exec", {"path": "s"}) == (True, "chmod +x s")
    # args that are not a mapping are no args at all
    assert run_action(tmp_path, "sleep", ["seconds", 5]) == (True,  # type: ignore[arg-type]
                                                             "waited 1s")
    with pytest.raises(FixError) as err:
        run_action(tmp_path, "rm_rf", {"path": "."})
    assert str(err.value) == (
        "playbook action 'rm_rf' is not built yet (known: chmod_exec, file_absent, "
        "file_exists, remove_lock, remove_stale_lock, sleep, wait)")
