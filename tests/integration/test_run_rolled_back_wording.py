"""`heal run` describes a fix that passed verification and was reverted after the re-run in
the user's tree truthfully (real CLI, real engines, real ruff)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

CHECK = ["ruff", "format", "--check", "."]


def test_a_fix_reverted_after_the_re_run_is_not_called_failed_verification(
        tmp_path: Path, heal_env: dict[str, str], own_database: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # (own_database: the rollback quarantines the seed fix, which later tests apply)
    # Given a committed formatting error, and an untracked unformatted file only the user's
    # tree has (so the fix verifies in a clean worktree but the step still fails at home)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "c.py").write_text("x  =  1\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    (root / "scratch.py").write_text("y  =  2\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # When heal run applies the fix under auto-safe
    assert main(["run", "--mode", "auto-safe", "--timeout", "120", "--", *CHECK]) == 1
    err = capsys.readouterr().err
    # Then it says the fix passed verification and was rolled back after applying
    assert ("format.ruff_format/fix passed verification and was applied, but the step still "
            "failed here, so it was rolled back: still failing after applying (exit 1); "
            "reverted by") in err, err
    assert "failed verification" not in err
