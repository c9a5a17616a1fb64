"""A HEAL_HOME on a full disk: every command says so, names the path and what to do (exit 1),
instead of "internal error: OSError: [Errno 28] No space left on device".

A real full file system: a small tmpfs mounted for the test (root only; skipped elsewhere,
tests/unit/test_state_home_writes.py covers the translation everywhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _heal(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run([*HEAL, *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
                          env={**base, **env, "PYTHONPATH": str(ROOT)}, timeout=120)


def _fill(folder: Path) -> None:
    with open(folder / "fill", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


def test_a_full_heal_home_is_reported_with_the_path_and_what_to_do(
    small_disk: Path, database_url: str
) -> None:
    # Given the embedded Redis running (pinned) under a HEAL_HOME whose disk then fills up
    home = small_disk / "home"
    env = {"HEAL_HOME": str(home), "HEAL_DATABASE_URL": database_url}
    started = _heal(env, "engines", "start")
    assert started.returncode == 0, started.stderr
    try:
        _fill(small_disk)
        # When commands that take the engine's lease run
        emitted = _heal(env, "emit", stdin='{"v":1,"id":"a","text":"x"}\n')
        status = _heal(env, "status")
        # Then each says the disk under HEAL_HOME is full and what to do; exit 1
        for done in (emitted, status):
            assert done.returncode == 1, done.stderr
            assert f"no space left in HEAL_HOME={home}" in done.stderr
            assert "free space on that file system, or set HEAL_HOME" in done.stderr
            assert "internal error" not in done.stderr and "Traceback" not in done.stderr
        # And heal run, which cannot report the failure, still exits with the command's status
        ran = _heal(env, "run", "--", "sh", "-c", "exit 3")
        assert ran.returncode == 3, ran.stderr
        assert "exit status kept" in ran.stderr and "Traceback" not in ran.stderr
    finally:
        (small_disk / "fill").unlink(missing_ok=True)
        stopped = _heal(env, "engines", "stop", "--force")
        assert stopped.returncode == 0, stopped.stderr


def _servers_of(home: Path) -> list[int]:
    """Pids of the redis-server processes serving ``home``'s embedded Redis data."""
    folder = str(home / "redis")
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if "redis-server" in (proc.info["name"] or "") and (
                    proc.cwd() == folder or folder in " ".join(proc.info["cmdline"] or [])):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_full_disk_while_redis_starts_leaves_no_untracked_server(
    small_disk: Path, database_url: str
) -> None:
    # Given a HEAL_HOME whose embedded Redis is stopped and whose disk is full (Redis can
    # start, but not write its pid file)
    home = small_disk / "home"
    env = {"HEAL_HOME": str(home), "HEAL_DATABASE_URL": database_url}
    assert _heal(env, "engines", "start").returncode == 0
    assert _heal(env, "engines", "stop").returncode == 0
    try:
        _fill(small_disk)
        # When a command starts the engine
        started = _heal(env, "engines", "start")
        # Then it says the disk is full and what to do, and no Redis is left running
        assert started.returncode == 1, started.stderr
        assert f"no space left in HEAL_HOME={home}" in started.stderr
        assert "Traceback" not in started.stderr
        assert _servers_of(home) == []
        # And once space is freed, a start runs exactly one server, which stop stops
        (small_disk / "fill").unlink()
        again = _heal(env, "engines", "start")
        assert again.returncode == 0, again.stderr
        assert len(_servers_of(home)) == 1
        stopped = _heal(env, "engines", "stop")
        assert stopped.returncode == 0, stopped.stderr
        deadline = time.monotonic() + 10
        while _servers_of(home) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _servers_of(home) == []
    finally:
        (small_disk / "fill").unlink(missing_ok=True)
        _heal(env, "engines", "stop", "--force")
        for pid in _servers_of(home):  # never leave a daemon behind on the tmpfs
            os.kill(pid, signal.SIGKILL)


