"""`heal demo --dir DIR` is checked before anything starts: a file, or a folder holding an
earlier demo's repositories, is bad usage (exit 2) with what to change (before: an internal
error after the engines had started, exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main


def test_a_file_or_an_earlier_demo_s_folder_is_refused_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    a_file = tmp_path / "afile"
    a_file.write_text("")
    assert main(["demo", "--dir", str(a_file)]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "earlier" / "shop").mkdir(parents=True)
    assert main(["demo", "--dir", str(tmp_path / "earlier")]) == 2
    assert "already holds shop" in capsys.readouterr().err
    assert not (tmp_path / "home" / "redis").exists()  # no engine was started


def test_a_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path: Path) -> None:
    """`heal demo --dir /proc/x` (or a folder under a file): exit 2 saying what to change,
    checked before the engines start (before: an internal error, exit 1, after they had)."""
    import os
    import subprocess
    import sys

    heal = str(Path(sys.executable).parent / "heal")
    env = {**os.environ, "HEAL_HOME": str(tmp_path / "home")}
    env.pop("HEAL_REDIS_URL", None)
    env.pop("HEAL_DATABASE_URL", None)
    a_file = tmp_path / "afile"
    a_file.write_text("")
    for where in ("/proc/heal-demo-x", str(a_file / "sub")):
        done = subprocess.run([heal, "demo", "--dir", where], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert f"--dir {where}: cannot create it" in done.stderr, done.stderr
        assert "internal error" not in done.stderr and "starting the engines" not in (
            done.stderr + done.stdout)
        assert not (tmp_path / "home" / "redis").exists()  # no engine was started


def test_an_empty_dir_is_refused_not_read_as_the_current_folder(tmp_path: Path) -> None:
    """`heal demo --dir ''` (an unset variable in a script): exit 2 saying what to give, and
    nothing made in the current folder (before: the sample repository was built there)."""
    import os
    import subprocess
    import sys

    heal = str(Path(sys.executable).parent / "heal")
    env = {**os.environ, "HEAL_HOME": str(tmp_path / "home")}
    env.pop("HEAL_REDIS_URL", None)
    env.pop("HEAL_DATABASE_URL", None)
    here = tmp_path / "here"
    here.mkdir()
    for empty in ("", " "):
        try:
            done = subprocess.run([heal, "demo", "--dir", empty], env=env, cwd=here,
                                  capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:  # the demo ran instead of being refused
            raise AssertionError("heal demo --dir '' was not refused") from exc
        assert done.returncode == 2, done.stderr
        assert "--dir: empty; give a folder" in done.stderr, done.stderr
        assert "starting the engines" not in done.stderr + done.stdout
        assert list(here.iterdir()) == []
        assert not (tmp_path / "home" / "redis").exists()  # no engine was started
