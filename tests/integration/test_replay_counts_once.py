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


def _publish_outcomes(settings: Settings, client: redis.Redis,
                      outcomes: list[tuple[str, str, str, str, str]]) -> None:
    """(error id, fingerprint, fix id, status, detail) as the apply stage publishes them
    (sealed with the operator's key, pipeline.trust.seal), then the lifecycle stage."""
    from pipeline.events import OutcomeEvent
    from pipeline.trust.seal import seal

    for error_id, fine, fix_id, status, detail in outcomes:
        event = OutcomeEvent(id=f"{error_id}:apply", error_id=error_id,
                             error=ErrorEvent(id=error_id, text=f"text of {fine}\n"),
                             fine=fine, fix_id=fix_id, status=status, detail=detail)
        client.xadd(settings.stream("outcomes"),
                    {"event": seal(settings, "outcomes", event.encode())})
    drain_inline(settings, client, stages=["lifecycle"])


def _pair(settings: Settings, fine: str, fix_id: str) -> dict[str, Any]:
    db = open_database(settings)
    try:
        row = db.fetchrow("SELECT state, successes, failures, reverts FROM fix_stats"
                          " WHERE fingerprint = $1 AND fix_id = $2", fine, fix_id)
    finally:
        db.close()
    return dict(row) if row is not None else {}


def test_a_replayed_attempt_counts_once_in_the_fix_statistics(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given 15 errors each fixed by one fix (15 successes: ACTIVE, not yet AUTOMATED, which
    # takes about 28 without a failure at the default 0.9 threshold)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    word = uuid.uuid4().hex[:10]
    fine, fix_id = f"fp-v4:grad{word}", f"fix.grad{word}"
    originals = [f"orig-{word}-{i}" for i in range(15)]
    _publish_outcomes(settings, client, [(i, fine, fix_id, "applied", "") for i in originals])
    assert _pair(settings, fine, fix_id) == {
        "state": "ACTIVE", "successes": 15, "failures": 0, "reverts": 0}

    # When history is replayed after pre-flight's dedupe window and every copy is applied
    # again (twice: two replays)
    copies = [f"{i}~replay-{t}" for t in ("T1", "T2") for i in originals]
    _publish_outcomes(settings, client, [(c, fine, fix_id, "applied", "") for c in copies])
    # Then the pair counts each error once: no graduation to AUTOMATED on replayed history
    assert _pair(settings, fine, fix_id) == {
        "state": "ACTIVE", "successes": 15, "failures": 0, "reverts": 0}

    # And a copy whose original has no outcome (trimmed before heal recorded it) counts once,
    # however many copies of it there are
    lost = f"lost-{word}"
    _publish_outcomes(settings, client, [(f"{lost}~replay-{t}", fine, fix_id, "applied", "")
                                         for t in ("T1", "T2", "T3")])
    assert _pair(settings, fine, fix_id)["successes"] == 16

    # Given an error whose fix was rolled back (QUARANTINED) and then let out by a person
    bad_fine, bad_fix = f"fp-v4:quar{word}", f"fix.quar{word}"
    reverted = f"reverted-{word}"
    _publish_outcomes(settings, client, [(reverted, bad_fine, bad_fix, "rolled_back", "")])
    assert _pair(settings, bad_fine, bad_fix)["state"] == "QUARANTINED"
    _heal(heal_env, "unquarantine", bad_fine)
    # When a replay copy of that same error is applied and rolled back again
    _publish_outcomes(settings, client,
                      [(f"{reverted}~replay-T1", bad_fine, bad_fix, "rolled_back", "")])
    # Then the pair is not quarantined a second time on the same error
    assert _pair(settings, bad_fine, bad_fix) == {
        "state": "DRAFT", "successes": 0, "failures": 0, "reverts": 1}

    # And a fix that could not run is counted toward its quarantine once per error
    gone_fine, gone_fix = f"fp-v4:gone{word}", f"fix.gone{word}"
    unrunnable = "the fix cannot run: sh: 1: zz: not found"
    gone = [f"gone-{word}-{i}" for i in range(2)]
    _publish_outcomes(settings, client, [(g, gone_fine, gone_fix, "failed", unrunnable)
                                         for g in gone])
    _publish_outcomes(settings, client, [(f"{g}~replay-T1", gone_fine, gone_fix, "failed",
                                          unrunnable) for g in gone])
    assert _pair(settings, gone_fine, gone_fix) == {
        "state": "DRAFT", "successes": 0, "failures": 2, "reverts": 0}


def _dashboard_apply_counts(settings: Settings) -> dict[str, int]:
    """The apply counts of GET /api/overview (what the dashboard draws), over real HTTP."""
    import threading
    import urllib.request

    from pipeline.serve.server import make_server

    server = make_server(settings, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/overview"
        with urllib.request.urlopen(url, timeout=60) as resp:
            counts: dict[str, int] = json.loads(resp.read())["apply"]
    finally:
        server.shutdown()
        server.server_close()
    return counts


def test_the_dashboards_apply_counts_count_a_replayed_error_once(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given two errors handled by every stage
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    word = uuid.uuid4().hex[:10]
    originals = [f"orig-{word}-a", f"orig-{word}-b"]
    Publisher(client, settings).publish_many([
        ErrorEvent(id=originals[0], text=f"ModuleNotFoundError: No module named 'zz{word}'\n"),
        ErrorEvent(id=originals[1], text=f"FrobnicatorError: sprocket {word} exploded\n")])
    _drain(settings, client, originals)
    before = _dashboard_apply_counts(settings)
    # ... and a copy whose original heal never recorded (trimmed before it was handled)
    lost = f"lost-{word}~replay-T0"
    Publisher(client, settings).publish_many([
        ErrorEvent(id=lost, text=f"GizmoError: widget {word} unbalanced\n")])
    _drain(settings, client, [lost])
    with_lost = _dashboard_apply_counts(settings)
    assert sum(with_lost.values()) == sum(before.values()) + 1, (before, with_lost)

    # When history is replayed and the stages handle the copies (their results: "skipped")
    _heal(heal_env, "backfill", "--replay")
    # (the lost error's copy is replayed too: its original is not in the stream)
    copies = _copies(settings, client, {*originals, lost})
    assert len(copies) == 3, copies
    _drain(settings, client, copies)
    db = open_database(settings)
    try:
        recorded = db.fetchval("SELECT count(*) FROM apply_results"
                               " WHERE error_id = ANY($1::text[])", copies)
    finally:
        db.close()
    assert recorded == 3  # the copies have apply results of their own

    # Then the dashboard's apply counts are what they were: an error counts once
    assert _dashboard_apply_counts(settings) == with_lost
