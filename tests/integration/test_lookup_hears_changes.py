"""A running lookup worker sees a lesson, and a `heal ignore`, at once (QA s18b #9): before,
what it had read was kept up to 30 s (missed fingerprints, learned fixes, the taught catalog,
ignored fingerprints), so the error taught a moment ago still came out "no known fix".

The real path: `heal worker fingerprint` and `heal worker lookup` processes on the session's
engines, errors published with `heal emit`, the lesson taught with `heal learn` and the
fingerprint silenced with `heal ignore` (the CLI in subprocesses), the worker's answers read
from the candidates stream."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
#: how soon the lesson must be served (the caches' fallback is 30 s)
AT_ONCE_S = 5.0


def heal(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         *args], cwd=ROOT, env={**os.environ, **env}, input=stdin, capture_output=True,
        text=True, timeout=180)


@pytest.fixture
def workers(heal_env: dict[str, str], own_database: str) -> Iterator[dict[str, str]]:
    env = dict(heal_env)
    procs = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", stage, "--block-ms", "100"], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for stage in ("fingerprint",
                                                                           "lookup")]
    client = redis.Redis.from_url(env["HEAL_REDIS_URL"])
    try:
        deadline = time.monotonic() + 120
        while len(list(client.scan_iter(f"{env['HEAL_STREAM_PREFIX']}:alive:*"))) < 2:
            assert all(p.poll() is None for p in procs), "a worker exited"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        yield env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        client.close()


def emit(env: dict[str, str], error_id: str, text: str) -> float:
    line = orjson.dumps({"v": 1, "id": error_id, "text": text}).decode()
    done = heal(env, "emit", stdin=line + "\n")
    assert done.returncode == 0, done.stderr
    return time.monotonic()


def candidate(env: dict[str, str], error_id: str, timeout: float) -> dict[str, Any]:
    client = redis.Redis.from_url(env["HEAL_REDIS_URL"])
    stream = Settings.from_env(env).stream("candidates")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for _, fields in client.xrange(stream):
                event: dict[str, Any] = orjson.loads(fields[b"event"])
                if event.get("error_id") == error_id:
                    return event
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"no candidate for {error_id} within {timeout} s")


def test_a_running_worker_serves_a_lesson_and_an_ignore_at_once(
        workers: dict[str, str]) -> None:
    env = workers
    token = secrets.token_hex(4)
    text = (f"fatal: spool quarry{token} is wedged by a stale claim; another nightly "
            "collector may be running")
    # Given an error the running lookup worker answered "no known fix"
    emit(env, f"first-{token}", text)
    first = candidate(env, f"first-{token}", 120)
    assert first["fix"] is None, first
    # (the worker's outbox reaches PostgreSQL every 2 s: then heal learn finds the error)
    deadline = time.monotonic() + 30
    while True:
        taught = heal(env, "learn", f"first-{token}", "--command", f"rm -f quarry{token}.claim")
        if taught.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert taught.returncode == 0, taught.stderr
    # (heal learn says when it takes effect: at once, as the rest of the test checks)
    assert "in effect  now, for new runs and running workers" in taught.stdout
    fix_id = re.search(r"^  fix +(\S+) ", taught.stdout, re.M)
    assert fix_id is not None, taught.stdout
    # When the same error comes again
    sent = emit(env, f"second-{token}", text)
    second = candidate(env, f"second-{token}", AT_ONCE_S)
    # Then the worker offers the lesson's fix at once
    assert second["fix"] is not None, second["match"]
    assert second["fix"]["id"] == fix_id[1]
    assert time.monotonic() - sent < AT_ONCE_S
    # And silencing the fingerprint is heard at once too
    fine = second["fine"]
    ignored = heal(env, "ignore", fine, "--reason", "test")
    assert ignored.returncode == 0, ignored.stderr
    emit(env, f"third-{token}", text)
    third = candidate(env, f"third-{token}", AT_ONCE_S)
    assert third["fix"] is None and "heal ignore" in third["match"]["reason"], third["match"]
    # and the lookup's own busy writes (an occurrence, a fingerprint mapped by a seed's rule,
    # an unmatched error queued) send no notice: no reload on every sync of every worker
    heard: list[int] = []
    db = Database(env["HEAL_DATABASE_URL"])
    try:
        stop = db.listen("heal_lookup", lambda: heard.append(1), lambda: None)
        emit(env, f"seed-{token}", f"ModuleNotFoundError: No module named 'quarry{token}'")
        assert candidate(env, f"seed-{token}", 60)["fix"] is not None
        emit(env, f"new-{token}", f"fatal: ledger {token} refused the handshake twice")
        candidate(env, f"new-{token}", 60)
        deadline = time.monotonic() + 30  # (the worker's outbox reaches PostgreSQL every 2 s)
        while not db.fetchval("SELECT count(*) FROM occurrences WHERE error_id = $1",
                              f"seed-{token}"):
            assert time.monotonic() < deadline, "the occurrence never reached PostgreSQL"
            time.sleep(0.2)
        time.sleep(1)  # (a notice is delivered at once; leave it time anyway)
        stop()
    finally:
        db.close()
    assert heard == []


def test_a_lookup_that_lost_its_listening_connection_listens_again_and_reloads_once(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    from pipeline.lookup.setup import build_lookup
    from storage.engines import open_database

    settings = Settings.from_env({**heal_env, "HEAL_HOME": str(tmp_path / "home")})
    db = open_database(settings)
    lookup = build_lookup(settings, db)
    try:
        assert lookup.hear_changes() and lookup.listening
        assert not lookup.reload_if_changed()  # nothing changed yet
        # a change committed elsewhere is heard, and reloads once
        db.execute("INSERT INTO fingerprint_controls (fingerprint, ignored) VALUES ($1, true)",
                   f"{ALGORITHM_VERSION}:00000000deadbeef")
        deadline = time.monotonic() + 10
        while not lookup.reload_if_changed():
            assert time.monotonic() < deadline, "the notice never arrived"
            time.sleep(0.02)
        assert not lookup.reload_if_changed()
        # When its connection is cut (a PostgreSQL restart, a proxy's idle timeout)
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                   " current_database() AND query ILIKE 'LISTEN%'")
        deadline = time.monotonic() + 10
        while lookup.listening:
            assert time.monotonic() < deadline, "the lost connection went unnoticed"
            time.sleep(0.02)
        # Then it listens again and re-reads once: what changed meanwhile was not heard
        assert lookup.hear_changes() and lookup.listening
        assert lookup.reload_if_changed() and not lookup.reload_if_changed()
    finally:
        lookup.close()
        lookup.cache.close()
        db.close()
