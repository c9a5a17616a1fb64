"""Learning from precedent end to end, through `heal run` on the real embedded engines: a
step fails, a person fixes it in a commit, the step passes (a DRAFT fix is learned), the
same breakage comes back on a new commit, and the lookup offers the learned diff; validation
verifies it and only suggests it (a DRAFT is never applied on its own)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import CandidateEvent, OutcomeEvent
from storage.engines import open_database
from storage.lifecycle import PrecedentRepository
from tests.integration._repos import git

BROKEN = """class SettingsDriftError(Exception):
    pass


def load():
    raise SettingsDriftError("answer must be {token}, settings drifted")


load()
"""
FIXED = """def load():
    return {{"answer": "{token}"}}


load()
"""



def commit(repo: Path, text: str, message: str) -> str:
    (repo / "app.py").write_text(text)
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def heal_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["run", "--timeout", "120", "--step", "import-app", *args, "--",
                   sys.executable, "-c", "import app"])
    return status, capsys.readouterr().err


def test_a_fix_learned_from_precedent_is_offered_and_only_suggested(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = uuid.uuid4().hex[:8]  # a fingerprint of its own (the test database is shared)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    broken = commit(repo, BROKEN.format(token=token), "broken settings")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")

    # 1. the step fails: published, decided (nothing known), failure remembered
    status, err = heal_run(capsys)
    assert status == 1, err
    assert "SettingsDriftError" in err and "published run-" in err
    assert "not remembered" not in err and "could not" not in err, err

    # 2. a person fixes it; the step passes: the diff broken..fixed is learned as a DRAFT
    fixed = commit(repo, FIXED.format(token=token), "fix settings")
    status, err = heal_run(capsys)
    assert status == 0, err
    assert "marked resolved" in err and "learned DRAFT fix precedent-" in err, err

    # 3. the breakage comes back on a new commit (a revert); even in mode auto the learned
    #    fix is verified and suggested, never applied
    git(repo, "revert", "--no-edit", "HEAD")
    again = git(repo, "rev-parse", "HEAD")
    status, err = heal_run(capsys, "--mode", "auto")
    assert status == 1, err
    assert "suggested fix precedent-" in err and "verified on branch heal/" in err, err
    # (the handle to apply it is the error id, as every CI report names it)
    assert "heal apply run-" in err and "heal apply precedent-" not in err, err
    assert git(repo, "rev-parse", "HEAD") == again  # nothing applied automatically
    assert "SettingsDriftError" in (repo / "app.py").read_text()
    assert git(repo, "status", "--porcelain") == ""

    client: Any = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    prefix = heal_env["HEAL_STREAM_PREFIX"]
    candidates = [CandidateEvent.decode(f[b"event"])
                  for _, f in client.xrange(f"{prefix}:candidates")]
    assert len(candidates) == 2
    # the first failure: no precedent known yet (the test database is shared: another test's
    # lesson for a similar error may come back from tier 2, never a precedent of this step)
    first = candidates[0]
    assert first.fix is None or (first.match["tier"] != 1
                                 and not str(first.fix["id"]).startswith("precedent-")), first
    learned = candidates[1]
    assert learned.fix is not None
    assert learned.match["tier"] == 1 and learned.match["pattern_id"] is None
    assert learned.match["reason"] == (f"learned from precedent: wf-{token}/import-app "
                                       f"{broken[:10]}..{fixed[:10]}")
    assert (learned.fix["kind"], learned.fix["category"], learned.fix["state"]) == (
        "diff", "RISKY", "DRAFT")
    assert "-    raise SettingsDriftError" in learned.fix["rendered"]["diff"]
    outcomes = [OutcomeEvent.decode(f[b"event"]) for _, f in client.xrange(f"{prefix}:outcomes")]
    assert [o.status for o in outcomes][-1] == "suggested"
    assert outcomes[-1].fix_id == learned.fix["id"]

    db = open_database(Settings.from_env())
    try:
        drafts = PrecedentRepository(db).drafts(learned.fine)
    finally:
        db.close()
    assert [(d["from_commit"], d["to_commit"]) for d in drafts] == [(broken, fixed)]

    # 4. a person accepts the suggestion: the verified commit lands and the step passes
    assert main(["apply", str(learned.fix["id"])]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert "SettingsDriftError" not in (repo / "app.py").read_text()
    status, err = heal_run(capsys)
    assert status == 0, err
    assert "marked resolved" in err and "learned" not in err, err  # heal's own commit
    db = open_database(Settings.from_env())
    try:
        assert len(PrecedentRepository(db).drafts(learned.fine)) == 1
        assert PrecedentRepository(db).failures_for_step(f"wf-{token}", "import-app") == []
    finally:
        db.close()


def test_a_plain_success_never_opens_postgresql(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, FIXED.format(token="x"), "fine")
    monkeypatch.chdir(repo)
    # an unreachable database: opening it would fail loudly; a plain success must not try
    monkeypatch.setenv("HEAL_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    import asyncpg

    opened: list[str] = []

    async def refuse(*args: Any, **kwargs: Any) -> None:
        opened.append(repr(args))
        raise AssertionError("a plain success opened PostgreSQL")

    # every way heal reaches PostgreSQL goes through one of these two calls
    monkeypatch.setattr(asyncpg, "connect", refuse)
    monkeypatch.setattr(asyncpg, "create_pool", refuse)
    status, err = heal_run(capsys)
    assert status == 0
    assert err == "", err
    assert opened == []
