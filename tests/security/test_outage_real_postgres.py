"""Attack 11 with a real outage: the PostgreSQL heal writes to is stopped (``pg_ctl stop``)
just as a verification finishes, and again just after the lifecycle stage recorded an
outcome, while the stages are draining. The work is parked (the entry
stays pending and is retried), not dead-lettered, even past ``max_deliveries``; once
PostgreSQL is back it completes, without verifying again and without a second audit record
of the verdict; the lifecycle stage resumes its steps, counts and audits the outcome once.
"""

from __future__ import annotations

import json
import logging
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

from pipeline.config import STREAM_VERDICTS, Settings
from pipeline.demo.sample import git
from pipeline.events import ErrorEvent, Repo, VerdictEvent, Workflow
from pipeline.runtime import drain_inline
from pipeline.runtime.hooks import Delivery, Hook
from pipeline.runtime.loader import build_worker, load_stage
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.processing import PARK_CAP_S
from pipeline.trust.seal import seal
from pipeline.validate.runner import run_argv
from pipeline.validate.verify import Verifier
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from storage.lifecycle import LifecycleStore
from storage.migrate import migrate
from tests.security._support import dead_letters, victim_repo, wait_outcome, write_operator

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL of this test's own, which it may stop and start. Not under
    pytest's basetemp: as root its own user must traverse every parent of its data."""
    base = Path(tempfile.mkdtemp(prefix="heal-outage-"))
    server = EmbeddedPostgres(base / "home")  # as root its data goes to base/home.pg
    with server.leases.locked():
        server.ensure_running()
    try:
        yield server
    finally:
        with server.leases.locked():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


