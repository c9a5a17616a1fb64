"""Asking again with a higher mode is a new request: `heal run --mode auto-safe` right after a
suggestion applies the fix, instead of being refused as a duplicate of the suggestion (real
CLI, real engines, real ruff)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

CHECK = ["ruff", "format", "--check", "."]


def test_auto_safe_right_after_a_suggestion_applies_the_fix(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "c.py").write_text("x  =  1\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert main(["run", "--timeout", "120", "--", *CHECK]) == 1
    assert "suggested fix format.ruff_format/fix" in capsys.readouterr().err
    # the same fingerprint, fix and commit, within limits.dedupe_minutes, a higher mode
    assert main(["run", "--mode", "auto-safe", "--timeout", "120", "--", *CHECK]) == 0
    err = capsys.readouterr().err
    assert "identical request" not in err
    assert (root / "c.py").read_text() == "x = 1\n"
