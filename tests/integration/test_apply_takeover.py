"""An apply worker SIGKILLed mid-apply (its fix committed on the working branch, the failing
step re-running): the worker that reclaims the verdict takes the apply over once the dead
worker's claim lapses, and finishes it: it verifies heal's own unverified commit and rolls it
back when the step still fails. Never a dead letter "being applied by another worker" with no
other worker alive, never "already applied: nothing to do". The takeover finishes what was
begun: it is not held, audited or charged again, and a developer's commit is never taken for
heal's (real git, Redis, PostgreSQL, the real apply stage in a process of its own and in this
one)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import STREAM_DEAD, STREAM_OUTCOMES, STREAM_VERDICTS, Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.guardrails.budget import Budget
from pipeline.runtime.loader import build_worker, load_stage
from pipeline.runtime.options import WorkerOptions
from pipeline.trust.seal import seal
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

#: the failing step: ruff's format check of the repository. Outside heal's verification
#: worktrees it hangs while HANG exists (the apply's re-run, where the worker is killed) and
#: fails while FAIL exists (the fix does not hold in the user's tree)
CHECK = """\
import os
import subprocess
import sys
import time
from pathlib import Path

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
if "worktrees" not in os.getcwd():
    if os.path.exists(HANG):
        Path(STARTED).write_text("")
        time.sleep(120)
    if os.path.exists(FAIL):
        sys.exit(3)
sys.exit(p.returncode)
"""

#: the apply stage in a process of its own, its claim lapsing 2 s after it dies
APPLY = """
import sys
from pathlib import Path

import redis

import pipeline.apply.applier as applier
from pipeline.config import Settings
from pipeline.runtime import drain_inline

