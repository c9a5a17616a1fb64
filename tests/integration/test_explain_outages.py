"""`heal explain` and GET /api/explain when part of what they read is broken: Redis down while
PostgreSQL is up (the streams' details go to ``problems``, PostgreSQL's story is still told),
a hand-tampered audit table row (skipped and named, not a failure of every explain), and an
escalation's repository (known from the error event the fingerprint stage recorded).
Real embedded PostgreSQL; the CLI runs this checkout's code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.serve.server import make_server
from storage.engines import open_database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(args: list[str], env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=full, check=False)


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def _dead_socket(tmp_path: Path) -> str:
    """A unix socket file nothing listens on any more (a Redis that died)."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


@pytest.fixture
def known(heal_env: dict[str, str]) -> dict[str, str]:
    """An escalated error PostgreSQL knows (an outcome and an open issue), ids of its own."""
    tag = uuid.uuid4().hex[:16]
    ids = {"fp": f"fp-v4:{tag}", "error": f"e-{tag}"}
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, status,"
                   " workflow, step) VALUES ($1, $2, $3, 'escalated', 'nightly', 'lint')",
                   f"{ids['error']}:apply", ids["error"], ids["fp"])
        db.execute("INSERT INTO issue_queue (fine, count, sample) VALUES ($1, 1, $2)",
                   ids["fp"], f"boom {tag}")
    finally:
        db.close()
    return ids


@pytest.mark.parametrize("where", ["closed port", "dead unix socket"])
def test_explain_with_redis_down_tells_what_postgresql_knows(
        known: dict[str, str], tmp_path: Path, where: str) -> None:
    # Given Redis unreachable (its URL a closed port, or a unix socket nothing listens on)
    # while PostgreSQL is up
    url = _closed_port() if where == "closed port" else _dead_socket(tmp_path)
    down = {"HEAL_REDIS_URL": url}
    for name in (known["error"], known["fp"]):
        # When the operator explains the error id, or its fingerprint
        done = _heal(["explain", name, "--json"], down)
        # Then PostgreSQL's story is told (exit 0), the streams' part named as missing
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        story = json.loads(done.stdout)
        assert story["fingerprint"] == known["fp"]
        assert [o["status"] for o in story["outcomes"]] == ["escalated"]
        assert story["problems"], story
        assert all(p.startswith("details from the streams not shown: ") for p in
                   story["problems"]), story["problems"]
        assert "heal: warning: details from the streams not shown" in done.stderr
        # and the text says so too, once per problem
        text = _heal(["explain", name], down)
        assert text.returncode == 0, text.stderr
        assert "last outcome escalated" in text.stdout or "escalated" in text.stdout
        assert "details from the streams not shown" in text.stdout + text.stderr


def test_explain_with_redis_down_names_it_for_an_unknown_id(heal_env: dict[str, str]) -> None:
    # An id PostgreSQL does not know may be in a stream that could not be read: exit 1 with
    # the not-found message and a warning saying the streams were not read
    done = _heal(["explain", f"e-{uuid.uuid4().hex[:16]}"], {"HEAL_REDIS_URL": _closed_port()})
    assert done.returncode == 1, done.stderr
    assert "no record of fingerprint or error id" in done.stderr
    assert "heal: warning: details from the streams not shown" in done.stderr
    assert "Traceback" not in done.stderr
    # and, the dead letters unread, it claims none absent (QA s13 D8)
    assert "the dead letters could not be read" in done.stderr, done.stderr
    assert "dead letter of that name" not in done.stderr


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def redis_down_server(known: dict[str, str], monkeypatch: pytest.MonkeyPatch
                      ) -> Iterator[str]:
    monkeypatch.setenv("HEAL_REDIS_URL", _closed_port())
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_api_explain_with_redis_down_tells_what_postgresql_knows(
        redis_down_server: str, known: dict[str, str]) -> None:
    for name in (known["error"], known["fp"]):
        status, story = _get(f"{redis_down_server}/api/explain/{name}")
        assert status == 200, story
        assert story["fingerprint"] == known["fp"]
        assert [o["status"] for o in story["outcomes"]] == ["escalated"]
        assert story["problems"] and all(
            p.startswith("details from the streams not shown: ") for p in story["problems"])
    status, body = _get(f"{redis_down_server}/api/explain/e-{uuid.uuid4().hex[:16]}")
    assert status == 404, body


def _audit(db: Any, seq: int, subject: str, body: str) -> None:
    db.execute("INSERT INTO audit_log (seq, kind, subject, prev_hash, hash, body)"
               " VALUES ($1, 'breaker.transition', $2, '', $3, $4)",
               seq, subject, uuid.uuid4().hex, body)


