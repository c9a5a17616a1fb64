"""QA s15a #5, #6, #7, #10, #11: what the CLI says, through the real CLI in a subprocess, when a
state file under HEAL_HOME is damaged (the signing key, the local lookup cache, the embedded
Redis's append-only file) or the embedded Redis refuses writes: what to change, CMD's status
kept by `heal run`, never an internal error or a traceback."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import DamagedCache
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.lookup.setup import build_lookup
from pipeline.runtime.loader import build_worker, load_stage
from pipeline.trust.seal import seal
from storage.cache import LocalCache
from storage.embedded import EmbeddedRedis

HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
ROOT = Path(__file__).resolve().parents[2]


def _env(heal_env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return {**base, **heal_env, **extra, "PYTHONPATH": str(ROOT)}


def _heal(env: dict[str, str], *argv: str, cwd: Path | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _key_file_env(heal_env: dict[str, str], content: bytes) -> dict[str, str]:
    """heal's own key file (no HEAL_SIGNING_KEY), holding ``content``."""
    keys = Path(heal_env["HEAL_HOME"]) / "keys"
    keys.mkdir(parents=True, mode=0o700)
    (keys / "signing.key").write_bytes(content)
    (keys / "signing.key").chmod(0o600)
    env = _env(heal_env)
    env.pop("HEAL_SIGNING_KEY", None)
    env.pop("HEAL_SIGNING_KEY_PREVIOUS", None)
    return env


