"""The apply stage's lease (the ``in-progress:<holder>`` marker) through the real stage, real
git, Redis and PostgreSQL: its holder refreshes it while a long apply runs (a peer that finds
it waits, it never takes a live worker's apply over), a worker whose lease was taken over (or
lapsed) does not touch the repository, and releasing a lease never deletes, nor refreshing it
extends, a peer's marker. The lease time is shortened in this process (``LEASE_TTL_S``, a
module constant: there is no option for it) so a lapse takes a second, not 30."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import pipeline.apply.applier as applier_module
from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.errors import Retry
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

#: the failing step: ruff's format check; in the user's tree (not a verification worktree)
#: it first sleeps SLOW_S seconds while the SLOW flag exists (a long re-run after applying)
CHECK = """\
import os
import subprocess
import sys
import time
from pathlib import Path

if "worktrees" not in os.getcwd() and os.path.exists(SLOW):
    Path(STARTED).write_text("")
    time.sleep(SLOW_S)
sys.exit(subprocess.run(["ruff", "format", "--check", "shop"]).returncode)
"""
LEASE_S = 1.5
SLOW_S = 4.5
PEER = b"in-progress:peer@elsewhere:4242:0badcafe"


def _verified(tmp_path: Path, validator: Validator) -> tuple[Path, VerdictEvent]:
    """A sample repository whose formatting check fails and the verdict to apply its verified
    ``ruff format`` commit."""
    root = sample_repo(tmp_path)
    (root / "check.py").write_text(f"SLOW = {str(tmp_path / 'slow')!r}\n"
                                   f"STARTED = {str(tmp_path / 'started')!r}\n"
                                   f"SLOW_S = {SLOW_S}\n" + CHECK)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "check")
    break_formatting(root)
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX))
    assert verdict.decision == "apply" and verdict.commit, verdict.reason
    return root, verdict


def _heal_commits(root: Path) -> list[str]:
    return [s for s in git(root, "log", "--format=%s").splitlines() if s.startswith("heal")]


def test_a_live_worker_keeps_its_claim_through_a_long_apply_and_a_peer_waits(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a lease of 1.5 s and an apply whose re-run of the failing step takes 4.5 s
    monkeypatch.setattr(applier_module, "LEASE_TTL_S", LEASE_S)
    root, verdict = _verified(tmp_path, validator)
    (tmp_path / "slow").write_text("")
    key = stage_settings.key("apply", "done", verdict.error_id)
    result: dict[str, Any] = {}

    def apply() -> None:
        try:
            result["outcome"] = applier.handle(verdict)
        except BaseException as exc:  # reported by the test thread
            result["error"] = exc

    worker = threading.Thread(target=apply, name="first-worker")
    worker.start()
    peer_db = Database(database_url)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert worker.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.05)
        assert git(root, "rev-parse", "HEAD") == verdict.commit  # applied, re-running
        marker = client.get(key)
        assert isinstance(marker, bytes) and marker.startswith(b"in-progress:apply@"), marker
        # When the apply outlasts its lease twice over
        left: list[int] = []
        end = time.monotonic() + 2.2 * LEASE_S
        while time.monotonic() < end:
            # Then the marker stays this worker's, refreshed every third of the lease
            assert client.get(key) == marker, "the live worker's lease lapsed mid-apply"
            left.append(int(client.pttl(key)))
            time.sleep(0.05)
        assert all(0 < ms <= LEASE_S * 1000 for ms in left), left
        assert any(b > a for a, b in zip(left, left[1:], strict=False)), left  # extended
        # and a peer that is handed the same verdict meanwhile waits for it: it neither takes
        # the apply over nor counts the wait as an attempt
        peer = Applier(stage_settings, client, AttemptStore(peer_db), consumer="peer")
        with pytest.raises(Retry) as wait:
            peer.handle(verdict)
        assert not wait.value.counted
        assert "being applied by another worker (apply@" in str(wait.value), wait.value
        assert wait.value.delay is not None and 0 < wait.value.delay <= LEASE_S + 0.2
        assert client.get(key) == marker
        assert git(root, "rev-parse", "HEAD") == verdict.commit
    finally:
        worker.join(60)
        peer_db.close()
    # and the first worker finishes its apply, once, as its own (not a takeover)
    assert "error" not in result, result
    outcome: OutcomeEvent = result["outcome"]
    assert outcome.status == "applied", outcome.detail
    assert "took over" not in outcome.detail, outcome.detail
    assert git(root, "rev-parse", "HEAD") == verdict.commit
    assert len(_heal_commits(root)) == 1
    assert OutcomeEvent.decode(client.get(key)) == outcome  # type: ignore[arg-type]


@pytest.mark.parametrize("peer", [PEER, None], ids=["taken-over", "lapsed"])
def test_a_worker_whose_claim_was_taken_over_or_lapsed_does_not_touch_the_repository(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, monkeypatch: pytest.MonkeyPatch, peer: bytes | None) -> None:
    # Given a verified fix, and a worker that loses its claim right before it acts on the
    # repository: a peer took the apply over (or the marker lapsed, nobody holding it), as
    # after a pause longer than its lease (SIGSTOP, a VM paused, Redis unreachable)
    root, verdict = _verified(tmp_path, validator)
    head = git(root, "rev-parse", "HEAD")
    key = stage_settings.key("apply", "done", verdict.error_id)
    progress = stage_settings.key("apply", "progress", verdict.error_id)
    resume_point = applier._resume_point

    def meanwhile(v: VerdictEvent, repo: Any) -> str:
        mine = client.get(key)
        assert isinstance(mine, bytes) and mine.startswith(b"in-progress:apply@"), mine
        if peer is None:
            client.delete(key)
        else:
            client.set(key, peer)  # no expiry: a refresh of it would give it one
        return resume_point(v, repo)

    monkeypatch.setattr(applier, "_resume_point", meanwhile)
    # When it goes on with the apply
    with pytest.raises(Retry) as lost:
        applier.handle(verdict)
    # Then it stops before touching the repository, saying why
    assert str(lost.value).startswith("the claim on this apply lapsed"), lost.value
    assert git(root, "rev-parse", "HEAD") == head
    assert not _heal_commits(root)
    assert not git(root, "status", "--porcelain")
    assert client.exists(progress) == 0  # it noted no progress of its own
    # and the peer's marker is neither deleted by its release nor extended by its refresh
    assert client.get(key) == peer
    if peer is not None:
        assert client.pttl(key) == -1


def test_a_lease_releases_and_refreshes_only_its_own_marker(
        applier: Applier, client: redis.Redis, stage_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(applier_module, "LEASE_TTL_S", LEASE_S)
    error_id = "lease-unit"
    key = stage_settings.key("apply", "done", error_id)
    lease = applier._claim(error_id)
    assert not isinstance(lease, OutcomeEvent)
    # a peer's marker in its place: neither extended nor deleted
    client.set(key, PEER)
    assert not lease.held()
    lease.release()
    assert (client.get(key), client.pttl(key)) == (PEER, -1)
    # its own: extended to the full lease, then deleted
    client.delete(key)
    lease = applier._claim(error_id)
    assert not isinstance(lease, OutcomeEvent)
    client.pexpire(key, 100)
    assert lease.held()
    assert int(LEASE_S * 1000) - 200 < client.pttl(key) <= int(LEASE_S * 1000)
    lease.release()
    assert client.exists(key) == 0


def test_a_finished_apply_keeps_no_progress_record(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an apply that noted where the branch was before bringing its commit there
    root, verdict = _verified(tmp_path, validator)
    progress = stage_settings.key("apply", "progress", verdict.error_id)
    noted: list[dict[str, Any]] = []
    note = applier._note_progress

    def spy(error_id: str, what: dict[str, Any]) -> None:
        note(error_id, what)
        noted.append(orjson.loads(client.get(progress) or b"null"))

    monkeypatch.setattr(applier, "_note_progress", spy)
    # When its outcome is decided
    outcome = applier.handle(verdict)
    assert outcome.status == "applied", outcome.detail
    assert noted and noted[0]["commit"] == verdict.commit
    # Then the progress record is gone: a later delivery is never taken for a takeover
    assert client.exists(progress) == 0