applier.LEASE_TTL_S = 2.0
url, home, prefix, database = sys.argv[1:]
settings = Settings(redis_url=None, database_url=database, home=Path(home), prefix=prefix)
drain_inline(settings, redis.Redis.from_url(url), stages=["apply"])
"""


def _wait(condition: Any, what: str, deadline_s: float = 90.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting: {what}"
        time.sleep(0.1)


def _kill_family(proc: subprocess.Popen[bytes]) -> None:
    family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _killed_mid_apply(tmp_path: Path, redis_url: str, database_url: str,
                      client: redis.Redis, settings: Settings,
                      validator: Validator) -> tuple[Path, VerdictEvent, Path]:
    """A verified ruff-format fix, taken by an apply worker that is SIGKILLed while it
    re-runs the failing step with the fix on the working branch; returns the repository,
    the verdict and the HANG flag (still there)."""
    root = sample_repo(tmp_path)
    hang, started = tmp_path / "hang", tmp_path / "started"
    (root / "check.py").write_text(f"HANG = {str(hang)!r}\nSTARTED = {str(started)!r}\n"
                                   f"FAIL = {str(tmp_path / 'fail')!r}\n" + CHECK)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "check")
    break_formatting(root)
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX))
    assert verdict.decision == "apply" and verdict.commit, verdict.reason
    hang.write_text("")
    client.xadd(settings.stream(STREAM_VERDICTS),
                {"event": seal(settings, STREAM_VERDICTS, verdict.encode())})
    project = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", APPLY, redis_url, str(settings.home), settings.prefix,
         database_url], cwd=project, env={**os.environ, "PYTHONPATH": str(project)})
    try:
        _wait(started.exists, "the apply's re-run of the failing step")
        assert git(root, "rev-parse", "HEAD") == verdict.commit  # the fix is on main
    finally:
        _kill_family(proc)
    return root, verdict, hang


def _take_over(client: redis.Redis, settings: Settings, db: Database,
               error_id: str) -> tuple[OutcomeEvent | None, list[str]]:
    """Run the apply stage here (another consumer, claim timeout 200 ms) until the verdict
    gave an outcome or a dead letter; returns both."""
    worker = build_worker(client, settings, load_stage("apply"),
                          options=WorkerOptions(claim_idle_ms=200),
                          explicit={"claim_idle_ms"}, consumer="taker",
                          resources={"db": db})
    worker.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        worker.step(None)
        outcomes = [OutcomeEvent.decode(f[b"event"]) for _, f in
                    client.xrange(settings.stream(STREAM_OUTCOMES))]
        dead = [f[b"reason"].decode() for _, f in client.xrange(settings.stream(STREAM_DEAD))]
        mine = [o for o in outcomes if o.error_id == error_id]
        if mine or dead:
            return (mine[0] if mine else None), dead
        time.sleep(0.1)
    return None, []


@pytest.fixture
def settings(stage_settings: Settings) -> Settings:
    return stage_settings


def test_an_apply_worker_sigkilled_mid_apply_is_taken_over_and_its_commit_verified(
        tmp_path: Path, redis_url: str, database_url: str, client: redis.Redis,
        settings: Settings, validator: Validator, db: Database) -> None:
    # Given an apply worker SIGKILLed while it re-ran the failing step after committing
    root, verdict, hang = _killed_mid_apply(tmp_path, redis_url, database_url, client,
                                            settings, validator)
    hang.unlink()
    # When another worker reclaims the verdict (no other worker is alive)
    outcome, dead = _take_over(client, settings, db, verdict.error_id)
    # Then it is not dead-lettered as "being applied by another worker": the apply is taken
    # over once the dead worker's claim lapsed, and the commit it made is verified
    assert not dead, dead
    assert outcome is not None
    assert outcome.status == "applied", outcome.detail
    assert "verified by the worker that took over" in outcome.detail, outcome.detail
    assert outcome.detail.endswith("failing step passes again"), outcome.detail
    assert git(root, "rev-parse", "HEAD") == verdict.commit  # nothing applied twice
    assert not git(root, "status", "--porcelain")


def test_a_taken_over_apply_rolls_heal_own_unverified_commit_back_when_the_step_fails(
        tmp_path: Path, redis_url: str, database_url: str, client: redis.Redis,
        settings: Settings, validator: Validator, db: Database) -> None:
    # Given an apply worker SIGKILLed after committing the fix, before it verified it, and
    # its claim gone (lapsed), and the failing step still fails with the fix in the tree
    root, verdict, hang = _killed_mid_apply(tmp_path, redis_url, database_url, client,
                                            settings, validator)
    client.delete(settings.key("apply", "done", verdict.error_id))
    (tmp_path / "fail").write_text("")
    hang.unlink()
    # When another worker takes the verdict over
    outcome, dead = _take_over(client, settings, db, verdict.error_id)
    # Then heal's own commit is not "already applied: nothing to do": it is verified, and
    # rolled back since the step still fails
    assert not dead, dead
    assert outcome is not None
    assert outcome.status == "rolled_back", outcome.detail
    assert "already applied" not in outcome.detail
    assert "reverted by" in outcome.detail, outcome.detail
    log = git(root, "log", "--format=%s", f"{verdict.commit}~1..HEAD").splitlines()
    assert len(log) == 2 and log[0].startswith("Revert heal fix"), log


def _intents(settings: Settings, error_id: str) -> int:
    records = [json.loads(line) for line in
               (settings.home / "audit.jsonl").read_text().splitlines()]
    return sum(r["kind"] == "apply.intent" and r["subject"] == error_id for r in records)


def test_a_takeover_finishes_the_apply_without_holding_auditing_or_charging_it_again(
        tmp_path: Path, redis_url: str, database_url: str, client: redis.Redis,
        settings: Settings, validator: Validator, db: Database) -> None:
    # Given an apply worker SIGKILLed after committing the fix (its intent audited, one fix
    # application charged), and since then the breaker opened (it holds automatic fixes)
    day = Budget(client, settings).day()
    root, verdict, hang = _killed_mid_apply(tmp_path, redis_url, database_url, client,
                                            settings, validator)
    hang.unlink()
    assert _intents(settings, verdict.error_id) == 1
    assert Budget(client, settings).spent(day).get("fix_applications") == 1.0
    CircuitBreaker(client, settings).force_open(reason="opened by the test")
    progress = settings.key("apply", "progress", verdict.error_id)
    assert client.exists(progress) == 1
    # When another worker takes the apply over
    outcome, dead = _take_over(client, settings, db, verdict.error_id)
    # Then it finishes what was begun and acted on: the commit is verified, not held by the
    # breaker (suggested) nor by the rate limit (deferred) with heal's commit left unverified
    assert not dead, dead
    assert outcome is not None
    assert outcome.status == "applied", outcome.detail
    assert "verified by the worker that took over" in outcome.detail, outcome.detail
    # and the one application is audited once and charged once
    assert _intents(settings, verdict.error_id) == 1
    spent = [Budget(client, settings).spent(d).get("fix_applications", 0.0)
             for d in {day, Budget(client, settings).day()}]
    assert sum(spent) == 1.0, spent
    # and once decided, nothing is left for a later delivery to take over
    assert client.exists(progress) == 0
    assert git(root, "rev-parse", "HEAD") == verdict.commit


def test_a_takeover_never_verifies_or_reverts_a_commit_that_is_not_heals(
        tmp_path: Path, client: redis.Redis, settings: Settings, validator: Validator,
        attempt_store: AttemptStore) -> None:
    # Given an apply whose worker died after noting where the branch was, before it brought
    # its commit there, and a developer's own commit on the branch since
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    assert verdict.decision == "apply" and verdict.commit, verdict.reason
    before = git(root, "rev-parse", "HEAD")
    client.set(settings.key("apply", "progress", verdict.error_id), orjson.dumps(
        {"holder": "apply@gone:1:dead0000", "commit": verdict.commit, "before": before}))
    (root / "NOTES.md").write_text("a developer's note\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes by hand")
    human = git(root, "rev-parse", "HEAD")
    # When another worker takes the apply over (the step still fails with that commit alone)
    outcome = Applier(settings, client, attempt_store, consumer="taker").handle(verdict)
    # Then the developer's commit is not taken for heal's: it is neither verified nor
    # reverted, and the apply starts over on top of it
    assert outcome.status == "applied", outcome.detail
    assert "took over" not in outcome.detail, outcome.detail
    assert git(root, "rev-parse", "HEAD~1") == human
    assert outcome.commit == git(root, "rev-parse", "HEAD") != verdict.commit
    assert "Heal-Fix: format.ruff_format" in git(root, "log", "-1", "--format=%B")
    subjects = git(root, "log", "--format=%s", f"{before}..HEAD").splitlines()
    assert not [s for s in subjects if s.startswith("Revert")], subjects
    assert (root / "NOTES.md").read_text() == "a developer's note\n"
    assert client.exists(settings.key("apply", "progress", verdict.error_id)) == 0
