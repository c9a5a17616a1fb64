"""``heal status`` against the real session engines: JSON shape, stream and group figures,
readable table, unreachable engines (exit 1, no traceback), malformed URLs (exit 2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.cli import status as status_cli
from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [
    sys.executable,
    "-c",
    "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
]


@pytest.fixture
def busy_streams(heal_env: dict[str, str], redis_url: str, prefix: str) -> redis.Redis:
    """Given 5 errors of which the fingerprint group has read 2 (pending) and 1 dead letter."""
    client = redis.Redis.from_url(redis_url)
    for i in range(5):
        client.xadd(f"{prefix}:errors", {"event": json.dumps({"v": 1, "id": str(i), "text": "x"})})
    client.xgroup_create(f"{prefix}:errors", "fingerprint", id="0")
    client.xreadgroup("fingerprint", "worker-1", {f"{prefix}:errors": ">"}, count=2)
    client.xadd(f"{prefix}:dead", {"reason": "test", "raw": b"\xff"})
    return client


def test_json_has_the_contract_shape_and_figures(
    busy_streams: redis.Redis, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (5 events wait for the fingerprint stage and no worker runs: a problem, exit 1)
    assert main(["status", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    # the fields DESIGN.md promises
    assert set(status) >= {"engines", "streams", "dead_letters", "breaker", "budget"}
    assert set(status["engines"]) == {"redis", "postgres"}
    for engine in status["engines"].values():
        assert engine["mode"] == "external" and engine["reachable"] is True and engine["version"]
    assert "state" in status["breaker"]
    assert isinstance(status["budget"], dict)
    # figures for every pipeline stream plus the dead letters
    assert set(status["streams"]) == {
        f"{prefix}:{s}"
        for s in ("errors", "fingerprints", "candidates", "verdicts", "outcomes", "dead")
    }
    errors = status["streams"][f"{prefix}:errors"]
    assert errors["length"] == 5
    group = errors["groups"]["fingerprint"]
    assert (group["pending"], group["lag"], group["consumers"]) == (2, 3, 1)
    assert group["members"][0]["name"] == "worker-1" and group["members"][0]["pending"] == 2
    assert status["streams"][f"{prefix}:fingerprints"] == {"length": 0, "groups": {}}
    assert status["dead_letters"] == 1
    assert status["ok"] is False and status["unserved"] == [{
        "stage": "fingerprint", "stream": f"{prefix}:errors", "waiting": 5, "registered": 1}]
    assert len(status["problems"]) == 1 and "no worker serves stage fingerprint" in (
        status["problems"][0])


def test_lag_counts_only_undelivered_entries(busy_streams: redis.Redis, prefix: str) -> None:
    stream = f"{prefix}:errors"
    busy_streams.xreadgroup("fingerprint", "worker-2", {stream: ">"}, count=10)
    busy_streams.xadd(stream, {"event": b"{}"})
    groups = status_cli.stream_status(busy_streams, stream)["groups"]
    assert groups["fingerprint"]["lag"] == 1
    assert groups["fingerprint"]["pending"] == 5
    assert groups["fingerprint"]["consumers"] == 2


def test_lag_beyond_the_cap_is_a_lower_bound(
    busy_streams: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_cli, "LAG_COUNT_CAP", 2)
    monkeypatch.setattr(status_cli, "_PAGE", 1)
    group = status_cli.stream_status(busy_streams, f"{prefix}:errors")["groups"]["fingerprint"]
    if "lag" in {
        k.decode() if isinstance(k, bytes) else k
        for k in busy_streams.xinfo_groups(f"{prefix}:errors")[0]
    }:
        pytest.skip("this Redis reports lag itself (7+)")
    assert (group["lag"], group["lag_exact"]) == (2, False)


def test_table_is_readable(
    busy_streams: redis.Redis, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 1  # (the backlog no worker serves)
    out = capsys.readouterr().out
    assert "redis" in out and "postgres" in out and "external" in out
    assert f"{prefix}:errors" in out and "fingerprint" in out
    assert "dead letters: 1" in out
    assert "breaker:" in out


def test_the_lookup_outbox_shows_what_waits_for_postgresql_and_what_it_parked(
    heal_env: dict[str, str], db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.config import Settings
    from pipeline.lookup.setup import build_lookup

    settings = Settings.from_env()
    assert main(["status", "--json"]) == 0  # a fresh home: an empty outbox, no cache created
    assert json.loads(capsys.readouterr().out)["outbox"] == {"waiting": 0, "parked": []}
    assert not (settings.home / "lookup-cache.sqlite3").exists()
    marker = uuid.uuid4().hex
    # Given a write PostgreSQL rejects (a number where it wants text), synced by the lookup
    # stage
    online = build_lookup(settings, db, semantic=False)
    try:
        online.cache.enqueue([(f"issue:poison-{marker}", "issue", {
            "fine": 5, "coarse": "c", "sample": "x", "ts": time.time()})])
        online.sync()
    finally:
        online.close()
    # and an unmatched error looked up while PostgreSQL is unreachable (its write waits)
    offline = build_lookup(settings, None, semantic=False)
    try:
        result = offline.lookup(error_id=f"e-{marker}", text=f"zzz nothing matches {marker}",
                                fine=f"fp-{marker}", coarse="")
        assert result.pattern_id is None
        assert offline.sync() == 0
    finally:
        offline.close()
    # When the operator asks heal status
    assert main(["status", "--json"]) == 0
    outbox = json.loads(capsys.readouterr().out)["outbox"]
    # Then it counts the waiting write and lists the parked one with PostgreSQL's reason
    assert outbox["waiting"] >= 1
    [parked] = [p for p in outbox["parked"] if p["op_id"] == f"issue:poison-{marker}"]
    assert parked["kind"] == "issue" and parked["reason"]
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "write(s) waiting for PostgreSQL" in out and f"issue:poison-{marker}" in out


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run(
        [*HEAL, "status", *args],
        cwd=ROOT,
        env={**full, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreachable_redis_exits_1_with_what_to_change(tmp_path: Path, database_url: str) -> None:
    done = _run(
        {
            "HEAL_HOME": str(tmp_path),
            "HEAL_REDIS_URL": "redis://127.0.0.1:1/0",
            "HEAL_DATABASE_URL": database_url,
        },
        "--json",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot reach HEAL_REDIS_URL=redis://127.0.0.1:1/0" in done.stderr
    assert "unset HEAL_REDIS_URL" in done.stderr
    # what could be gathered is still printed
    status = json.loads(done.stdout)
    assert status["ok"] is False
    assert status["engines"]["postgres"]["reachable"] is True
    assert status["engines"]["redis"]["reachable"] is False


def test_unreachable_postgres_exits_1_but_streams_are_shown(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    done = _run(
        {
            "HEAL_HOME": str(tmp_path),
            "HEAL_REDIS_URL": redis_url,
            "HEAL_STREAM_PREFIX": prefix,
            "HEAL_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db",
        }
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "secret" not in done.stderr + done.stdout
    assert "cannot reach HEAL_DATABASE_URL=postgresql://u:***@127.0.0.1:1/db" in done.stderr
    assert f"{prefix}:errors" in done.stdout


def test_malformed_url_exits_2(tmp_path: Path) -> None:
    done = _run({"HEAL_HOME": str(tmp_path), "HEAL_REDIS_URL": "http://localhost:6379"})
    assert done.returncode == 2
    assert "unsupported scheme 'http'" in done.stderr and "Traceback" not in done.stderr


def test_collect_status_works_inside_a_running_event_loop(heal_env: dict[str, str]) -> None:
    # e.g. an async web handler serving /api/status
    import asyncio

    from pipeline.config import Settings

    async def handler() -> dict[str, object]:
        return status_cli.collect_status(Settings.from_env())

    status = asyncio.run(handler())
    assert status["ok"] is True
    assert status["engines"]["postgres"]["version"]


def test_status_shows_the_rate_limit_of_the_policy_in_force(
    heal_env: dict[str, str], tmp_path: Path
) -> None:
    """``heal status`` showed the default bucket (20 tokens, refill 2/min) while the apply
    stage enforced the repository's heal.toml ``[budget] automatic_fixes=1,
    automatic_fixes_minutes=60``; it now reads the policy the apply stage reads."""
    from tests.integration._repos import committed_repo

    # Given a repository whose heal.toml allows 1 automatic fix per 60 minutes
    repo = committed_repo(tmp_path / "repo", {
        "heal.toml": "[budget]\nautomatic_fixes = 1\nautomatic_fixes_minutes = 60\n"})
    env = {**os.environ, **heal_env, "PYTHONPATH": str(ROOT)}
    # When heal status runs in it
    shown = subprocess.run([*HEAL, "status", "--json"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    text = subprocess.run([*HEAL, "status"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    # Then the budget shows that limit (the repository's own bucket) and where it came from,
    # beside the bucket every repository shares, at the default rate (the operator's only)
    budget = json.loads(shown.stdout)["budget"]
    own = budget["repository_rate"]
    assert own["capacity"] == 1 and own["minutes"] == 60, budget
    assert own["set_by"] == f"this repository's own: [budget] in {repo.resolve() / 'heal.toml'}"
    assert budget["rate"]["capacity"] == 20 and budget["rate"]["minutes"] == 10, budget
    assert budget["rate"]["set_by"].startswith("shared by every repository: the default")
    assert budget["policy"] == str(repo.resolve() / "heal.toml"), budget
    assert re.search(r"rate \(this repository\) +1 / 1 tokens, refill [0-9.]+/min \(at most 1 "
                     r"automatic fixes per 60 min\)", text.stdout), text.stdout
    assert "at most 20 automatic fixes per 10 min" in text.stdout, text.stdout
    assert re.search(rf"limits from +{re.escape(str(repo.resolve() / 'heal.toml'))}\n",
                     text.stdout), text.stdout
    # ... and outside a repository the defaults, named so
    outside = subprocess.run([*HEAL, "status", "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(outside.stdout)["budget"]["policy"] == "defaults"


def test_a_backlog_with_only_stopped_consumers_is_a_problem_naming_the_stage(
        heal_env: dict[str, str], redis_url: str, prefix: str) -> None:
    """QA s18b #10: a killed worker stayed a "consumer" and events waiting for it were ok."""
    # Given a fingerprint worker that ran (registered in its group), then was killed
    worker = subprocess.Popen([*HEAL, "worker", "fingerprint"], cwd=ROOT,
                              env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while not list(client.scan_iter(match=f"{prefix}:alive:fingerprint:*")):
            assert time.monotonic() < deadline and worker.poll() is None, "worker never beat"
            time.sleep(0.3)
        running = json.loads(_run(heal_env, "--json").stdout)
        group = running["streams"][f"{prefix}:errors"]["groups"]["fingerprint"]
        assert group["live_consumers"] == 1 and group["members"][0]["alive"] is True
    finally:
        worker.kill()
        worker.wait(30)
    # When an event is published and nothing reads it
    client.xadd(f"{prefix}:errors", {"event": json.dumps({"v": 1, "id": f"e-{uuid.uuid4().hex}",
                                                          "text": "boom"})})
    # Then (once its heartbeat expired) status says who should read it and how to start one
    deadline = time.monotonic() + 60
    while True:
        done = _run(heal_env, "--json")
        status = json.loads(done.stdout)
        if status["problems"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    group = status["streams"][f"{prefix}:errors"]["groups"]["fingerprint"]
    assert group["consumers"] == 1 and group["live_consumers"] == 0  # added, not renamed
    assert group["members"][0]["alive"] is False
    problem = next(p for p in status["problems"] if "stage fingerprint" in p)
    assert "heal worker fingerprint" in problem and "heal up" in problem
    assert f"heal: error: {problem}" in done.stderr
    # a problem a script can act on: ok false, exit 1, and which stage in ``unserved``
    assert status["ok"] is False and done.returncode == 1
    assert {"stage": "fingerprint", "stream": f"{prefix}:errors", "waiting": 1,
            "registered": 1} in status["unserved"]
    table = _run(heal_env)
    assert table.returncode == 1
    assert "1 (0 live)" in table.stdout
