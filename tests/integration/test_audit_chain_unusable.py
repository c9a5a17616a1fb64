"""An audit chain heal cannot extend until the operator acts (QA s13 D1, D2): the
``audit_log`` table's last row edited by hand, or a file log sealed with a key that is not
here. Nothing is appended onto it; a command says what to do (exit 2); a stage neither dies
on an internal KeyError nor dead-letters the events it handles."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import AuditChainUnusable
from pipeline.runtime.drain import drain_inline
from pipeline.validate.audit import audit_witnessed_later

KEY = "k" * 40

#: hand edits of the table's last row: a body that is not JSON, one without seq, an array
EDITS = {
    "not-json": "'not json at all'",
    "no-seq": "(body::jsonb - 'seq')::text",
    "array": "'[1, 2]'",
}


@pytest.fixture
def db(own_database: str) -> Iterator[Any]:
    database = open_database(Settings.from_env())
    try:
        yield database
    finally:
        database.close()


def _edit_last_row(db: Any, edit: str) -> int:
    seq = int(db.fetchval("SELECT max(seq) FROM audit_log"))
    db.execute(f"UPDATE audit_log SET body = {EDITS[edit]} WHERE seq = $1", seq)
    return seq


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_command_refuses_an_audit_log_table_whose_last_row_was_edited(
        heal_env: dict[str, str], db: Any, edit: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an audit_log table whose last row was edited by hand
    assert main(["ignore", f"{V}:0123456789abcdef", "--reason", "first"]) == 0
    seq = _edit_last_row(db, edit)
    capsys.readouterr()
    # When a command appends to it
    code = main(["ignore", f"{V}:fedcba9876543210"])
    err = capsys.readouterr().err
    # Then it refuses with what to do (exit 2), never an internal KeyError, and changes nothing
    assert code == 2, err
    assert f"the audit_log table's last row (seq {seq}) is not an audit record" in err
    assert "heal audit verify" in err and "KeyError" not in err
    assert db.fetchval("SELECT count(*) FROM audit_log") == seq
    assert db.fetchval("SELECT count(*) FROM fingerprint_controls WHERE fingerprint = $1",
                       f"{V}:fedcba9876543210") == 0


def test_the_validate_stage_records_its_verdict_when_the_table_refuses(
        heal_env: dict[str, str], db: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Given an audit_log table whose last row has no seq
    assert main(["ignore", f"{V}:0123456789abcdef"]) == 0
    seq = _edit_last_row(db, "no-seq")
    settings = Settings.from_env()

    class Store:
        def __init__(self, db: Any) -> None:
            self.db = db

    # When the validate stage audits a verdict
    with caplog.at_level(logging.ERROR, logger="pipeline.validate.audit"):
        left = audit_witnessed_later(settings, Store(db), "verdict", "e-d1", {"d": "apply"})
    # Then the verdict goes on (nothing left to retry, nothing raised), the file holds its
    # record, and the log names the row and heal audit verify
    assert left is None
    lines = (settings.home / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["subject"] == "e-d1"
    assert db.fetchval("SELECT count(*) FROM audit_log") == seq
    [message] = [r.getMessage() for r in caplog.records if r.name == "pipeline.validate.audit"]
    assert f"last row (seq {seq})" in message and "heal audit verify" in message


def _publish_outcome(settings: Settings, client: redis.Redis, error_id: str) -> None:
    """A failed fix's outcome, as the apply stage publishes it (sealed with the operator's
    key), for the lifecycle stage, which audits it with the database."""
    from pipeline.events import ErrorEvent, OutcomeEvent
    from pipeline.trust.seal import seal

    event = OutcomeEvent(id=f"{error_id}:apply", error_id=error_id,
                         error=ErrorEvent(id=error_id, text="text of the error\n"),
                         fine=f"fp-v4:{error_id}", fix_id="fix-d1", status="failed",
                         detail="the fix did not hold")
    client.xadd(settings.stream("outcomes"), {"event": seal(settings, "outcomes", event.encode())})


def test_a_stage_stops_on_an_audit_chain_it_cannot_extend_and_loses_no_event(
        heal_env: dict[str, str], own_database: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an audit log sealed with HEAL_AUDIT_KEY, a stage run without it, and an outcome
    home = _key_missing_setup(heal_env, monkeypatch, capsys)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    _publish_outcome(settings, client, "e-d2-stage")
    # When the lifecycle stage handles it, its audit record is refused: the stage stops
    # saying what to set (as for Redis's ACL refusal), never retrying into a dead letter
    with pytest.raises(AuditChainUnusable, match="sealed with a key that is not here"):
        drain_inline(settings, client, stages=["lifecycle"])
    assert client.xlen(settings.stream("dead")) == 0
    assert client.xpending(settings.stream("outcomes"), "lifecycle")["pending"] == 1
    assert not (home / "audit.key").exists()
    # and once the key is back, the same event is handled and audited, once
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    drain_inline(settings, client, stages=["lifecycle"])
    assert client.xpending(settings.stream("outcomes"), "lifecycle")["pending"] == 0
    assert client.xlen(settings.stream("dead")) == 0
    records = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("lifecycle.outcome") == 1, records
    assert main(["audit", "verify", "--file-only"]) == 0, capsys.readouterr()


def _key_missing_setup(heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    assert main(["breaker", "open", "workflow:qa-d2"]) == 0
    monkeypatch.delenv("HEAL_AUDIT_KEY")
    capsys.readouterr()
    return Path(heal_env["HEAL_HOME"])


def test_a_command_without_the_key_that_sealed_the_log_refuses_to_append(
        heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an audit log sealed with HEAL_AUDIT_KEY, and a shell without it
    home = _key_missing_setup(heal_env, monkeypatch, capsys)
    before = (home / "audit.jsonl").read_text()
    # When a command appends to it
    code = main(["breaker", "reset", "workflow:qa-d2"])
    err = capsys.readouterr().err
    # Then it refuses (exit 2), says the key is not here and what to do, makes no audit.key,
    # appends nothing, and the log still verifies with the key that sealed it
    assert code == 2, err
    assert "was sealed with a key that is not here: HEAL_AUDIT_KEY is unset" in err
    assert "Set HEAL_AUDIT_KEY to the key the log was sealed with" in err
    assert not (home / "audit.key").exists()
    assert (home / "audit.jsonl").read_text() == before
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    assert main(["audit", "verify", "--file-only"]) == 0, capsys.readouterr()


def test_a_log_of_records_made_before_keys_still_gets_its_first_key(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given a log whose records carry no alg (written before heal had keys)
    from pipeline.guardrails.audit import GENESIS, canonical, record_hash

    home = Path(heal_env["HEAL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"seq": 1, "ts": "2026-01-01T00:00:00+00:00", "kind": "k",
                              "subject": "s", "data": {}, "prev": GENESIS}
    record["hash"] = record_hash(record)
    (home / "audit.jsonl").write_text(canonical(record) + "\n")
    # When a command appends to it, the key is made and the record appended
    assert main(["breaker", "open", "workflow:qa-d2-old"]) == 0, capsys.readouterr()
    assert (home / "audit.key").exists()
    assert len((home / "audit.jsonl").read_text().splitlines()) == 2


def test_verify_says_the_key_changed_where_records_were_appended_with_another(
        heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a log whose first record was sealed with one key and the next two with another
    # (as a heal before this fix left it: a shell without the workers' HEAL_AUDIT_KEY)
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    assert main(["breaker", "open", "workflow:qa-d2"]) == 0
    monkeypatch.setenv("HEAL_AUDIT_KEY", "o" * 40)
    assert main(["breaker", "reset", "workflow:qa-d2"]) == 0
    assert main(["breaker", "open", "workflow:qa-d2"]) == 0
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    capsys.readouterr()
    # When it is verified with the first key
    code = main(["audit", "verify", "--file-only"])
    out = capsys.readouterr().out
    # Then it fails at record 2 and says the key likely changed there, and what to do
    assert code == 1, out
    assert "TAMPERED at record 2" in out
    assert "records 2..3 each fail their seal" in out
    assert "key likely changed at record 2" in out and "same HEAL_AUDIT_KEY" in out


def test_verify_gives_no_key_hint_for_a_record_edited_inside_the_chain(
        heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a log of three records whose second was edited by hand
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    for verb in ("open", "reset", "open"):
        assert main(["breaker", verb, "workflow:qa-d2"]) == 0
    path = Path(heal_env["HEAL_HOME"]) / "audit.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"workflow:qa-d2"', '"workflow:qa-dX"')
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    # When it is verified, it fails at record 2 as an edit, with no key hint
    assert main(["audit", "verify", "--file-only"]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED at record 2" in out and "another key" not in out


def _publish_verdict(settings: Settings, client: redis.Redis, error_id: str) -> None:
    """A verdict that escalates (the apply stage acts on nothing; it records what it did),
    sealed as the validate stage publishes it."""
    from pipeline.events import ErrorEvent, VerdictEvent
    from pipeline.trust.seal import seal

    event = VerdictEvent(id=f"{error_id}:validate", error_id=error_id,
                         error=ErrorEvent(id=error_id, text="text of the error\n"),
                         fine=f"fp-v4:{error_id}", decision="escalate",
                         reason="no fix is safe here: a person decides")
    client.xadd(settings.stream("verdicts"),
                {"event": seal(settings, "verdicts", event.encode())})


def _apply_records(home: Path, error_id: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "apply" and r["subject"] == error_id]


def test_the_apply_stage_stops_before_acting_on_an_audit_chain_it_cannot_extend(
        heal_env: dict[str, str], own_database: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """QA s13b D3: the apply stage's record of what it did (escalated, suggested, rolled
    back) was logged and dropped while the chain was refused, and the verdict acked."""
    # Given an audit log sealed with HEAL_AUDIT_KEY, the apply stage run without it, and a
    # verdict for it
    home = _key_missing_setup(heal_env, monkeypatch, capsys)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    _publish_verdict(settings, client, "e-d3-stage")
    # When the apply stage handles it: it stops saying what to set, before doing anything
    with pytest.raises(AuditChainUnusable, match="sealed with a key that is not here"):
        drain_inline(settings, client, stages=["apply"])
    # Then the verdict stays pending: no outcome, no dead letter, no done marker
    assert client.xpending(settings.stream("verdicts"), "apply")["pending"] == 1
    assert client.xlen(settings.stream("outcomes")) == 0
    assert client.xlen(settings.stream("dead")) == 0
    assert not client.exists(settings.key("apply", "done", "e-d3-stage"))
    # and once the key is back, the same verdict is handled and its outcome audited, once
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    drain_inline(settings, client, stages=["apply"])
    assert client.xpending(settings.stream("verdicts"), "apply")["pending"] == 0
    assert client.xlen(settings.stream("outcomes")) == 1
    [record] = _apply_records(home, "e-d3-stage")
    assert record["data"]["status"] == "escalated"
    assert main(["audit", "verify", "--file-only"]) == 0, capsys.readouterr()


def test_an_apply_record_refused_after_the_stage_acted_is_written_by_the_redelivery(
        heal_env: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA s13b D3: the chain refused after the apply stage's check (a row edited while it
    handled the verdict): its record is not dropped; the stage stops after acting, and the
    redelivery records it once, without acting again."""
    from pipeline.guardrails.audit import AuditLog

    # Given an audit_log table, and a row edited after the stage checked the chain
    assert main(["ignore", f"{V}:0123456789abcdef"]) == 0
    seq = int(db.fetchval("SELECT max(seq) FROM audit_log"))
    body = db.fetchval("SELECT body FROM audit_log WHERE seq = $1", seq)
    _edit_last_row(db, "no-seq")
    monkeypatch.setattr(AuditLog, "check_extendable", lambda self: None)
    settings = Settings.from_env()
    home = settings.home
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    _publish_verdict(settings, client, "e-d3-race")
    # When the apply stage handles the verdict: the record of what it did is refused
    with pytest.raises(AuditChainUnusable, match=f"last row \\(seq {seq}\\)"):
        drain_inline(settings, client, stages=["apply"])
    # Then the stage stops with the verdict pending, its decision kept (done marker)
    assert client.xpending(settings.stream("verdicts"), "apply")["pending"] == 1
    assert client.xlen(settings.stream("outcomes")) == 0
    assert client.exists(settings.key("apply", "done", "e-d3-race"))
    # and once the row is restored, the redelivery publishes the decided outcome (not a
    # second decision) and writes the table's record of it, with one file record
    db.execute("UPDATE audit_log SET body = $1 WHERE seq = $2", body, seq)
    monkeypatch.undo()
    drain_inline(settings, client, stages=["apply"])
    assert client.xpending(settings.stream("verdicts"), "apply")["pending"] == 0
    assert client.xlen(settings.stream("outcomes")) == 1
    [record] = _apply_records(home, "e-d3-race")
    assert record["data"]["status"] == "escalated"
    assert db.fetchval("SELECT count(*) FROM audit_log WHERE kind = 'apply' AND "
                       "subject = 'e-d3-race'") == 1
    assert main(["audit", "verify"]) == 0
