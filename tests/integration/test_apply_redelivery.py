"""Through the real stream runtime: a candidate delivered twice is applied once, and a diff fix
is verified with `git apply` in a worktree (real Redis, RQ, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from pipeline.config import STREAM_CANDIDATES, STREAM_OUTCOMES, Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.events import CandidateEvent, OutcomeEvent
from pipeline.runtime import drain_inline
from pipeline.trust.seal import seal
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


def publish(client: redis.Redis, settings: Settings, cand: CandidateEvent) -> None:
    """As the lookup stage would: sealed with the operator's key (pipeline.trust.seal)."""
    client.xadd(settings.stream(STREAM_CANDIDATES),
                {"event": seal(settings, STREAM_CANDIDATES, cand.encode())})


def outcomes(client: redis.Redis, settings: Settings) -> list[OutcomeEvent]:
    return [OutcomeEvent.decode(f[b"event"])
            for _id, f in client.xrange(settings.stream(STREAM_OUTCOMES))]


def test_delivered_twice_applied_once(tmp_path: Path, client: redis.Redis, settings: Settings,
                                      db: Database) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX)
    for _ in range(2):  # the same event published twice (a producer retry)
        publish(client, settings, cand)
    drain_inline(settings, client, stages=["validate", "apply"], ctx_resources={"db": db})
    # and once more, as if a crashed worker's entry were redelivered later
    publish(client, settings, cand)
    drain_inline(settings, client, stages=["validate", "apply"], ctx_resources={"db": db})
    applied = [o for o in outcomes(client, settings) if o.status == "applied"]
    assert {o.id for o in applied} == {f"{cand.error_id}:apply"}
    subjects = git(root, "log", "--format=%s").splitlines()
    assert sum(s.startswith("heal:") for s in subjects) == 1


def test_diff_fix_verified_with_git_apply(tmp_path: Path, client: redis.Redis,
                                          settings: Settings, db: Database) -> None:
    root = sample_repo(tmp_path)
    (root / "shop/notes.py").write_text('NOTE = "keep"   \n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "notes")
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text()
                                         + '\n[tool.ruff.lint]\nextend-select = ["W291"]\n')
    git(root, "commit", "-qam", "lint W291")
    diff = ('--- a/shop/notes.py\n+++ b/shop/notes.py\n@@ -1 +1 @@\n-NOTE = "keep"   \n'
            '+NOTE = "keep"\n')
    fix = {"id": "whitespace.trailing", "kind": "diff", "category": "SAFE", "state": "ACTIVE",
           "rendered": {"diff": diff, "unidiff_zero": True}}
    cand = candidate(root, ("ruff", "check", "."), fix)
    publish(client, settings, cand)
    drain_inline(settings, client, stages=["validate", "apply"], ctx_resources={"db": db})
    [outcome] = outcomes(client, settings)
    assert outcome.status == "applied", outcome.detail
    assert (root / "shop/notes.py").read_text() == 'NOTE = "keep"\n'
