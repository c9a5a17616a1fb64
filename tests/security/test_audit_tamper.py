"""Attack 8: the audit log could be truncated, deleted or re-chained undetected, and a torn
line or a full disk turned auditing off while fixes kept being applied.

The chain is keyed (HMAC), its head anchored in PostgreSQL and Redis, and the table's records
witness the file's: ``heal audit verify`` (exit 1) catches each tampering on the real
engines; an apply that cannot be audited applies nothing and says why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.guardrails.audit import canonical
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from storage.migrate import migrate
from tests._audit_ids import file_log_id
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo
from tests.security._support import reseal


def _audited(heal_env: dict[str, str], db: Database, n: int = 3) -> Path:
    migrate(db)
    for i in range(n):  # `heal ignore` audits to the file and the table
        assert main(["ignore", f"{V}:{i:016x}", "--reason", "noise"]) == 0
    return Path(heal_env["HEAL_HOME"]) / "audit.jsonl"


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_an_intact_log_verifies(heal_env: dict[str, str], db: Database,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _audited(heal_env, db)
    code, out = _verify(capsys)
    assert code == 0, out
    assert "file vs table: ok" in out


def test_a_deleted_log_is_detected(heal_env: dict[str, str], db: Database,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _audited(heal_env, db).unlink()
    code, out = _verify(capsys)
    assert code == 1 and "missing" in out and "anchored" in out


def test_an_emptied_log_is_called_empty_not_missing(
        heal_env: dict[str, str], db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    # (QA report qa_life, item 11: a 0-byte file was reported "missing")
    _audited(heal_env, db).write_text("")
    code, out = _verify(capsys)
    assert code == 1 and "is empty, but its head was anchored" in out, out
    assert "missing" not in out


def test_a_truncated_log_is_detected(heal_env: dict[str, str], db: Database,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _audited(heal_env, db)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    code, out = _verify(capsys)
    assert code == 1 and "truncated" in out


def test_an_edited_log_resealed_without_the_key_is_detected(
    heal_env: dict[str, str], db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _audited(heal_env, db)
    # Given an attacker who rewrites the chain with a key of their own (the real one is
    # 0600; even replacing audit.key does not match the anchors and the table's witnesses)
    reseal(path)
    code, out = _verify(capsys)
    assert code == 1 and "re-sealed" in out


def test_the_key_file_and_the_log_are_private(heal_env: dict[str, str], db: Database) -> None:
    path = _audited(heal_env, db, 1)
    assert path.stat().st_mode & 0o077 == 0
    assert (path.parent / "audit.key").stat().st_mode & 0o077 == 0


def test_an_apply_that_cannot_be_audited_applies_nothing_and_says_why(
    tmp_path: Path, redis_url: str, prefix: str, db: Database,
) -> None:
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    store = AttemptStore(db)
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = Validator(settings, client, store).validate(
        candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    assert verdict.decision == "apply", verdict.reason
    # Given the audit log cannot take a record (here: something else sits at its path)
    audit_file = settings.home / "audit.jsonl"
    if audit_file.exists():
        audit_file.rename(settings.home / "audit.moved")
    audit_file.mkdir()
    head = git(root, "rev-parse", "HEAD")
    # When the apply stage handles the approved verdict
    outcome = Applier(settings, client, store).handle(verdict)
    # Then nothing is applied, and the outcome says why
    assert outcome.status == "escalated"
    assert "nothing applied" in outcome.detail and "audit log" in outcome.detail
    assert git(root, "rev-parse", "HEAD") == head


def test_a_resealed_log_extended_by_later_appends_is_caught_by_the_redis_marks(
    tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.guardrails.audit import (
        MARK_EVERY,
        AuditLog,
        check_head,
        read_anchor,
        verify_file,
    )

    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path / "home",
                        prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    log = AuditLog(settings, redis_client=client)
    for i in range(MARK_EVERY + 2):
        log.append("decision", f"s{i}", {"i": i})
    # Given an attacker who re-seals the whole file with a key of their own...
    key = secrets.token_hex(32).encode()
    (settings.home / "audit.key").write_bytes(key)
    prev, lines = "0" * 64, []
    for line in log.path.read_text().splitlines():
        record = json.loads(line)
        record["data"] = {"i": -1}
        record["prev"] = prev
        body = {k: v for k, v in record.items() if k != "hash"}
        record["hash"] = hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()
        prev = record["hash"]
        lines.append(canonical(record))
    log.path.write_text("\n".join(lines) + "\n")
    # ...and heal, none the wiser, extends the forged chain (the head anchor moves with it)
    log.append("decision", "after", {})
    anchors = read_anchor(client, settings, file_log_id(log.path))
    assert [seq for seq, _ in anchors] == [MARK_EVERY, MARK_EVERY + 3]  # a mark and the head
    result = verify_file(log.path)
    assert result.ok  # the forged chain is consistent in itself
    # Then the mark still tells: record 16 is not the one anchored when it was written
    for head in anchors:
        result = check_head(result, head, "the file")
    assert not result.ok
    assert f"record {MARK_EVERY}" in result.reason and "re-sealed" in result.reason
