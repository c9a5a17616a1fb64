"""The lifecycle service and its sweep timer on the real engines, pinned on what they write:
the failures of ranked alternatives, the counts in the audited outcome, and a sweep that goes
on past a failing job (pipeline.lifecycle.service, pipeline.lifecycle.sweeper)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.guardrails.audit import AuditLog
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.lifecycle.sweeper import Sweeper
from storage.db import Database
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore


def _outcome(fp: str, fix_id: str, status: str, failed: list[str]) -> OutcomeEvent:
    error = ErrorEvent(id=f"{fp}-1", text="boom", workflow=Workflow(id="nightly", step="lint"),
                       repo=Repo(commit="c1"))
    return OutcomeEvent(id=f"{fp}-1:apply", error_id=error.id, error=error, fine=fp,
                        fix_id=fix_id, status=status, failed_fixes=failed)


def test_failed_alternatives_are_counted_and_the_outcome_is_audited_with_its_counts(
        db: Database, redis_url: str, tmp_path: Path, prefix: str) -> None:
    settings = Settings(redis_url, None, tmp_path, prefix)
    audit = AuditLog(settings, redis_client=redis.Redis.from_url(redis_url))
    service = LifecycleService(LifecycleStore(db), None, audit, LifecyclePolicy())
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    service.handle(_outcome(fp, "fix-good", "applied", ["fix-bad-1", "fix-bad-2"]))
    stats = {r["fix_id"]: (r["successes"], r["failures"])
             for r in ReportStore(db).fix_stats([fp])}
    assert stats == {"fix-good": (1, 0), "fix-bad-1": (0, 1), "fix-bad-2": (0, 1)}
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    outcome = next(r for r in records if r["kind"] == "lifecycle.outcome")
    assert outcome["subject"] == f"{fp}/fix-good"
    assert {k: outcome["data"][k] for k in ("status", "successes", "failures")} == {
        "status": "applied", "successes": 1, "failures": 0}


def test_a_failing_sweep_job_does_not_stop_the_others(client: redis.Redis, prefix: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise HealError("store down")

    def crashing() -> None:
        raise ValueError("bug")

    sweeper = Sweeper(client, f"{prefix}:sweep", [broken, crashing, lambda: ran.append("ok")])
    with caplog.at_level(logging.ERROR, logger="heal.lifecycle.sweep"):
        assert sweeper.run_once()
    assert ran == ["ok"]
    assert "lifecycle sweep broken failed: store down" in caplog.text
    assert "lifecycle sweep crashing failed" in caplog.text
    # the lease is held for the interval: another worker does not sweep again
    assert not Sweeper(client, f"{prefix}:sweep", [lambda: ran.append("twice")]).run_once()
    assert ran == ["ok"] and 290 < client.ttl(f"{prefix}:sweep") <= 300


def test_the_sweep_thread_never_keeps_the_process_alive(client: redis.Redis,
                                                        prefix: str) -> None:
    ran: list[int] = []
    sweeper = Sweeper(client, f"{prefix}:sweep", [lambda: ran.append(1)], interval_s=3600)
    sweeper.start()
    try:
        assert sweeper._thread is not None and sweeper._thread.daemon
        assert sweeper._thread.name == "heal-lifecycle-sweep"
    finally:
        sweeper.stop()
    assert ran == [1] and not sweeper._thread.is_alive()
