"""`heal demo` end to end on the real engines: every breakage ends as the demo promises."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from pipeline.cli import main
from pipeline.demo.sample import create_repo

WORKTREE = Path(__file__).resolve().parents[2]


def test_heal_demo_end_to_end(heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]
                              ) -> None:
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "6/6 as expected" in out
    assert "detected 6, fixed and verified 4, rolled back 1, escalated 1" in out
    # the rollback is explained by the verification evidence
    assert "the fix breaks checks that passed before: tests" in out
    assert "verify failing-command: exit 1 before, 0 with the fix" in out
    # the guardrails: two reverts in one step trip the breaker, the next fix is refused, and
    # the trip, the quarantines and the workflow's degradation are notified with reasons
    assert "heal breaker step:demo-guardrails/checks: CLOSED -> OPEN (2 revert(s)" in out
    assert "pre-flight refused: breaker: breaker OPEN at step:demo-guardrails/checks" in out
    assert "-> QUARANTINED (reverted" in out
    assert "heal execution demo-guardrails: RUNNING -> DEGRADED (3 consecutive SAFE" in out
    assert "breaker tripped: yes; quarantine or degradation: yes; as expected" in out
    # and it runs again with the same result (its database and streams are its own); with
    # --json, stdout is one JSON object (progress on stderr) that carries the guardrails too
    assert main(["demo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_expected"] and report["guardrails"]["as_expected"]
    assert report["guardrails"]["breaker_tripped"]


class _Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that keeps every POST body."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        size = int(self.headers.get("Content-Length") or 0)
        type(self).received.append(self.rfile.read(size))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - its signature
        return


def _heal(env: dict[str, str], cwd: Path, *argv: str, timeout: float = 300
          ) -> subprocess.CompletedProcess[str]:
    """The real CLI of this worktree in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         *argv], cwd=cwd, env={**env, "PYTHONPATH": str(WORKTREE)}, capture_output=True,
        text=True, timeout=timeout, check=False)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_heal_demo_leaves_the_real_audit_log_notifications_and_webhook_alone(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    # Given an installation with real work in its audit log, and a webhook that pages on-call
    home = Path(heal_env["HEAL_HOME"])
    repo = create_repo(tmp_path / "work")
    _Hook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, **heal_env,
           "HEAL_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook"}
    try:
        run = _heal(env, repo, "run", "--timeout", "60", "--", "python", "-c",
                    "import sys; sys.exit('boom: the work failed')")
        assert run.returncode != 0, run.stdout + run.stderr
        verify = _heal(env, repo, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        audit, notified, posts = (_lines(home / "audit.jsonl"),
                                  _lines(home / "notifications.jsonl"), len(_Hook.received))
        # When the demo runs in the same HEAL_HOME
        demo = _heal(env, tmp_path, "demo")
        # Then its guardrail scene is still shown (the breaker trips, a fix is quarantined)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "breaker tripped: yes; quarantine or degradation: yes; as expected" in demo.stdout
        assert "CLOSED -> OPEN" in demo.stdout
        # but none of it reached the installation: the audit log still verifies and holds
        # only the real work's records, no demo notification was logged, none was POSTed
        verify = _heal(env, repo, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert _lines(home / "audit.jsonl") == audit
        assert not any("demo" in line for line in audit)
        assert _lines(home / "notifications.jsonl") == notified
        assert len(_Hook.received) == posts
        assert not (home / "demo").exists()  # the demo's own state home went with it
        assert "HEAL_WEBHOOK_URL would have received these; the demo sent it none" in demo.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_heal_demo_refuses_a_server_that_cannot_give_it_a_database_of_its_own(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    # Given a configured database whose user may not create databases (it owns this one,
    # ready for heal's migrations)
    from storage.db import Database
    from storage.scratch import with_database

    admin = Database(heal_env["HEAL_DATABASE_URL"], min_size=1, max_size=1)
    tag = uuid.uuid4().hex[:10]
    role, name = f"heal_nocreate_{tag}", f"heal_real_{tag}"
    try:
        admin.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'pw-{tag}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER {role}')
        ready = Database(with_database(heal_env["HEAL_DATABASE_URL"], name), min_size=1,
                         max_size=1)
        try:  # what an operator installs for heal's migrations, which its user then runs
            ready.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            ready.close()
        parts = urlsplit(with_database(heal_env["HEAL_DATABASE_URL"], name))
        host = parts.netloc.rsplit("@", 1)[-1]
        real = urlunsplit((parts.scheme, f"{role}:pw-{tag}@{host}", parts.path, parts.query,
                           ""))
        # When the demo runs there
        demo = _heal({**os.environ, **heal_env, "HEAL_DATABASE_URL": real}, tmp_path, "demo")
        # Then it stops with what to change, and wrote nothing into the configured database
        assert demo.returncode == 1, demo.stdout + demo.stderr
        assert "heal demo needs a database of its own" in demo.stderr, demo.stderr
        assert "HEAL_DATABASE_URL= heal demo" in demo.stderr
        assert "Traceback" not in demo.stderr
        owned = Database(with_database(heal_env["HEAL_DATABASE_URL"], name), min_size=1,
                         max_size=1)
        try:
            assert owned.fetchval("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = 'public'") == 0
        finally:
            owned.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_heal_demo_on_an_unreachable_database_says_so_not_to_grant_createdb(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    """QA s15d #10: a server never reached was reported as one that "refused to create" the
    demo's database, with the advice to grant CREATEDB, which cannot help."""
    # Given a HEAL_DATABASE_URL naming a server that is not there
    nowhere = f"postgresql://postgres@/postgres?host={tmp_path / 'no-server-here'}"
    # When the demo runs
    demo = _heal({**os.environ, **heal_env, "HEAL_DATABASE_URL": nowhere}, tmp_path, "demo",
                 timeout=120)
    # Then it says the server cannot be reached and what to change, and nothing about
    # privileges
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "heal demo cannot reach the PostgreSQL server of HEAL_DATABASE_URL" in demo.stderr
    assert "start that server or correct HEAL_DATABASE_URL" in demo.stderr, demo.stderr
    assert "HEAL_DATABASE_URL= heal demo" in demo.stderr
    assert "CREATEDB" not in demo.stderr and "refused to create" not in demo.stderr
    assert "Traceback" not in demo.stderr


def test_heal_demo_leaves_no_rq_bookkeeping_in_the_shared_redis(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    """QA s15d #10: each demo left its verification queue in ``rq:queues`` and its finished
    registry with no expiry (RQ keeps both outside the demo's prefix)."""
    import redis

    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    mark = f"{heal_env['HEAL_STREAM_PREFIX']}-demo-"
    try:
        # When the demo runs on the installation's Redis (it verifies fixes through RQ)
        demo = _heal({**os.environ, **heal_env}, tmp_path, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        # Then no queue of it is registered, and no key naming it is left for ever
        queues = [q.decode() for q in client.smembers("rq:queues")]
        assert not [q for q in queues if mark in q], queues
        kept = [key.decode() for key in client.scan_iter(match="rq:*", count=1000)
                if mark in key.decode() and client.ttl(key) == -1]
        assert kept == [], kept
        assert not list(client.scan_iter(match=f"{mark}*", count=1000))
    finally:
        client.close()