def test_the_other_writes_under_a_full_heal_home_say_free_space(
    small_disk: Path, tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """Re-verification: on a full disk the signing key's creation said "make HEAL_HOME
    writable" (exit 2), a rotation could lose the current key, and the audit log, the serve
    tokens and the watch offsets gave other or generic messages. Each now names HEAL_HOME and
    says to free space (exit 1), and leaves what was there as it was."""
    from pipeline.config import Settings
    from pipeline.guardrails.audit import AuditError, AuditLog

    # Given a home with a signing key and an audit log, and a fresh one, on a disk that fills
    home, fresh = small_disk / "home", small_disk / "fresh"
    engines = {"HEAL_REDIS_URL": redis_url, "HEAL_DATABASE_URL": database_url}
    assert _heal({"HEAL_HOME": str(home)}, "keys", "show").returncode == 0
    key = (home / "keys/signing.key").read_bytes()
    log = AuditLog(Settings(None, None, home, "p"), anchored=False)
    log.append("verdict", "e1", {"decision": "apply"})
    followed = tmp_path / "app.log"  # (on another file system)
    followed.write_text("Traceback (most recent call last):\nValueError: boom\n")
    _fill(small_disk)
    try:
        # When heal must write under HEAL_HOME
        made = _heal({"HEAL_HOME": str(fresh)}, "keys", "show")
        rotated = _heal({"HEAL_HOME": str(home)}, "keys", "rotate")
        served = _heal({"HEAL_HOME": str(fresh), **engines}, "serve", "--port", "0")
        watched = _heal({"HEAL_HOME": str(fresh), **engines}, "watch", "--once",
                        str(followed))
        # Then each says HEAL_HOME's file system is full and to free space; exit 1
        for done, where in ((made, fresh), (rotated, home), (served, fresh),
                            (watched, fresh)):
            assert done.returncode == 1, done
            assert f"no space left in HEAL_HOME={where}" in done.stderr, done.stderr
            assert "free space on that file system, or set HEAL_HOME" in done.stderr
            assert "make HEAL_HOME writable" not in done.stderr
            assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert "signing key" in made.stderr and "signing key" in rotated.stderr
        assert "watch offsets" in watched.stderr and "serve tokens" in served.stderr
        # ... and the rotation left both keys as they were
        assert (home / "keys/signing.key").read_bytes() == key
        assert sorted(p.name for p in (home / "keys").iterdir()) == ["signing.key"]
        # The audit log (appending; making a key) says the same, and that nothing is applied
        with pytest.raises(AuditError, match=rf"no space left in HEAL_HOME={home} .*free "
                                             r"space.*nothing is applied until"):
            log.append("verdict", "e2", {"decision": "apply", "note": "x" * 16384})
        with pytest.raises(AuditError, match=rf"no space left in HEAL_HOME={fresh} "
                                             r"\(making the audit key"):
            AuditLog(Settings(None, None, fresh, "p"), anchored=False).append(
                "verdict", "e3", {"decision": "apply"})
        # ... and so does the lookup's local cache, made at the first lookup
        from pipeline.errors import StateHomeFull
        from storage.cache import LocalCache

        with pytest.raises(StateHomeFull, match=rf"no space left in HEAL_HOME={fresh} "
                                                r"\(opening the local lookup cache"):
            LocalCache.at_home(fresh)
    finally:
        (small_disk / "fill").unlink(missing_ok=True)


def test_operator_commands_on_a_full_heal_home_change_nothing_without_an_audit_record(
    small_disk: Path, redis_url: str, database_url: str, db: Database
) -> None:
    """``heal ignore`` said "nothing is applied until the audit log can be written" (exit 1)
    on a full HEAL_HOME, yet had stored the ignore before trying to audit it; a breaker
    reset by hand changed Redis and only logged the lost record; an unquarantine lifted the
    fix; a review created its pattern or ignored the group; a lesson or a pack was stored.
    Each now writes its audit record first, undoes what it did, or (learn, import: audited
    once stored) is refused up front."""
    import uuid

    from storage.lifecycle import LifecycleStore

    # Given a home with an audit log, a breaker scope opened by hand and a quarantined pair
    # (made from another home: the one on the full disk has no audit key yet, so its first
    # record cannot be written whatever room the last page of a log file has left)
    home = small_disk / "home"
    word = uuid.uuid4().hex[:16]
    env = {"HEAL_HOME": str(home), "HEAL_REDIS_URL": redis_url,
           "HEAL_DATABASE_URL": database_url, "HEAL_STREAM_PREFIX": f"full{word[:8]}"}
    scope = f"workflow:wf-{word}"
    setup = {**env, "HEAL_HOME": str(small_disk.parent / "setup")}
    assert _heal(setup, "breaker", "open", scope).returncode == 0
    fix_id = str(db.fetchval("SELECT id FROM fixes ORDER BY id LIMIT 1"))
    quarantined = f"fp-v4:{word}"
    LifecycleStore(db).quarantine(quarantined, fix_id, "test")
    ignored = f"{ALGORITHM_VERSION}:{word[::-1]}"  # ignored in advance: the current version
    reviewed = f"fp-v4:{word[8:]}{word[:8]}"  # an issue last seen long ago: review selects it
    db.execute("INSERT INTO issue_queue (fine, coarse, count, first_seen, last_seen, sample)"
               " VALUES ($1, '', 1, '1901-01-01', '1901-01-01', 'old error')", reviewed)
    pattern = f"full.p{word}"
    pack = small_disk.parent / "pack.yaml"
    pack.write_text(
        f"patterns:\n  - id: {pattern}\n    name: full disk test\n    category: RISKY\n"
        f"    description: a pack pattern\n    detect:\n      - regex: 'ZzError {word}'\n"
        f"    examples: ['ZzError {word}']\n    fix:\n      kind: escalate\n"
        f"      title: escalate\n      explanation: ask a person\n"
        f"      message: ask a person\n")
    _fill(small_disk)
    try:
        # When the operator ignores, resets the breaker and unquarantines
        done = [_heal(env, "ignore", ignored, "--reason", "test"),
                _heal(env, "breaker", "reset", scope),
                _heal(env, "unquarantine", quarantined),
                _heal(env, "issues", "review", "--all-older-than", "36500d", "--yes"),
                _heal(env, "issues", "review", "--all-older-than", "36500d", "--ignore"),
                _heal(env, "learn", reviewed, "--escalate", "ask a person"),
                _heal(env, "import", str(pack))]
        # (the brake by hand still engages: refusing fixes is never what the audit guards)
        braked = _heal(env, "breaker", "open", f"workflow:other-{word}")
        assert braked.returncode == 0 and "not audited" in braked.stderr, braked.stderr
        # Then each says the audit log cannot be written and nothing is applied (exit 1)
        for step in done:
            assert step.returncode == 1, (step.args, step.stdout, step.stderr)
            assert f"no space left in HEAL_HOME={home}" in step.stderr, step.stderr
            # (learn stops earlier, at the local lookup cache it refreshes: nothing stored)
            assert ("nothing is applied until the audit log can be written" in step.stderr
                    or "local lookup cache" in step.stderr), step.stderr
            assert "Traceback" not in step.stderr
        # ... and nothing was: no ignore, the breaker still open, the pair quarantined
        assert db.fetchval("SELECT count(*) FROM fingerprint_controls"
                           " WHERE fingerprint = $1", ignored) == 0
        status = _heal(env, "breaker", "status", "--json")
        assert f'"{scope}"' in status.stdout and "FORCED_OPEN" in status.stdout
        assert f"other-{word}" in status.stdout
        assert db.fetchval("SELECT state FROM fix_stats WHERE fingerprint = $1",
                           quarantined) == "QUARANTINED"
        assert db.fetchval("SELECT status FROM issue_queue WHERE fine = $1", reviewed) == "open"
        assert db.fetchval("SELECT count(*) FROM pattern_fingerprints WHERE fingerprint = $1",
                           reviewed) == 0
        assert db.fetchval("SELECT count(*) FROM patterns WHERE id = $1", pattern) == 0
    finally:
        (small_disk / "fill").unlink(missing_ok=True)
    # And once space is freed the ignore is made with its record
    assert _heal(env, "ignore", ignored, "--reason", "test").returncode == 0
    assert db.fetchval("SELECT ignored FROM fingerprint_controls WHERE fingerprint = $1",
                       ignored) is True
    log = (home / "audit.jsonl").read_text()
    assert log.count("\n") == 1 and ignored in log
