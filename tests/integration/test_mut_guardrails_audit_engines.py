"""The audit log's witnesses on the real engines, pinned on what they hold: the heads and
marks anchored in Redis, the table chain and its ``audit_anchor`` row in PostgreSQL, the key
the table is sealed with, and an append named ``once`` that a PostgreSQL outage interrupted
(pipeline.guardrails.audit)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.guardrails.audit import (
    ALG,
    TABLE_LOG,
    AuditLog,
    audit_key,
    check_head,
    cross_check,
    read_anchor,
    verify_database,
    verify_file,
)
from tests._audit_ids import file_log_id
from tests.integration.test_audit_pg import PgShim, audit_schema


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)


@pytest.fixture
def db(database_url: str) -> Iterator[PgShim]:
    yield from audit_schema(database_url)


class Outage:
    """A database that is down for the first ``down`` calls."""

    def __init__(self, inner: PgShim, down: int) -> None:
        self.inner, self.down = inner, down

    def run(self, fn: Any) -> Any:
        if self.down > 0:
            self.down -= 1
            raise DatabaseUnavailable("PostgreSQL unreachable")
        return self.inner.run(fn)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str) -> Settings:
    return Settings(redis_url, None, tmp_path, prefix)


def test_every_append_anchors_the_head_and_every_16th_record(client: redis.Redis,
                                                             settings: Settings) -> None:
    log = AuditLog(settings, redis_client=client)
    records = [log.append("k", f"s{i}", {"i": i}) for i in range(17)]
    anchored = read_anchor(client, settings, file_log_id(log.path))
    assert anchored == [(16, records[15]["hash"]), (17, records[16]["hash"])]
    result = verify_file(log.path, anchor=anchored[-1])
    assert result.ok and result.records == 17
    assert check_head(result, anchored[0], "the file").ok


def test_the_configured_redis_anchors_unless_the_chain_is_bare(client: redis.Redis,
                                                               settings: Settings) -> None:
    AuditLog(settings, anchored=False).append("k", "s")
    assert read_anchor(client, settings, file_log_id(settings.home / "audit.jsonl")) == []
    other = settings.home / "other.jsonl"
    first = AuditLog(settings, path=other).append("k", "s")  # through HEAL's configured Redis
    assert read_anchor(client, settings, file_log_id(other)) == [(1, first["hash"])]
    given = settings.home / "given.jsonl"
    record = AuditLog(settings, path=given, redis_client=client, anchored=False).append("k", "s")
    assert read_anchor(client, settings, file_log_id(given)) == [(1, record["hash"])]


def test_a_dead_redis_only_costs_the_anchor(dead_redis: redis.Redis, settings: Settings,
                                            caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(settings, redis_client=dead_redis)
    with caplog.at_level(logging.WARNING, logger="heal.audit"):
        first = log.append("k", "s", once="decision-1")
        second = log.append("k", "s", once="decision-1")  # no Redis to remember it: appended
    assert (first["seq"], second["seq"]) == (1, 2)
    assert "audit head not anchored in Redis" in caplog.text
    assert "no Redis to remember it by" in caplog.text
    assert verify_file(log.path).records == 2


def test_the_table_chain_witnesses_the_file_and_is_anchored(client: redis.Redis,
                                                            settings: Settings,
                                                            db: PgShim) -> None:
    log = AuditLog(settings, db=db, redis_client=client)
    records = [log.append("k", f"s{i}", {"i": i}) for i in range(3)]
    log_id = file_log_id(log.path)
    table = verify_database(db)
    assert table.ok and table.records == 3
    rows = db.fetch("SELECT seq, kind, subject, prev_hash, hash, body FROM audit_log ORDER BY seq")
    bodies = [json.loads(row["body"]) for row in rows]
    assert [b["file"] for b in bodies] == [
        {"log": log_id, "seq": r["seq"], "hash": r["hash"]} for r in records]
    assert [(row["seq"], row["kind"], row["subject"]) for row in rows] == [
        (1, "k", "s0"), (2, "k", "s1"), (3, "k", "s2")]
    assert [row["prev_hash"] for row in rows] == [b["prev"] for b in bodies]
    assert [row["hash"] for row in rows] == [b["hash"] for b in bodies]
    assert all("alg" not in b for b in bodies)  # no shared key: the table is not keyed
    anchor = db.fetch("SELECT log, seq, hash FROM audit_anchor")
    assert [tuple(a) for a in anchor] == [(log_id, 3, records[2]["hash"])]
    assert read_anchor(client, settings, TABLE_LOG) == [(3, bodies[2]["hash"])]
    assert cross_check(verify_file(log.path), table, log_id).records == 3


def test_a_shared_key_seals_the_table(client: redis.Redis, settings: Settings, db: PgShim,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_AUDIT_KEY", "shared-secret-of-every-host-0123456789")
    AuditLog(settings, db=db, redis_client=client).append("k", "s")
    body = json.loads(db.fetch("SELECT body FROM audit_log")[0]["body"])
    assert body["alg"] == ALG
    assert verify_database(db).ok
    monkeypatch.setenv("HEAL_AUDIT_KEY", "another-secret-of-32-characters-or-more")
    assert not verify_database(db).ok
    monkeypatch.delenv("HEAL_AUDIT_KEY")
    assert verify_database(db).reason.startswith("keyed record but no audit key")
    assert verify_database(db, b"shared-secret-of-every-host-0123456789").ok


def test_once_writes_one_file_record_and_completes_the_table_after_an_outage(
        client: redis.Redis, settings: Settings, db: PgShim) -> None:
    # down for the table's check before the file record (left to the append) and the insert
    log = AuditLog(settings, db=Outage(db, down=2), redis_client=client)
    with pytest.raises(DatabaseUnavailable):
        log.append("lifecycle.outcome", "fp", {"ok": True}, once="outcome:e1")
    assert db.fetch("SELECT seq FROM audit_log") == []
    # the file record is remembered (for a week) as still owing its table record
    mark_key = settings.key("audit", "once", _once_name("outcome:e1"))
    assert json.loads(client.get(mark_key))["table"] is False
    assert 6 * 86400 < client.ttl(mark_key) <= 7 * 86400
    again = log.append("lifecycle.outcome", "fp", {"ok": True}, once="outcome:e1")
    assert again["seq"] == 1
    assert verify_file(log.path).records == 1
    rows = db.fetch("SELECT body FROM audit_log")
    assert len(rows) == 1
    body = json.loads(rows[0]["body"])
    assert body["file"] == {"log": file_log_id(log.path), "seq": 1, "hash": again["hash"]}
    assert (body["kind"], body["subject"], body["data"]) == ("lifecycle.outcome", "fp",
                                                             {"ok": True})
    # a third try finds both records written and writes neither again
    assert log.append("lifecycle.outcome", "fp", {"ok": True}, once="outcome:e1") == again
    assert len(db.fetch("SELECT body FROM audit_log")) == 1
    assert verify_file(log.path).records == 1
    # another decision is appended as usual
    assert log.append("lifecycle.outcome", "fp", {}, once="outcome:e2")["seq"] == 2
    assert len(db.fetch("SELECT body FROM audit_log")) == 2
    assert 6 * 86400 < client.ttl(settings.key("audit", "once", _once_name("outcome:e2"))) \
        <= 7 * 86400


def _once_name(once: str) -> str:
    import hashlib

    return hashlib.sha256(once.encode()).hexdigest()[:32]


def test_once_without_a_database_is_written_once(client: redis.Redis,
                                                 settings: Settings) -> None:
    log = AuditLog(settings, redis_client=client)
    first = log.append("k", "s", once="same")
    assert log.append("k", "s", once="same") == {"seq": first["seq"], "hash": first["hash"]}
    assert verify_file(log.path).records == 1
    # the file-only record is remembered as complete: a later AuditLog with a database does
    # not add a table record for it
    mark = json.loads(client.get(settings.key("audit", "once", _once_name("same"))))
    assert mark == {"record": {"seq": 1, "hash": first["hash"]}, "table": True}


def test_witness_appends_the_table_record_of_an_earlier_file_record(
        client: redis.Redis, settings: Settings, db: PgShim) -> None:
    file_only = AuditLog(settings, redis_client=client)
    record = file_only.append("k", "s", {"a": 1})
    file_only.witness("k", "s", {"a": 1}, record)  # no database: nothing to do
    AuditLog(settings, db=db, redis_client=client).witness("k", "s", {"a": 1},
                                                           {"seq": "1", "hash": record["hash"]})
    body = json.loads(db.fetch("SELECT body FROM audit_log")[0]["body"])
    assert body["file"] == {"log": file_log_id(file_only.path), "seq": 1,
                            "hash": record["hash"]}
    assert body["data"] == {"a": 1}
    assert read_anchor(client, settings, TABLE_LOG) == [(1, body["hash"])]
    assert verify_file(file_only.path).records == 1


def test_one_anchor_client_per_process_redis_and_home(settings: Settings,
                                                      tmp_path: Path) -> None:
    from pipeline.guardrails.audit import anchor_client

    first = anchor_client(settings)
    assert anchor_client(settings) is first and first.ping()
    elsewhere = Settings(settings.redis_url, None, tmp_path / "other-home", settings.prefix)
    assert anchor_client(elsewhere) is not first


def test_the_log_folder_is_made_private(settings: Settings, tmp_path: Path) -> None:
    import stat

    path = tmp_path / "deep" / "er" / "audit.jsonl"
    AuditLog(settings, path=path, anchored=False).append("k", "s")
    assert verify_file(path, audit_key(settings)).records == 1
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