def test_a_signing_key_file_that_is_not_text_keeps_cmds_status_and_says_what_to_do(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #6: random bytes in keys/signing.key made `heal run` an internal error
    (UnicodeDecodeError): exit 1 instead of CMD's 3, no --json-file. `heal worker` said the
    same internal error."""
    env = _key_file_env(heal_env, b"\xff\xfe\x00\x9c\x81garbage\xc3")
    out = tmp_path / "decision.json"
    done = _heal(env, "run", "--json-file", str(out), "--", "sh", "-c", "echo boom >&2; exit 3",
                 cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "could not report the failure" in done.stderr, done.stderr
    assert "is not text" in done.stderr and "signing.key" in done.stderr, done.stderr
    assert "delete it so heal makes a new one" in done.stderr, done.stderr
    decision = json.loads(out.read_text())
    assert decision["decision"] == "not reported" and decision["exit_status"] == 3, decision
    worker = _heal(env, "worker", "fingerprint", timeout=60)
    assert worker.returncode == 2, worker.stderr
    assert "is not text" in worker.stderr and "internal error" not in worker.stderr


def test_a_too_short_signing_key_is_refused_by_heal_run_without_a_dead_letter(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #7: `heal run` said it "will only diagnose" the event, then its inline stages
    printed a traceback for each of 5 attempts and dead-lettered it (they seal their work with
    the same key). Now nothing is published, with what to change, CMD's status kept."""
    env = _key_file_env(heal_env, b"")
    done = _heal(env, "run", "--", "sh", "-c", "echo boom >&2; exit 3", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "dead letter" not in done.stderr, done.stderr
    assert "will only diagnose" not in done.stderr, done.stderr
    assert "at least 32 characters" in done.stderr, done.stderr
    assert "nothing was published" in done.stderr, done.stderr
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    try:  # nothing of this test's prefix in Redis: no event, no dead letter
        assert list(client.scan_iter(f"{heal_env['HEAL_STREAM_PREFIX']}*")) == []
    finally:
        client.close()


def _embedded_redis_env(heal_env: dict[str, str]) -> dict[str, str]:
    """The session's PostgreSQL, and an embedded Redis of this test's own HEAL_HOME."""
    env = _env(heal_env)
    env.pop("HEAL_REDIS_URL")
    return env


def _refuse_writes(socket: Path) -> None:
    """Make the running Redis answer MISCONF, as a full disk does: a snapshot that failed
    (its child killed) makes it refuse writes and PING (stop-writes-on-bgsave-error)."""
    client = redis.Redis(unix_socket_path=str(socket))
    try:
        client.config_set("rdb-key-save-delay", 10_000_000)
        client.set("k", "v")
        client.bgsave()
        server = psutil.Process(int(client.info("server")["process_id"]))
        deadline = time.monotonic() + 10
        while not server.children() and time.monotonic() < deadline:
            time.sleep(0.02)
        for child in server.children():
            child.kill()
        while client.info("persistence")["rdb_bgsave_in_progress"]:
            time.sleep(0.02)
        client.config_set("rdb-key-save-delay", 0)
        try:
            client.ping()
            raise AssertionError("Redis still accepts writes")
        except redis.ResponseError as exc:
            assert str(exc).startswith("MISCONF"), exc
    finally:
        client.close()


def test_status_and_engines_info_report_a_redis_refusing_writes(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #5: on a full HEAL_HOME the embedded Redis answers PING with MISCONF, and
    `heal status` and `heal engines info` were an internal error (exit 1, nothing else). Now
    status prints what it gathered and the engine's problem (exit 1), engines info shows it
    running and refusing, and the server is left running (it holds the queue)."""
    env = _embedded_redis_env(heal_env)
    started = _heal(env, "engines", "start", timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        server = EmbeddedRedis(Path(heal_env["HEAL_HOME"]))
        pid = server.pid()
        assert pid is not None
        _refuse_writes(server.socket)
        status = _heal(env, "status", timeout=120)
        assert status.returncode == 1, status.stderr
        assert "internal error" not in status.stderr, status.stderr
        assert "REFUSED" in status.stdout and "postgres" in status.stdout, status.stdout
        assert "refuses writes" in status.stderr, status.stderr
        info = _heal(env, "engines", "info", timeout=120)
        assert info.returncode == 0, info.stderr
        assert "redis: embedded, running, refused" in info.stdout, info.stdout
        assert "refuses writes" in info.stdout, info.stdout
        assert psutil.pid_exists(pid)  # not stopped: what it has not written is in it
    finally:
        _heal(env, "engines", "stop", "--force", timeout=120)


def test_a_redis_that_exits_on_a_damaged_aof_is_reported_at_once_with_a_tool_that_exists(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #11: a Redis that exits on a damaged append-only file was pinged for the whole
    start timeout (16 s) before heal said so, and Redis's advice named ./redis-check-aof,
    which heal does not ship. Now it is reported at once, CMD's status kept, with a command
    that runs (redis-server acts as redis-check-aof under that name)."""
    env = _embedded_redis_env(heal_env)
    assert _heal(env, "engines", "start", timeout=120).returncode == 0
    assert _heal(env, "engines", "stop", timeout=120).returncode == 0
    aof = Path(heal_env["HEAL_HOME"]) / "redis" / "appendonly.aof"
    with aof.open("ab") as fh:
        fh.write(b"*3\r\n$3\r\nSET\r\ngarbage that is no command\r\n")
    began = time.monotonic()
    done = _heal(env, "run", "--", "sh", "-c", "exit 3", cwd=tmp_path, timeout=120)
    took = time.monotonic() - began
    try:
        assert done.returncode == 3, done.stderr
        assert "could not report the failure" in done.stderr, done.stderr
        assert took < 10, (took, done.stderr)
        assert "./redis-check-aof" not in done.stderr, done.stderr
        assert "heal ships no redis-check-aof" in done.stderr, done.stderr
        command = re.search(r"`(bash -c .*?)`", done.stderr)
        assert command, done.stderr
        # the command named (without --fix, which asks before changing anything) runs
        checked = subprocess.run(command.group(1).replace(" --fix", ""), shell=True,
                                 capture_output=True, text=True, timeout=60)
        assert "AOF is not valid" in checked.stdout + checked.stderr, checked
    finally:
        _heal(env, "engines", "stop", "--force", timeout=120)


def test_a_damaged_lookup_cache_is_explained_then_moved_aside_and_rebuilt(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #10: a lookup-cache.sqlite3 of random bytes made `heal status`, `heal run`'s
    pipeline and `heal up` refuse ("file is not a database") with no hint of what to do. The
    outbox it holds cannot be read, so moving it aside loses nothing more: status says what the
    file is and what will happen (it creates no state), and heal run moves it aside (kept,
    named with the time), makes a new one, says so, and decides."""
    home = Path(heal_env["HEAL_HOME"])
    home.mkdir(parents=True)
    cache = home / "lookup-cache.sqlite3"
    damaged = os.urandom(20000)
    cache.write_bytes(damaged)
    env = _env(heal_env)
    status = _heal(env, "status", timeout=120)
    assert status.returncode == 1, status.stderr
    assert "the file is damaged (the lookup's local cache and outbox)" in status.stderr
    assert "no write waiting in it could be read" in status.stderr, status.stderr
    assert "moves it aside" in status.stderr, status.stderr
    assert cache.read_bytes() == damaged  # status changes nothing
    out = tmp_path / "decision.json"
    done = _heal(env, "run", "--json-file", str(out), "--", "sh", "-c", "exit 3", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "not a database" not in json.loads(out.read_text())["detail"], done.stderr
    assert "no decision" not in done.stderr, done.stderr
    aside = list(home.glob("lookup-cache.sqlite3.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged, aside
    assert f"moved aside to {aside[0]}" in done.stderr, done.stderr
    assert _heal(env, "status", timeout=120).returncode == 0


def _wait_for(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def test_a_postgresql_outage_is_one_log_line_not_a_traceback_per_retry(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #9: while PostgreSQL was down, asyncpg's pools logged "Failed to restore the
    pool connection floor" with a 30-line traceback at every retry (several a second across a
    process's pools). Now a worker says it once, and once more when it reconnects."""
    own = _env(heal_env)
    own.pop("HEAL_DATABASE_URL")  # an embedded PostgreSQL of this test's HEAL_HOME, to kill
    assert _heal(own, "engines", "start", timeout=180).returncode == 0
    worker: subprocess.Popen[bytes] | None = None
    try:
        info = json.loads(_heal(own, "engines", "info", "--json", timeout=60).stdout)
        postgres = info["postgres"]
        # the worker takes it for an external server: it waits for it, never restarts it
        env = {**own, "HEAL_DATABASE_URL": postgres["url"]}
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen([*HEAL, "worker", "lookup"], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        assert _wait_for(log, "reading", 120), log.read_text()
        os.kill(int(postgres["pid"]), 9)
        assert _wait_for(log, "PostgreSQL unreachable", 30), log.read_text()
        time.sleep(8)  # asyncpg retries after 1, 2, 4 s: three more failures at least
        text = log.read_text()
        assert "Traceback" not in text and "Failed to restore" not in text, text
        assert text.count("PostgreSQL unreachable") == 1, text
        assert _heal(own, "engines", "start", timeout=180).returncode == 0
        assert _wait_for(log, "PostgreSQL reachable again", 90), log.read_text()
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        _heal(own, "engines", "stop", "--force", timeout=180)


def _garble_pages_of(cache: Path, tables: tuple[str, ...] | None) -> bytes:
    """Overwrite with random bytes the pages of ``cache`` past its first (its schema kept,
    so it opens and the damage is found by a query: "database disk image is malformed"):
    every page with ``tables`` None, else the root page of each table named."""
    conn = sqlite3.connect(cache)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        roots = [] if tables is None else [int(conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0])
            for t in tables]
    finally:
        conn.close()
    data = bytearray(cache.read_bytes())
    spans = ([(size, len(data))] if tables is None
             else [((r - 1) * size, r * size) for r in roots])
    for start, end in spans:
        data[start:end] = os.urandom(end - start)
    cache.write_bytes(bytes(data))
    return bytes(data)


def test_a_lookup_cache_malformed_past_its_first_page_is_moved_aside_and_rebuilt(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15d #8: a cache whose pages past the first were damaged opens (its schema is on
    page 1); the first query said "database disk image is malformed": `heal status` gave no
    advice, and `heal run` reached no decision on every run, the file never moved aside. Now a
    damage found at a query takes the same path as one found at open."""
    env = _env(heal_env)
    first = _heal(env, "run", "--", "sh", "-c", "echo 'qa-s15d-8 first: boom' >&2; exit 3",
                  cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    home = Path(heal_env["HEAL_HOME"])
    cache = home / "lookup-cache.sqlite3"
    damaged = _garble_pages_of(cache, None)
    status = _heal(env, "status", timeout=120)
    assert status.returncode == 1, status.stderr
    assert "database disk image is malformed" in status.stderr, status.stderr
    assert "the file is damaged (the lookup's local cache and outbox)" in status.stderr
    assert "moves it aside" in status.stderr, status.stderr
    assert cache.read_bytes() == damaged  # status changes nothing
    out = tmp_path / "decision.json"
    done = _heal(env, "run", "--json-file", str(out), "--", "sh", "-c",
                 "echo 'qa-s15d-8 second: boom' >&2; exit 3", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "no decision" not in done.stderr, done.stderr
    assert "malformed" not in json.loads(out.read_text())["detail"], done.stderr
    aside = list(home.glob("lookup-cache.sqlite3.damaged-*Z"))  # (its -wal, -shm beside it)
    assert len(aside) == 1 and aside[0].read_bytes() == damaged, aside
    assert f"moved aside to {aside[0]}" in done.stderr, done.stderr
    assert _heal(env, "status", timeout=120).returncode == 0


def test_a_malformed_lookup_cache_whose_outbox_can_be_read_is_left_saying_what_it_holds(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15d #8: a cache damaged in its tier-1 table whose outbox still holds readable
    writes: moving it aside would lose them, so it is left as it is, and `heal status` and
    `heal run` (which keeps CMD's status) say how many writes it holds and what to do."""
    from storage.cache import LocalCache

    home = Path(heal_env["HEAL_HOME"])
    cache = home / "lookup-cache.sqlite3"
    local = LocalCache(cache)
    try:
        local.put_fingerprints((f"fp{i}", "fine", "p", "rule") for i in range(2000))
        local.enqueue([("qa-s15d-8-op", "no-such-kind", {"x": 1})])
    finally:
        local.close()
    _garble_pages_of(cache, ("fingerprints",))
    inode = cache.stat().st_ino
    env = _env(heal_env)
    status = _heal(env, "status", timeout=120)
    assert status.returncode == 1, status.stderr
    assert "database disk image is malformed" in status.stderr, status.stderr
    assert "its outbox still holds 1 write(s) that can be read" in status.stderr, status.stderr
    assert "heal leaves it as it is" in status.stderr, status.stderr
    done = _heal(env, "run", "--", "sh", "-c", "echo 'qa-s15d-8 third: boom' >&2; exit 3",
                 cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "DatabaseError" not in done.stderr, done.stderr
    assert "the file is damaged" in done.stderr and "can be read" in done.stderr, done.stderr
    # left in place, the waiting write in it
    assert cache.stat().st_ino == inode and not list(home.glob("*.damaged-*"))
    conn = sqlite3.connect(cache)
    try:
        # (PostgreSQL rejects its kind: parked, with its reason, in the same file)
        assert conn.execute("SELECT op_id FROM outbox UNION ALL SELECT op_id FROM parked_ops"
                            ).fetchall() == [("qa-s15d-8-op",)]
    finally:
        conn.close()


def test_a_lookup_cache_damaged_under_a_running_lookup_stage_stops_it_not_parks_for_ever(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """QA s16b #9: the damage is found by the running stage's own query (not by `heal run`'s
    start): a damaged cache whose outbox holds a write is no outage that a wait ends, so the
    stage stops saying what to do, its event left pending (not parked and retried for ever,
    not dead-lettered)."""
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path / "home",
                        prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    lookup = build_lookup(settings, None, semantic=False)  # offline: tier 1 reads the cache
    worker = build_worker(client, settings, load_stage("lookup"),
                          resources={"lookup": lookup})
    try:
        worker.start()
        # Given the cache of the running stage is damaged in its tier-1 table, its outbox
        # holding a write that can still be read
        cache = LocalCache.file_at(settings.home)
        other = LocalCache(cache)
        try:
            other.put_fingerprints((f"fp{i}", "fine", "p", "rule") for i in range(2000))
            other.enqueue([("qa-s16b-9-op", "no-such-kind", {"x": 1})])
        finally:
            other.close()
        _garble_pages_of(cache, ("fingerprints",))
        error = ErrorEvent(id="qa-s16b-9", text="qa-s16b-9 zqxv: nothing known says this")
        event = FingerprintEvent(id="qa-s16b-9:fingerprint", error_id="qa-s16b-9",
                                 error=error, fine="fp-v1:qa-s16b-9", coarse="fp-v1:qa-c",
                                 version="fp-v1")
        client.xadd(settings.stream("fingerprints"),
                    {"event": seal(settings, "fingerprints", event.encode())})
        # When the stage handles an event, its query meets the damage: the stage stops
        with pytest.raises(DamagedCache, match=r"outbox still holds 1 write\(s\)"):
            for _ in range(5):
                worker.step(None)
        # Then the event is still pending, not handed off, parked or dead-lettered
        pending = client.xpending(settings.stream("fingerprints"), "lookup")
        assert int(pending["pending"]) == 1, pending
        assert not worker.retries.pending_ids()
        assert client.xlen(settings.stream("candidates")) == 0
        assert client.xlen(settings.stream("dead")) == 0
    finally:
        worker.finish()
        lookup.cache.close()


def _line_numbers(ranges: str) -> list[int]:
    """``3, 7-9`` -> [3, 7, 8, 9]."""
    numbers: list[int] = []
    for part in ranges.split(", "):
        first, _, last = part.partition("-")
        numbers.extend(range(int(first), int(last or first) + 1))
    return numbers


def test_emit_on_a_redis_refusing_writes_mid_batch_counts_and_names_exactly_what_was_not_sent(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15d #9: Redis began refusing writes in the middle of a batch (MISCONF on a full
    HEAL_HOME; here OOM past maxmemory, the same per-command refusal): `heal emit` said
    "published 0 ..., 300 event(s) not published (send them again)" although 122 were
    published, so following the advice published them twice. Each XADD's reply of the
    non-transactional pipeline now says whether it was done: the count is exact and the lines
    named are exactly the ones missing; sending them again leaves each event once."""
    env = _embedded_redis_env(heal_env)
    assert _heal(env, "engines", "start", timeout=120).returncode == 0
    server = EmbeddedRedis(Path(heal_env["HEAL_HOME"]))
    client = redis.Redis(unix_socket_path=str(server.socket))
    try:
        lines = [orjson_line(f"qa9-{n}", f"qa-s15d-9 failure {n}: " + "x" * 1500)
                 for n in range(1, 301)]
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used + 200_000)  # room for some of the 300 only
        done = subprocess.run([*HEAL, "emit"], env=env, input="".join(lines),
                              capture_output=True, text=True, timeout=120)
        client.config_set("maxmemory", 0)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "qa-s15d-9 failure" not in done.stderr, done.stderr  # (no event text quoted)
        assert "the input after line 300 was not read" in done.stderr, done.stderr
        stream = f"{heal_env['HEAL_STREAM_PREFIX']}:errors"
        published = [orjson.loads(fields[b"event"])["id"]
                     for _, fields in client.xrange(stream)]
        assert 0 < len(published) < 300, len(published)
        said = re.search(r"published (\d+) event\(s\) read before the error, (\d+) event\(s\) "
                         r"not published: line\(s\) ([\d, -]+) \(send them again\)", done.stderr)
        assert said, done.stderr
        assert int(said.group(1)) == len(published), (said.group(1), len(published))
        assert int(said.group(2)) == 300 - len(published)
        missing = _line_numbers(said.group(3))
        assert sorted({f"qa9-{n}" for n in missing} | set(published)) == sorted(
            f"qa9-{n}" for n in range(1, 301)) and len(missing) + len(published) == 300
        # following the advice: each event is in the stream once
        again = subprocess.run([*HEAL, "emit"], env=env,
                               input="".join(lines[n - 1] for n in missing),
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        ids = [orjson.loads(fields[b"event"])["id"] for _, fields in client.xrange(stream)]
        assert sorted(ids) == sorted(f"qa9-{n}" for n in range(1, 301)), len(ids)
    finally:
        client.close()
        _heal(env, "engines", "stop", "--force", timeout=120)


def orjson_line(event_id: str, text: str) -> str:
    return orjson.dumps({"v": 1, "id": event_id, "text": text}).decode() + "\n"
