"""Why an eligible fix was only suggested (DRAFT, not SAFE, not AUTOMATED), and how far a pair
is from AUTOMATED in `heal explain`: real validate stage and `heal explain` in a subprocess on
the embedded engines; the numbers come from the lifecycle's own thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting
from pipeline.validate.validator import Validator
from storage.engines import open_database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo
from tests.integration.test_operator_explain import _fine_of_last_error, _repo, _word


def test_a_draft_fix_in_auto_safe_says_why_it_was_only_suggested(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    draft = {**FORMAT_FIX, "state": "DRAFT"}
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), draft,
                                           mode="auto-safe"))
    assert verdict.decision == "suggest", verdict.reason
    assert "not applied automatically: the fix is DRAFT" in verdict.reason
    assert "makes it ACTIVE" in verdict.reason


def test_a_moderate_fix_in_auto_safe_names_its_category(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    moderate = {**FORMAT_FIX, "category": "MODERATE"}
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), moderate,
                                           mode="auto-safe"))
    assert verdict.decision == "suggest", verdict.reason
    assert "the fix is MODERATE, and mode auto-safe applies SAFE fixes only" in verdict.reason


def test_heal_explain_shows_how_far_a_pair_is_from_automated(
        heal_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an error with a candidate fix, and 25 straight verified successes of that pair
    monkeypatch.chdir(_repo(tmp_path))
    module = f"heal_missing_{_word()}"
    assert main(["run", "--timeout", "60", "--", sys.executable, "-c", f"import {module}"]) == 1
    capsys.readouterr()
    fine = _fine_of_last_error(heal_env)
    db = open_database(Settings.from_env())
    try:
        fix_id = f"grad.{uuid.uuid4().hex[:8]}"
        db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state, successes) "
                   "VALUES ($1, $2, 'ACTIVE', 25)", fine, fix_id)
    finally:
        db.close()
    # When heal explain tells its story
    env = {**os.environ, **heal_env}
    done = subprocess.run([str(Path(sys.executable).parent / "heal"), "explain", fine],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # Then it says what AUTOMATED needs and how far the pair is (defaults: 0.9, 10, 95%)
    assert ("next: AUTOMATED when the lower 95% bound reaches 0.9 over at least 10 attempts "
            "(now 0.891 over 25): 3 more straight successes (25 of 28 successes)") in done.stdout
    done = subprocess.run([str(Path(sys.executable).parent / "heal"), "explain", fine, "--json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    [stat] = [s for s in json.loads(done.stdout)["fix_stats"] if s["fix_id"] == fix_id]
    assert "3 more straight successes" in stat["graduation"]
