"""Attack 11 with a real outage: the PostgreSQL heal writes to is stopped (``pg_ctl stop``)
just as a verification finishes, while the stages are draining. The work is parked (the entry
stays pending and is retried), not dead-lettered, even past ``max_deliveries``; once
PostgreSQL is back it completes, without verifying again and without a second audit record
of the verdict, and the lifecycle stage records the outcome once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.runtime import drain_inline
from pipeline.runtime.options import WorkerOptions
from pipeline.validate.runner import run_argv
from pipeline.validate.verify import Verifier
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from storage.migrate import migrate
from tests.security._support import dead_letters, victim_repo, wait_outcome, write_operator

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL of this test's own, which it may stop and start. Not under
    pytest's basetemp: as root its own user must traverse every parent of its data."""
    base = Path(tempfile.mkdtemp(prefix="heal-outage-"))
    server = EmbeddedPostgres(base)
    with server.leases.locked():
        server.ensure_running()
    try:
        yield server
    finally:
        with server.leases.locked():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_real_postgres_outage_mid_validation_parks_the_work_and_it_completes_once(
    own_postgres: EmbeddedPostgres, redis_url: str, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = own_postgres.url()
    assert url is not None
    db = Database(url)
    migrate(db)
    db.close()
    root = victim_repo(tmp_path)  # heal.toml: mode = "suggest"
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{root.resolve()}"]\n'
                  'commands = [["ruff", "format", "--check", "."]]\n')))
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    settings = Settings(redis_url=redis_url, database_url=url, home=tmp_path / "home",
                        prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    error_id = f"outage-{uuid.uuid4().hex[:10]}"
    text = run_argv(["ruff", "format", "--check", "."], str(root), 60.0)["tail"]
    client.xadd(settings.stream("errors"), {"event": orjson.dumps({
        "v": 1, "id": error_id, "text": text, "exit_code": 1,
        "repo": {"path": str(root), "commit": git(root, "rev-parse", "HEAD")},
        "command": ["ruff", "format", "--check", "."], "tags": {"cwd": str(root)}})})

    # Given PostgreSQL stops just as the (real) verification finishes
    verifications: list[str] = []
    stopped = threading.Event()
    original = Verifier.verify

    def verify_then_stop(self: Verifier, req: Any, attempt: int) -> Any:
        result = original(self, req, attempt)
        verifications.append(req.candidate.error_id)
        if not stopped.is_set():
            with own_postgres.leases.locked():
                assert own_postgres.stop()
            stopped.set()
        return result

    monkeypatch.setattr(Verifier, "verify", verify_then_stop)
    # When the stages drain with a small max_deliveries, and PostgreSQL comes back later
    options = WorkerOptions(max_deliveries=2, backoff_base_s=0.05, backoff_cap_s=0.2)
    failures: list[BaseException] = []

    def drain() -> None:
        try:
            drain_inline(settings, client, options=options)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            failures.append(exc)

    worker = threading.Thread(target=drain, daemon=True)
    worker.start()
    assert stopped.wait(180), "the verification never ran"
    # the entry is retried several times (more than max_deliveries) while PostgreSQL is down
    deadline = time.monotonic() + 60
    pending = 0
    while time.monotonic() < deadline:
        info = client.xpending(settings.stream("candidates"), "validate")
        pending = int(info["pending"])
        deliveries = [int(p["times_delivered"]) for p in client.xpending_range(
            settings.stream("candidates"), "validate", "-", "+", 10)]
        if pending and max(deliveries) > options.max_deliveries + 1:
            break
        time.sleep(0.1)
    assert pending == 1, "the entry is not parked (pending) during the outage"
    assert not dead_letters(client, settings), "work was dead-lettered during the outage"
    assert worker.is_alive(), "the stages gave up during the outage"
    with own_postgres.leases.locked():
        assert own_postgres.ensure_running() == url
    worker.join(180)
    assert not worker.is_alive() and not failures, failures

    # Then the work completed once PostgreSQL was back, with nothing dead-lettered
    outcome = wait_outcome(client, settings, error_id, timeout_s=5)
    assert outcome is not None, "the event was lost"
    assert outcome.status == "suggested", outcome
    assert not dead_letters(client, settings)
    # the finished verification did not run again, and its verdict is audited once
    assert verifications == [error_id]
    db = Database(url)
    try:
        assert db.fetchval("SELECT count(*) FROM attempts WHERE error_id = $1", error_id) == 1
        assert db.fetchval("SELECT count(*) FROM apply_results WHERE error_id = $1",
                           error_id) == 1
        table = [json.loads(r["body"]) for r in db.fetch("SELECT body FROM audit_log")]
    finally:
        db.close()
    records = [json.loads(line) for line in
               (settings.home / "audit.jsonl").read_text().splitlines()]
    for where, chain in (("audit.jsonl", records), ("audit_log", table)):
        kinds = [r["kind"] for r in chain if r["subject"] == error_id]
        assert kinds.count("verdict") == 1, (where, kinds)
        assert kinds.count("apply") == 1, (where, kinds)
