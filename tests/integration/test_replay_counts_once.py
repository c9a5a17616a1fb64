"""``heal backfill --replay`` through the real CLI and the real stages on the embedded engines:
the operator's numbers (``heal metrics``, ``heal report``, ``heal issues list``) count an
error once however often history is replayed, a second replay does not re-publish the copies
of errors whose original it publishes, and ``heal explain`` marks what a replay did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline
from producers.publisher import Publisher
from storage.engines import open_database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads(_heal(env, *args).stdout)


def _drain(settings: Settings, client: redis.Redis, ids: list[str]) -> None:
    """Every stage inline, then wait until the lookup's outbox reached PostgreSQL for ``ids``
    (occurrences or the issue queue: its ops carry the error id in ``applied_ops``)."""
    drain_inline(settings, client)
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = db.fetchval("SELECT count(*) FROM applied_ops WHERE op_id = ANY($1::text[])",
                               [f"{kind}:{i}" for i in ids for kind in ("occ", "issue")])
            outcomes = db.fetchval(
                "SELECT count(DISTINCT error_id) FROM lifecycle_outcomes"
                " WHERE error_id = ANY($1::text[])", ids)
            if done == len(ids) and outcomes == len(ids):
                return
            drain_inline(settings, client)
            time.sleep(0.3)
    finally:
        db.close()
    raise AssertionError(f"the stages never finished {ids}")


def _copies(settings: Settings, client: redis.Redis, seen: set[str]) -> list[str]:
    ids = [ErrorEvent.decode(f[b"event"]).id for _, f in client.xrange(settings.stream("errors"))]
    return [i for i in ids if i not in seen]


def _numbers(env: dict[str, str]) -> dict[str, Any]:
    window = _json(env, "metrics", "--window", "24h", "--json")["windows"]["24h"]
    report = _json(env, "report", "--since", "1d", "--format", "json")
    issues = _json(env, "issues", "list", "--json")
    return {"errors": window["errors"], "detected": window["detected"],
            "outcomes": window["outcomes"], "auto_fix_rate": window["auto_fix_rate"],
            "top_errors": [(t["pattern_id"], t["count"]) for t in window["top_errors"]],
            "top_unmatched": [g["count"] for g in window["top_unmatched"]],
            "report_errors": report["errors"], "report_outcomes": report["outcomes"],
            "escalations": len(report["escalations"]),
            "issues": sorted((i["fine"], i["count"]) for i in issues["issues"])}


def test_a_replay_counts_each_error_once_and_explain_marks_its_outcomes(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given a matched and an unmatched error handled by every stage
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    word = uuid.uuid4().hex[:10]
    originals = [f"orig-{word}-a", f"orig-{word}-b"]
    Publisher(client, settings).publish_many([
        ErrorEvent(id=originals[0], text=f"ModuleNotFoundError: No module named 'zz{word}'\n"),
        ErrorEvent(id=originals[1], text=f"FrobnicatorError: sprocket {word} exploded\n")])
    _drain(settings, client, originals)
    before = _numbers(heal_env)
    assert before["errors"] == 2 and before["report_errors"] == 2, before
    # ... and an event that names itself a copy of one of them (ids are untrusted input)
    forged = f"{originals[0]}~replay-forged"
    Publisher(client, settings).publish_many([
        ErrorEvent(id=forged, text=f"GizmoError: widget {word} unbalanced\n")])
    _drain(settings, client, [forged])
    # it hides at most itself: the other error's numbers and outcome stay as they were
    assert _numbers(heal_env) == before

    # When history is replayed and the stages handle the copies
    _heal(heal_env, "backfill", "--replay")
    first = _copies(settings, client, {*originals, forged})
    assert len(first) == 2 and all("~replay-" in i for i in first), first
    _drain(settings, client, first)

    # Then every operator number is what it was: an error counts once
    assert _numbers(heal_env) == before

    # And a second replay re-publishes the originals, not the copies of the first
    done = _heal(heal_env, "backfill", "--replay", "--dry-run", "--json")
    again = [json.loads(line)["id"] for line in done.stdout.splitlines()]
    assert sorted(i.split("~replay-")[0] for i in again) == sorted(originals), again
    assert all(i.count("~replay-") == 1 for i in again), again
    assert "3 copies of an earlier replay left out" in done.stderr, done.stderr

    # And explain tells the copy's outcome apart from the original's
    db = open_database(settings)
    try:
        fine = db.fetchval("SELECT fingerprint FROM lifecycle_outcomes WHERE error_id = $1",
                           originals[1])
    finally:
        db.close()
    story = _heal(heal_env, "explain", fine).stdout
    copy = next(i for i in first if i.startswith(originals[1]))
    assert f"error {copy}  (replay of {originals[1]})" in story, story
    assert f"error {originals[1]}\n" in story, story
