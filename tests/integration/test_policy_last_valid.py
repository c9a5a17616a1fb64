"""The last valid heal.toml is shared and durable: a restarted (or newly added) validate worker
that finds the file invalid uses the last valid policy another process recorded, and with none
ever recorded the safest mode (observe), never the permissive defaults. Real validate stage on
the embedded engines; a restart is a process without loaders (pipeline.policy._LOADERS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import policy as policy_module
from pipeline.demo.sample import break_formatting, git
from pipeline.events import CandidateEvent
from pipeline.trust.attest import ATTEST_TAG
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo


def _write_later(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _restart() -> None:
    """What a new worker process knows of policies: nothing in memory."""
    policy_module._LOADERS.clear()


@pytest.fixture(autouse=True)
def _fresh_loaders() -> None:
    _restart()


def test_a_restarted_worker_keeps_the_last_valid_observe_policy(
        tmp_path: Path, validator: Validator) -> None:
    # Given a repository whose heal.toml asks for observe, seen valid by a worker
    root = sample_repo(tmp_path)
    break_formatting(root)
    _write_later(root / "heal.toml", 'mode = "observe"\n')
    git(root, "commit", "-qam", "observe")
    first = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                         FORMAT_FIX, mode=""))
    assert first.decision == "observe", first.reason
    # When the file turns invalid and the worker restarts
    _write_later(root / "heal.toml", 'mode = "observe"\n[limits]\nmax_files = 0\n')
    git(root, "commit", "-qam", "bad")
    _restart()
    second = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                          FORMAT_FIX, mode=""))
    # Then it still only observes, and the decision names the policy in force and its origin
    assert second.decision == "observe", second.reason
    assert "limits.max_files" in second.reason
    assert "keeping the last valid policy: mode observe from the last valid copy of" \
        in second.reason
    assert "heal/" not in git(root, "branch", "--list")


def test_an_invalid_policy_never_seen_valid_fails_safe_to_observe(
        tmp_path: Path, validator: Validator) -> None:
    # Given a repository whose heal.toml was invalid before any worker saw a valid one
    root = sample_repo(tmp_path)
    break_formatting(root)
    _write_later(root / "heal.toml", 'mode = "whenever"\n')
    git(root, "commit", "-qam", "bad from the start")
    # When a worker decides an error of it
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                           FORMAT_FIX, mode=""))
    # Then the safest mode decides (nothing run, no branch), and the reason says so
    assert verdict.decision == "observe", verdict.reason
    assert 'mode = "whenever"' in verdict.reason
    assert "no valid policy of this repository was ever seen" in verdict.reason
    assert verdict.verification == []
    assert "heal/" not in git(root, "branch", "--list")


def test_heal_run_in_a_new_process_keeps_the_last_valid_policy(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    # Given a repository in observe, seen valid by one heal run process
    repo = tmp_path / "observed"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "heal.toml").write_text('mode = "observe"\n')
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "init")
    heal = str(Path(sys.executable).parent / "heal")
    # (letters only: digits would be masked, and the error must be new to the test database)
    word = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
    module = f"heal_missing_{word}"

    def run() -> str:
        done = subprocess.run([heal, "run", "--timeout", "60", "--", sys.executable, "-c",
                               f"import {module}"], cwd=repo, capture_output=True, text=True,
                              timeout=300, env={**os.environ, **heal_env}, check=False)
        assert done.returncode == 1, done.stderr
        return done.stdout + done.stderr

    assert "observed only" in run()
    # When the file turns invalid and another process (a restart) decides
    _write_later(repo / "heal.toml", 'mode = "observe"\n[limits]\nmax_files = 0\n')
    said = run()
    # Then it still only observes, and says which policy it used and from where
    assert "observed only" in said, said
    assert "keeping the last valid policy: mode observe from the last valid copy of" in said
    assert "(defaults)" not in said
    assert "heal/" not in git(repo, "branch", "--list")


def _home() -> Path:
    from pipeline import statehome

    return statehome.resolve(os.environ).path


def test_an_older_recorded_policy_never_replaces_a_newer_one_this_worker_holds(
        tmp_path: Path, validator: Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from storage.policies import LastValidPolicies

    # Given a repository in suggest, seen valid and recorded in the state home
    root = sample_repo(tmp_path)
    break_formatting(root)
    _write_later(root / "heal.toml", 'mode = "suggest"\n')
    git(root, "commit", "-qam", "suggest")
    validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX, mode=""))
    time.sleep(1.2)  # more than policy.DOUBT_S: the two are not in doubt
    # and the store then stops taking writes (full disk, a lock held too long, read-only home)
    # while the operator lowers the mode to observe, which this worker puts in force

    def refuse(*args: object, **kwargs: object) -> bool:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(LastValidPolicies, "remember", refuse)
    _write_later(root / "heal.toml", 'mode = "observe"\n')
    git(root, "commit", "-qam", "observe")
    lowered = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                           FORMAT_FIX, mode=""))
    assert lowered.decision == "observe", lowered.reason
    # When a typo makes the file invalid
    _write_later(root / "heal.toml", 'mode = "observe"\n[[[typo\n')
    git(root, "commit", "-qam", "typo")
    kept = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                        FORMAT_FIX, mode=""))
    # Then this worker's newer observe stays in force, not the older recorded suggest
    assert kept.decision == "observe", kept.reason
    assert "keeping the last valid policy: mode observe from this worker's copy" in kept.reason


def test_heal_run_keeps_the_newest_policy_when_a_slow_worker_records_an_older_one(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    from storage.policies import LastValidPolicies

    # Given a repository in observe, seen valid (and recorded) by one heal run process
    repo = tmp_path / "raced"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "heal.toml").write_text('mode = "observe"\n')
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "init")
    heal = str(Path(sys.executable).parent / "heal")
    word = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))

    def run() -> str:
        done = subprocess.run([heal, "run", "--timeout", "60", "--", sys.executable, "-c",
                               f"import heal_raced_{word}"], cwd=repo, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **heal_env},
                              check=False)
        assert done.returncode == 1, done.stderr
        return done.stdout + done.stderr

    assert "observed only" in run()
    # When a slower worker that read the older file (auto) records it late
    store = LastValidPolicies.at_home(Path(heal_env["HEAL_HOME"]))
    key = str(repo.resolve())
    recorded = store.last(key)
    assert recorded is not None and 'mode = "observe"' in recorded.text
    store.remember(key, 'mode = "auto"\n', True, recorded.saved_at - 60)
    # and the file then turns invalid
    _write_later(repo / "heal.toml", 'mode = "observe"\n[limits]\nmax_files = 0\n')
    said = run()
    # Then the newer observe stays recorded and in force: the late, older write did not win
    last = store.last(key)
    assert last is not None and 'mode = "observe"' in last.text
    assert "observed only" in said, said
    assert "keeping the last valid policy: mode observe from the last valid copy of" in said


def _unsigned(root: Path) -> CandidateEvent:
    """An error event of ``root`` that nobody attested (a producer's, not heal run's)."""
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX, mode="")
    tags = {k: v for k, v in cand.error.tags.items() if k != ATTEST_TAG}
    return replace(cand, error=replace(cand.error, tags=tags))


def test_an_untrusted_repository_policy_is_never_recorded(
        tmp_path: Path, validator: Validator) -> None:
    from pipeline.trust.boundary import assess
    from storage.policies import LastValidPolicies

    # Given a git repository nobody registered with heal, with a heal.toml of its own
    root = sample_repo(tmp_path)
    break_formatting(root)
    _write_later(root / "heal.toml", 'mode = "suggest"\n' + "# padding\n" * 100)
    git(root, "commit", "-qam", "policy")
    cand = _unsigned(root)
    assert not assess(cand.error, validator.settings).repo_trusted
    # When an event naming it is validated
    verdict = validator.validate(cand)
    # Then heal only observes it and keeps nothing of its file in the state home
    assert verdict.decision == "observe", verdict.reason
    assert "not registered with heal" in verdict.reason
    assert LastValidPolicies.at_home(_home()).last(str(root.resolve())) is None
    # and a trusted (heal run) event of it is recorded as before
    validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX,
                                 mode=""))
    assert LastValidPolicies.at_home(_home()).last(str(root.resolve())) is not None
