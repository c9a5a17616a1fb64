"""Learning from precedent on a real git repository and a real PostgreSQL."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from pipeline.lifecycle.precedent import PrecedentLearner
from storage.db import Database
from storage.lifecycle import PrecedentRepository


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_failed_then_fixed_step_becomes_a_draft(db: Database, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "app.py").write_text("import os\nx = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "broken")
    bad = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("x = 1\n")
    git(repo, "commit", "-qam", "fixed by a person")
    good = git(repo, "rev-parse", "HEAD")

    wf, fp = f"wf-{uuid.uuid4().hex[:6]}", "fp-unused-import"
    store = PrecedentRepository(db)
    learner = PrecedentLearner(store)
    assert learner.observe(wf, "lint", False, str(repo), bad, fp) == []
    drafts = learner.observe(wf, "lint", True, str(repo), good)
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft["state"] == "DRAFT" and draft["kind"] == "diff"
    assert "-import os" in draft["rendered"]["diff"]
    assert store.drafts(fp)[-1]["to_commit"] == good
    # the failure was consumed: another success learns nothing more
    assert learner.observe(wf, "lint", True, str(repo), good) == []


def test_same_commit_passing_is_flakiness_not_a_fix(db: Database, tmp_path: Path) -> None:
    wf = f"wf-{uuid.uuid4().hex[:6]}"
    learner = PrecedentLearner(PrecedentRepository(db), diff=lambda *a: pytest.fail("no diff"))
    learner.observe(wf, "test", False, str(tmp_path), "abc", "fp-flaky")
    assert learner.observe(wf, "test", True, str(tmp_path), "abc") == []
