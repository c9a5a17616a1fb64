"""An event whose repo.path (or tags.cwd) names a folder that does not exist, or one that is no
git repository, is escalated with the field, its value, what is wrong and what to change, not
"the error names no git repository": the real validate stage on the embedded engines, and
`heal run` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.events import CandidateEvent, ErrorEvent, Repo, Workflow
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX
from tests.integration.test_operator_explain import _word


def _candidate(error_id: str, repo_path: str = "", cwd: str = "") -> CandidateEvent:
    err = ErrorEvent(id=error_id, text="ERROR: x", command=("make",),
                     repo=Repo(path=repo_path), workflow=Workflow(id="wf", step="s"),
                     tags={"cwd": cwd} if cwd else {})
    return CandidateEvent(id=f"{error_id}:lookup", error_id=error_id, error=err,
                          fine=f"fp-{error_id}", fix=FORMAT_FIX)


def test_a_missing_repo_path_is_named_with_what_to_change(
        tmp_path: Path, validator: Validator) -> None:
    gone = tmp_path / "no" / "such" / "checkout"
    verdict = validator.validate(_candidate("rp-missing-1", repo_path=str(gone)))
    assert verdict.decision == "escalate"
    assert verdict.reason.startswith(f"repo.path {gone} does not exist on this machine")
    assert "set repo.path to the folder of a git checkout" in verdict.reason
    assert "names no git repository" not in verdict.reason


def test_a_folder_outside_git_is_named_by_its_field(tmp_path: Path,
                                                    validator: Validator) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    verdict = validator.validate(_candidate("rp-plain-1", repo_path="/elsewhere",
                                            cwd=str(plain)))
    assert verdict.decision == "escalate"
    assert verdict.reason.startswith(f"tags.cwd {plain} is not inside a git repository")
    assert "run `git init` there" in verdict.reason
    a_file = plain / "file.txt"
    a_file.write_text("x")
    verdict = validator.validate(_candidate("rp-file-1", repo_path=str(a_file)))
    assert verdict.reason.startswith(f"repo.path {a_file} is not a folder")


def test_heal_run_outside_git_says_the_folder_is_not_a_repository(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    plain = tmp_path / "plain-run"
    plain.mkdir()
    heal = str(Path(sys.executable).parent / "heal")
    # (an error heal knows a fix for: the repository is what stops it)
    module = f"heal_missing_{_word()}"
    done = subprocess.run([heal, "run", "--timeout", "60", "--", sys.executable, "-c",
                           f"import {module}"],
                          cwd=plain, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **heal_env}, check=False)
    assert done.returncode == 1, done.stderr
    said = done.stdout + done.stderr
    assert f"{plain.resolve()} is not inside a git repository" in said \
        or f"{plain} is not inside a git repository" in said, said
    assert "names no git repository" not in said
