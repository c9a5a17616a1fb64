"""Giving up on an event is an audited decision: each dead letter of a real stage worker
(the fingerprint stage drained by the runtime against the session's real Redis) is a
``runtime.dead_letter`` record of the audit log, and the chain still verifies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline


def _publish(settings: Settings, client: redis.Redis, reason_size: int = 0) -> str:
    client.xadd(settings.stream("errors"), {"event": ErrorEvent(id="good", text="x").encode()})
    bad = {"v": 1, "id": "bad-event-1", "pad": "p" * reason_size}  # no text: malformed
    return client.xadd(settings.stream("errors"), {"event": orjson.dumps(bad)}).decode()


def _records(home: Path) -> list[dict[str, object]]:
    path = home / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_malformed_event_dead_lettered_by_a_stage_worker_is_audited(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given a good and a malformed error event on the errors stream
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    entry_id = _publish(settings, client)
    # When the fingerprint stage's worker drains them
    assert drain_inline(settings, client, stages=["fingerprint"]) == 2
    # Then the malformed one is dead-lettered, and the audit log names that decision
    assert client.xlen(settings.stream("dead")) == 1
    records = [r for r in _records(settings.home) if r["kind"] == "runtime.dead_letter"]
    assert len(records) == 1, _records(settings.home)
    record = records[0]
    assert record["subject"] == f"fingerprint/{entry_id}"
    data = record["data"]
    assert isinstance(data, dict)
    assert data["stage"] == "fingerprint"
    assert data["entry_id"] == entry_id
    assert data["error_id"] == "bad-event-1"
    assert data["deliveries"] == 1
    assert data["stream"] == settings.stream("errors")
    assert 0 < len(str(data["reason"])) <= 500
    # and the chain (file, anchors, table) still verifies with the record in it
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0, capsys.readouterr().out
    assert "audit.jsonl: ok, 1 record(s)" in capsys.readouterr().out


def test_a_dead_letter_lands_when_its_audit_record_cannot_be_written(
        heal_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    # Given an audit log that cannot be appended to (its path is a folder)
    settings = Settings.from_env()
    (settings.home / "audit.jsonl").mkdir(parents=True)
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    entry_id = _publish(settings, client)
    # When the fingerprint stage's worker dead-letters the malformed event
    with caplog.at_level(logging.ERROR, logger="heal.runtime"):
        assert drain_inline(settings, client, stages=["fingerprint"]) == 2
    # Then the dead letter landed all the same, and the worker's log says it is unaudited
    dead = client.xrange(settings.stream("dead"))
    assert [fields[b"entry_id"].decode() for _, fields in dead] == [entry_id]
    assert client.xpending(settings.stream("errors"), "fingerprint")["pending"] == 0
    assert any("not audited" in r.getMessage() and entry_id in r.getMessage()
               and "bad-event-1" in r.getMessage() for r in caplog.records)