def test_a_tampered_audit_row_is_named_and_explain_still_tells_the_trip(
        heal_env: dict[str, str], own_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a rollback of a fingerprint that opened the breaker (audited), and audit table rows
    # changed by hand: one no longer JSON, and three naming the rollback: a body cut short,
    # one that is no object, one whose states are no text (a database of this test's own:
    # the rows are broken on purpose)
    tag = uuid.uuid4().hex[:16]
    fp, error_id = f"fp-v4:{tag}", f"e-{tag}"
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, status,"
                   " workflow, step) VALUES ($1, $2, $3, 'rolled_back', 'nightly', 'lint')",
                   f"{error_id}:apply", error_id, fp)
        good = {"data": {"from": "CLOSED", "to": "OPEN", "reason": "2 rollbacks",
                         "error_id": error_id}, "kind": "breaker.transition"}
        _audit(db, 1, "step:nightly/lint", json.dumps(good, sort_keys=True,
                                                      separators=(",", ":")))
        _audit(db, 2, "step:nightly/lint", "not json at all {")
        _audit(db, 3, "step:nightly/lint",
               '{"data":{"error_id":"' + error_id + '","from":"CLOSED","to":"OP')
        _audit(db, 4, "step:nightly/lint",
               json.dumps([{"error_id": error_id}], separators=(",", ":")))
        _audit(db, 5, "step:nightly/lint",
               json.dumps({"data": {"error_id": error_id, "from": ["CLOSED"], "to": {"x": 1}}},
                          separators=(",", ":")))
    finally:
        db.close()

    # When the operator explains the fingerprint
    done = _heal(["explain", fp, "--json"])
    # Then the trip is told, and the broken rows naming the rollback are named as skipped
    assert done.returncode == 0, done.stderr
    story = json.loads(done.stdout)
    assert [(b["from"], b["to"], b["error_id"]) for b in story["breaker"]] == [
        ("CLOSED", "OPEN", error_id)], story["breaker"]
    skipped = [p for p in story["problems"] if "audit_log" in p]
    assert [p.split(" (", 1)[0] for p in skipped] == [
        "audit_log row seq 5", "audit_log row seq 4", "audit_log row seq 3"], skipped
    text = _heal(["explain", fp])
    assert text.returncode == 0, text.stderr
    assert "breaker at step:nightly/lint: CLOSED -> OPEN" in text.stdout, text.stdout
    assert "heal: warning: audit_log" in text.stderr and "Traceback" not in text.stderr

    # and GET /api/explain tells the same
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        status, body = _get(f"http://127.0.0.1:{server.server_port}/api/explain/{fp}")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200, body
    assert [b["to"] for b in body["breaker"]] == ["OPEN"]
    assert len([p for p in body["problems"] if "audit_log" in p]) == 3, body["problems"]


def test_a_tampered_audit_rows_subject_is_shown_visible_in_the_warning(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given a rollback, and an audit table row naming it that was changed by hand, its
    # subject holding a terminal title escape and a right-to-left override
    tag = uuid.uuid4().hex[:16]
    fp, error_id = f"fp-v4:{tag}", f"e-{tag}"
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, status,"
                   " workflow, step) VALUES ($1, $2, $3, 'rolled_back', 'nightly', 'lint')",
                   f"{error_id}:apply", error_id, fp)
        _audit(db, 1, "sc\x1b]0;pwned\x07\u202eope",
               '{"data":{"error_id":"' + error_id + '","from":"CLOSED","to":"OP')
    finally:
        db.close()
    # When the operator explains the fingerprint
    done = _heal(["explain", fp])
    # Then the warning naming the row shows those characters escaped, never raw
    assert done.returncode == 0, done.stderr
    assert "heal: warning: audit_log row seq 1" in done.stderr, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "\u202e" not in done.stderr
    assert "sc\\x1b]0;pwned\\x07\\u202eope" in done.stderr, done.stderr


def test_an_escalation_without_an_attempt_names_its_repository(
        heal_env: dict[str, str]) -> None:
    # Given an escalation (no attempt was made) of an error its event says came from a
    # repository, recorded by the lifecycle stage's service
    from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
    from pipeline.lifecycle.graduation import LifecyclePolicy
    from pipeline.lifecycle.service import LifecycleService
    from storage.lifecycle import LifecycleStore

    tag = uuid.uuid4().hex[:16]
    fp, repo = f"fp-v4:{tag}", f"/srv/repos/{tag}"
    error = ErrorEvent(id=f"e-{tag}", text="boom", workflow=Workflow(id="nightly", step="lint"),
                       repo=Repo(path=repo, commit="c1"))
    db = open_database(Settings.from_env())
    try:
        LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy()).handle(
            OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error, fine=fp,
                         status="escalated", detail="no safe fix"))
    finally:
        db.close()
    # When the operator explains it, Then the outcome names that repository
    story = json.loads(_heal(["explain", fp, "--json"]).stdout)
    assert [(o["status"], o["repo"]) for o in story["outcomes"]] == [("escalated", repo)]
    assert f"repo {repo}" in _heal(["explain", fp]).stdout


def test_api_explain_after_redis_died_names_it_once_and_recovers(
        known: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given `heal serve` connected to a Redis of this test's own, which then stops
    from storage.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(tmp_path)
    with redis_server.leases.locked():
        monkeypatch.setenv("HEAL_REDIS_URL", redis_server.ensure_running())
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, story = _get(f"{base}/api/explain/{known['error']}")
        assert status == 200 and story["problems"] == [], story
        with redis_server.leases.locked():
            redis_server.stop()
        # When the dashboard explains the error id (the streams are read four ways)
        status, story = _get(f"{base}/api/explain/{known['error']}")
        # Then PostgreSQL's story is told and the outage named once, not once per read
        assert status == 200, story
        assert [o["status"] for o in story["outcomes"]] == ["escalated"]
        assert len(story["problems"]) == 1, story["problems"]
        assert story["problems"][0].startswith("details from the streams not shown: ")
        # and once Redis is back, the next request reads the streams again
        with redis_server.leases.locked():
            redis_server.ensure_running()
        status, story = _get(f"{base}/api/explain/{known['error']}")
        assert status == 200 and story["problems"] == [], story
    finally:
        server.shutdown()
        server.server_close()
        with redis_server.leases.locked():
            redis_server.stop()
