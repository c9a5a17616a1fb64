"""The apply stage's ``apply`` audit record survives an outage between its file record and its
table record: one file record and one table record naming it, whichever engine failed (real
git, Redis and PostgreSQL; the outage is a database or a Redis client that refuses from a
given moment, as the engine does once it is stopped or its disk is full)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.demo.sample import break_formatting
from pipeline.errors import DatabaseUnavailable, StreamUnavailable
from pipeline.events import VerdictEvent
from pipeline.guardrails.audit import AuditLog
from pipeline.validate.validator import Validator
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo


def _verdict(tmp_path: Path, validator: Validator) -> VerdictEvent:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    assert verdict.decision == "apply", verdict.reason
    return verdict


def _file_records(applier: Applier, error_id: str) -> list[dict[str, Any]]:
    path = applier.settings.home / "audit.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["kind"] == "apply" and r["subject"] == error_id]


def _table_records(db: Database, error_id: str) -> list[dict[str, Any]]:
    rows = db.fetch("SELECT body FROM audit_log WHERE kind = 'apply' AND subject = $1"
                    " ORDER BY seq", error_id)
    return [json.loads(r["body"]) for r in rows]


def _audited_once(applier: Applier, db: Database, error_id: str) -> None:
    """One file record of the decision, and one table record, naming it."""
    [record] = _file_records(applier, error_id)
    [row] = _table_records(db, error_id)
    assert (row["file"]["seq"], row["file"]["hash"]) == (record["seq"], record["hash"])
    assert row["data"] == record["data"] and record["data"]["status"] == "applied"


def test_a_postgresql_outage_after_applying_leaves_the_table_record_to_the_redelivery(
        tmp_path: Path, validator: Validator, applier: Applier, db: Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = _verdict(tmp_path, validator)
    # PostgreSQL goes down once the fix is applied, before the stage records it
    down: list[bool] = []
    real_check, real_finish = db._check_open, applier._finish

    def check_open() -> None:  # what every query of storage.db runs first
        if down:
            raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")
        real_check()

    def finish(*args: Any, **kwargs: Any) -> Any:
        down.append(True)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(db, "_check_open", check_open)
    monkeypatch.setattr(applier, "_finish", finish)
    with pytest.raises(DatabaseUnavailable):  # the runtime parks the verdict
        applier.handle(verdict)
    down.clear()
    assert len(_file_records(applier, verdict.error_id)) == 1
    assert _table_records(db, verdict.error_id) == []  # (the outage)
    # When PostgreSQL is back and the stage retries the verdict, Then the table gets the
    # record the outage missed, naming the file's, and the file no second one
    monkeypatch.setattr(applier, "_finish", real_finish)
    assert applier.handle(verdict).status == "applied"
    _audited_once(applier, db, verdict.error_id)
    assert applier.handle(verdict).status == "applied"  # a later redelivery adds nothing
    _audited_once(applier, db, verdict.error_id)


def _redis_refuses_after(monkeypatch: pytest.MonkeyPatch, client: redis.Redis,
                         step: str) -> list[bool]:
    """From the moment the audit log's ``step`` (``_append_file``: its file record is
    written; ``_append_db``: its table record is) returns, Redis refuses writes, as a
    killed Redis or one whose disk is full does, until the returned list is cleared."""
    refusing: list[bool] = []
    fired: list[bool] = []
    real_step = getattr(AuditLog, step)

    def after(self: AuditLog, *args: Any, **kwargs: Any) -> Any:
        result = real_step(self, *args, **kwargs)
        if args and args[0] == "apply" and not fired:  # (once: the retry is let through)
            fired.append(True)
            refusing.append(True)
        return result

    def refuse(name: str) -> None:
        real = getattr(client, name)

        def command(*args: Any, **kwargs: Any) -> Any:
            if refusing:
                raise redis.ResponseError("MISCONF Redis is configured to save RDB snapshots,"
                                          " but it's currently unable to persist to disk")
            return real(*args, **kwargs)

        monkeypatch.setattr(client, name, command)

    monkeypatch.setattr(AuditLog, step, after)
    for name in ("set", "eval", "delete"):
        refuse(name)
    return refusing


@pytest.mark.parametrize("step", ["_append_file", "_append_db"])
def test_redis_refusing_writes_mid_audit_leaves_one_apply_record(
        step: str, tmp_path: Path, validator: Validator, applier: Applier, db: Database,
        client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = _verdict(tmp_path, validator)
    refusing = _redis_refuses_after(monkeypatch, client, step)
    with pytest.raises(StreamUnavailable):  # parked, not a handler's traceback
        applier.handle(verdict)
    assert refusing
    # When Redis takes writes again and the stage retries the verdict, Then the decision is
    # audited once: one file record, one table record naming it
    refusing.clear()
    assert applier.handle(verdict).status == "applied"
    _audited_once(applier, db, verdict.error_id)
