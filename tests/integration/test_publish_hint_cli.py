"""`heal emit`, `heal watch` and `heal backfill` say once, on stderr, when no running worker
reads what they published (QA s18b #10: unlike `heal run` they only publish, and the events
waited unseen while `heal status` called it ok). The CLI in subprocesses, real engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
HINT = "no worker is running to handle the"
LOG = ("2026-12-01 10:00:00 INFO starting nightly export\n"
       "2026-12-01 10:00:01 ERROR export failed: disk quota exceeded on /srv/export\n"
       "2026-12-01 10:00:02 INFO done\n")


def heal(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], cwd=ROOT, env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=180)


def events(n: int) -> str:
    return "".join(orjson.dumps({"v": 1, "id": f"hint-{time.time_ns()}-{i}",
                                 "text": f"fatal: step {i} failed"}).decode() + "\n"
                   for i in range(n))


def test_each_publisher_says_once_that_no_worker_reads_what_it_published(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    prefix = heal_env["HEAL_STREAM_PREFIX"]
    # heal emit: the hint on stderr, stdout keeps only the JSON
    emitted = heal(heal_env, "emit", "--json", stdin=events(3))
    assert emitted.returncode == 0, emitted.stderr
    assert json.loads(emitted.stdout)["published"] == 3
    hints = [ln for ln in emitted.stderr.splitlines() if HINT in ln]
    assert hints == [f"heal emit: {HINT} 3 event(s) published to {prefix}:errors: start `heal "
                     "up` or `heal worker fingerprint` (they wait until one runs; `heal status` "
                     "shows them)"], emitted.stderr
    # heal watch --once
    log = tmp_path / "export.log"
    log.write_text(LOG)
    watched = heal(heal_env, "watch", "--once", "--from-start", str(log))
    assert watched.returncode == 0, watched.stderr
    assert "heal watch: published 1 event(s)" in watched.stderr
    assert [ln for ln in watched.stderr.splitlines() if HINT in ln] == [
        f"heal watch: {HINT} 1 event(s) published to {prefix}:errors: start `heal up` or `heal "
        "worker fingerprint` (they wait until one runs; `heal status` shows them)"]
    # heal backfill --json: the hint on stderr, stdout keeps only the JSON
    other = tmp_path / "other.log"
    other.write_text(LOG)
    filled = heal(heal_env, "backfill", "--json", str(other))
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout)["published"] == 1
    assert len([ln for ln in filled.stderr.splitlines()
                if ln.startswith(f"heal backfill: {HINT} 1 event(s)")]) == 1, filled.stderr
    # nothing published, nothing to say
    nothing = heal(heal_env, "emit", stdin="")
    assert nothing.returncode == 0 and HINT not in nothing.stderr
    # a dry run publishes nothing either
    dry = heal(heal_env, "backfill", "--dry-run", "--force", str(other))
    assert dry.returncode == 0 and HINT not in dry.stderr, dry.stderr


def test_no_hint_while_a_worker_runs(heal_env: dict[str, str]) -> None:
    worker = subprocess.Popen([*HEAL, "worker", "fingerprint", "--block-ms", "100"], cwd=ROOT,
                              env={**os.environ, **heal_env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    try:
        deadline = time.monotonic() + 90
        while not list(client.scan_iter(
                match=f"{heal_env['HEAL_STREAM_PREFIX']}:alive:fingerprint:*")):
            assert time.monotonic() < deadline and worker.poll() is None, "worker never beat"
            time.sleep(0.2)
        emitted = heal(heal_env, "emit", stdin=events(2))
        assert emitted.returncode == 0, emitted.stderr
        assert "heal emit: published 2 event(s)" in emitted.stderr
        assert HINT not in emitted.stderr
    finally:
        worker.terminate()
        worker.wait(30)
        client.close()
