"""What pipeline/validate/audit.py writes to the audit log (the file and the PostgreSQL table,
real engines), and what it does when either cannot take the record: a record of what already
happened is never lost nor written twice, an intent that cannot be recorded refuses the action
(issue 16: mutation score of pipeline/validate)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.validate.audit import (
    audit,
    audit_before_acting,
    audit_witnessed_later,
    write_witness,
)
from storage.db import Database


@dataclass
class Store:
    db: Any


class DownDb:
    """A database that is down: every call raises as storage.db does then."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


@pytest.fixture
def broken_settings(tmp_path: Path, prefix: str) -> Settings:
    """A home whose audit file cannot be written (the home is a plain file)."""
    (tmp_path / "not-a-dir").write_text("")
    return Settings(redis_url=None, database_url=None, home=tmp_path / "not-a-dir", prefix=prefix)


def file_records(settings: Settings) -> list[dict[str, Any]]:
    path = settings.home / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def table_records(db: Database, subject: str) -> list[dict[str, Any]]:
    rows = db.fetch("SELECT body FROM audit_log WHERE subject = $1 ORDER BY seq", subject)
    return [json.loads(r["body"]) for r in rows]


def test_audit_writes_the_file_and_the_table(settings: Settings, client: redis.Redis,
                                             db: Database) -> None:
    subject = f"s-{uuid.uuid4().hex}"
    audit(settings, Store(db), "verdict", subject, {"decision": "apply"}, client)
    [record] = file_records(settings)
    assert (record["kind"], record["subject"], record["data"]) == \
        ("verdict", subject, {"decision": "apply"})
    [row] = table_records(db, subject)
    assert row["kind"] == "verdict" and row["data"] == {"decision": "apply"}
    assert row["file"]["seq"] == record["seq"] and row["file"]["hash"] == record["hash"]
    # without a store: the file only
    audit(settings, None, "rollback", subject, {"n": 1}, client)
    assert [r["kind"] for r in file_records(settings)] == ["verdict", "rollback"]
    assert len(table_records(db, subject)) == 1


def test_audit_of_what_happened_logs_a_failure(broken_settings: Settings, client: redis.Redis,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.audit"):
        audit(broken_settings, None, "rollback", "e9", {}, client)  # does not raise
    assert any("audit log append failed (rollback e9)" in r.getMessage()
               for r in caplog.records)


def test_an_intent_is_recorded_before_acting(settings: Settings, client: redis.Redis,
                                             db: Database) -> None:
    subject = f"s-{uuid.uuid4().hex}"
    assert audit_before_acting(settings, Store(db), "apply.intent", subject,
                               {"fix_id": "f"}, client) == ""
    [record] = file_records(settings)
    assert (record["kind"], record["subject"], record["data"]) == \
        ("apply.intent", subject, {"fix_id": "f"})
    assert [r["kind"] for r in table_records(db, subject)] == ["apply.intent"]


def test_an_intent_that_cannot_be_recorded_refuses(broken_settings: Settings,
                                                   client: redis.Redis,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="pipeline.validate.audit"):
        why = audit_before_acting(broken_settings, None, "apply.intent", "e1", {}, client)
    [line] = [r.getMessage() for r in caplog.records if r.name == "pipeline.validate.audit"]
    assert line.startswith("refusing to act unaudited (apply.intent e1): audit ")
    assert why.startswith("nothing applied: the audit log cannot record it (audit ")
    assert str(broken_settings.home) in why and why.endswith(")")


def test_an_intent_refused_when_postgresql_is_down(settings: Settings,
                                                   client: redis.Redis) -> None:
    assert audit_before_acting(settings, Store(DownDb()), "apply.intent", "e1", {}, client) == (
        "nothing applied: the audit log cannot record it (PostgreSQL at /tmp/x is "
        "unavailable: connection refused)")


def test_witnessed_later_without_a_database(settings: Settings, client: redis.Redis) -> None:
    assert audit_witnessed_later(settings, None, "verdict", "e1", {"d": 1}, client) is None
    assert audit_witnessed_later(settings, Store(None), "verdict", "e2", {"d": 2},
                                 client) is None
    assert [(r["subject"], r["data"]) for r in file_records(settings)] == \
        [("e1", {"d": 1}), ("e2", {"d": 2})]


def test_witnessed_later_writes_the_table_at_once_when_it_can(
        settings: Settings, client: redis.Redis, db: Database) -> None:
    subject = f"s-{uuid.uuid4().hex}"
    assert audit_witnessed_later(settings, Store(db), "verdict", subject, {"d": 1},
                                 client) is None
    [record] = file_records(settings)
    [row] = table_records(db, subject)
    assert row["data"] == {"d": 1}
    assert (row["file"]["seq"], row["file"]["hash"]) == (record["seq"], record["hash"])


def test_witnessed_later_while_postgresql_is_down_then_written_once(
        settings: Settings, client: redis.Redis, db: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    subject = f"s-{uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.audit"):
        witness = audit_witnessed_later(settings, Store(DownDb()), "verdict", subject,
                                        {"decision": "reject"}, client)
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.validate.audit"] == [
        f"audit table record of verdict {subject} waits for PostgreSQL: PostgreSQL at /tmp/x "
        "is unavailable: connection refused"]
    [record] = file_records(settings)
    assert witness == {"kind": "verdict", "subject": subject, "data": {"decision": "reject"},
                       "file": {"seq": record["seq"], "hash": record["hash"]}}
    assert table_records(db, subject) == []
    # PostgreSQL is back: the table record names the file record; no second file record
    write_witness(settings, Store(db), witness, client)
    [row] = table_records(db, subject)
    assert (row["kind"], row["subject"], row["data"]) == ("verdict", subject,
                                                          {"decision": "reject"})
    assert row["file"]["seq"] == record["seq"] and row["file"]["hash"] == record["hash"]
    assert len(file_records(settings)) == 1
    with pytest.raises(DatabaseUnavailable):
        write_witness(settings, Store(DownDb()), witness, client)


def test_witnessed_later_when_the_file_cannot_take_it(broken_settings: Settings,
                                                      client: redis.Redis, db: Database,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.audit"):
        assert audit_witnessed_later(broken_settings, Store(db), "verdict", "e1", {},
                                     client) is None
    assert any("audit log append failed (verdict e1)" in r.getMessage()
               for r in caplog.records)