class Outage:
    """Stops ``server`` the first time ``owner.name`` returns (for this test's event)."""

    def __init__(self, server: EmbeddedPostgres, owner: Any, name: str, error_id: str,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.server, self.stopped, self.calls = server, threading.Event(), 0
        original = getattr(owner, name)

        def wrapper(this: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(this, *args, **kwargs)
            if error_id in repr(args[0])[:100_000]:
                self.calls += 1
                if not self.stopped.is_set():
                    with server.leases.locked():
                        assert server.stop()
                    self.stopped.set()
            return result

        monkeypatch.setattr(owner, name, wrapper)

    def wait_parked(self, parks: ParkCounter, group: str, client: redis.Redis, stream: str,
                    settings: Settings, options: WorkerOptions,
                    drainer: threading.Thread) -> None:
        """Wait until the stage parked the entry more times than max_deliveries during the
        outage, check it is still pending and nothing was dead-lettered, then start
        PostgreSQL again."""
        assert self.stopped.wait(180), f"the outage before {group} never began"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parks.count(group) <= options.max_deliveries + 2:
            time.sleep(0.05)
        assert parks.count(group) > options.max_deliveries + 2, parks.counts
        assert int(client.xpending(settings.stream(stream), group)["pending"]) == 1, \
            f"the {group} entry is not pending during the outage"
        assert not dead_letters(client, settings), "work was dead-lettered during the outage"
        assert drainer.is_alive(), "the stages gave up during the outage"
        with self.server.leases.locked():
            self.server.ensure_running()


class ParkCounter(logging.Handler):
    """Counts the runtime's "parked during an outage" lines per stage (one per parked
    entry, at DEBUG: at WARNING the outage is logged once per state change)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "parked during an outage" in message and message.startswith("stage "):
            stage = message.split()[1].rstrip(":")
            self.counts[stage] = self.counts.get(stage, 0) + 1

    def count(self, stage: str) -> int:
        return self.counts.get(stage, 0)


def test_a_real_postgres_outage_mid_validation_and_mid_lifecycle_parks_the_work(
    own_postgres: EmbeddedPostgres, redis_url: str, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = own_postgres.url()
    assert url is not None
    db = Database(url)
    migrate(db)
    db.close()
    root = victim_repo(tmp_path, 'mode = "auto-safe"\n')
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

    # Given PostgreSQL stops just as the (real) verification finishes, and again just after
    # the lifecycle stage recorded the outcome (before its other steps and its audit)
    verify = Outage(own_postgres, Verifier, "verify", error_id, monkeypatch)
    record = Outage(own_postgres, LifecycleStore, "record_outcome", error_id, monkeypatch)
    # When the stages drain with a small max_deliveries, and PostgreSQL comes back each time
    options = WorkerOptions(max_deliveries=2, backoff_base_s=0.05, backoff_cap_s=0.2)
    failures: list[BaseException] = []

    def drain() -> None:
        try:
            drain_inline(settings, client, options=options)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            failures.append(exc)

    parks = ParkCounter()
    runtime_log = logging.getLogger("heal.runtime")
    runtime_log.addHandler(parks)
    level = runtime_log.level
    runtime_log.setLevel(logging.DEBUG)
    drainer = threading.Thread(target=drain, daemon=True)
    try:
        drainer.start()
        verify.wait_parked(parks, "validate", client, "candidates", settings, options, drainer)
        record.wait_parked(parks, "lifecycle", client, "outcomes", settings, options, drainer)
        drainer.join(180)
    finally:
        runtime_log.removeHandler(parks)
        runtime_log.setLevel(level)
    assert not drainer.is_alive() and not failures, failures

    # Then the work completed once PostgreSQL was back, with nothing dead-lettered...
    outcome = wait_outcome(client, settings, error_id, timeout_s=5)
    assert outcome is not None, "the event was lost"
    assert outcome.status == "applied", outcome
    assert not dead_letters(client, settings)
    # ...the finished verification did not run again...
    assert verify.calls == 1
    db = Database(url)
    try:
        assert db.fetchval("SELECT count(*) FROM attempts WHERE error_id = $1", error_id) == 1
        assert db.fetchval("SELECT count(*) FROM apply_results WHERE error_id = $1",
                           error_id) == 1
        # ...the lifecycle retry resumed (counted once, finished)...
        row = db.fetchrow("SELECT finished FROM lifecycle_outcomes WHERE error_id = $1",
                          error_id)
        assert row is not None and row["finished"]
        assert record.calls >= 2  # the redelivery reached it again
        stats = db.fetchrow("SELECT successes FROM fix_stats WHERE fix_id = $1",
                            outcome.fix_id)
        assert stats is not None and stats["successes"] == 1
        table = [json.loads(r["body"]) for r in db.fetch("SELECT body FROM audit_log")]
    finally:
        db.close()
    # ...and every decision is audited exactly once, in the file and in the table
    records = [json.loads(line) for line in
               (settings.home / "audit.jsonl").read_text().splitlines()]
    for where, chain in (("audit.jsonl", records), ("audit_log", table)):
        mine = [r["kind"] for r in chain if r["subject"] == error_id
                or r.get("data", {}).get("event_id", "").startswith(error_id)]
        assert mine.count("verdict") == 1, (where, mine)
        assert mine.count("apply") == 1, (where, mine)
        assert mine.count("lifecycle.outcome") == 1, (where, mine)


class _Retries(Hook):
    """Counts the apply stage's parks (on_retry of a parked event)."""

    def __init__(self) -> None:
        self.parks = 0

    def on_retry(self, stage: str, delivery: Delivery, reason: str, delay_s: float) -> None:
        if reason.startswith("parked during an outage"):
            self.parks += 1


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_postgres_outage_backs_the_apply_stage_off_and_logs_it_once_per_state_change(
    own_postgres: EmbeddedPostgres, redis_url: str, prefix: str, tmp_path: Path,
) -> None:
    url = own_postgres.url()
    assert url is not None
    db = Database(url)
    migrate(db)
    settings = Settings(redis_url=redis_url, database_url=url, home=tmp_path / "home",
                        prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    retries, warnings = _Retries(), _Warnings()
    worker = build_worker(client, settings, load_stage("apply"), hooks=[retries],
                          resources={"db": db})
    worker.start()
    # Given 20 verdicts waiting in the apply stage while PostgreSQL is down
    with own_postgres.leases.locked():
        assert own_postgres.stop()
    ids = [f"bo-{uuid.uuid4().hex[:8]}" for _ in range(20)]
    for eid in ids:
        error = ErrorEvent(id=eid, text="boom", command=("false",), exit_code=1,
                           repo=Repo(path=str(tmp_path)), workflow=Workflow(id="wf", step="s"))
        verdict = VerdictEvent(id=f"{eid}:validate", error_id=eid, error=error, fine="fp",
                               decision="observe", reason="just looking")
        client.xadd(settings.stream(STREAM_VERDICTS),
                    {"event": seal(settings, STREAM_VERDICTS, verdict.encode())})
    loggers = [logging.getLogger("heal.runtime"), logging.getLogger("pipeline")]
    for logger in loggers:
        logger.addHandler(warnings)
    try:
        # When the stage runs through 8 s of outage
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            worker.step(100)
        # Then each event was parked about once, not every half second (~300 parks), and
        # the outage was logged once, not once per park
        assert 20 <= retries.parks <= 25, retries.parks
        # ...and no park counted as a delivery (the count a park raised is handed back)
        pending = client.xpending_range(settings.stream(STREAM_VERDICTS), "apply", min="-",
                                        max="+", count=100)
        assert len(pending) == 20, pending
        assert {p["times_delivered"] for p in pending} == {0}, pending
        runtime = [m for m in warnings.messages if m.startswith("stage apply:")]
        assert [m for m in runtime if "engine outage:" in m] == runtime[:1], runtime
        assert len(runtime) == 1, runtime
        # And once PostgreSQL is back, every event is handled within a probe interval (the
        # longest park's delay), the end of the outage logged once
        with own_postgres.leases.locked():
            own_postgres.ensure_running()
        deadline = time.monotonic() + PARK_CAP_S + 5
        while time.monotonic() < deadline and client.xlen(settings.stream("outcomes")) < 20:
            worker.step(100)
        assert client.xlen(settings.stream("outcomes")) == 20
        assert sum("engine outage over" in m for m in warnings.messages) == 1, warnings.messages
    finally:
        for logger in loggers:
            logger.removeHandler(warnings)
        db.close()
    assert not dead_letters(client, settings)
