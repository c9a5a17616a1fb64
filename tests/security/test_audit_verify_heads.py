"""``heal audit verify`` against an attacker who can read ``audit.key`` (same user, 0600) and
so can seal records of their own (QA report qa_expl, items D2, D3, D6, D7, D8; qa_s12 N5).

The chain alone proves nothing to whoever holds the key: the anchored heads (Redis,
PostgreSQL) and the table's witnesses do. Each test runs this checkout's heal as a
subprocess on a log heal itself wrote (the real AuditLog, the session's Redis and a
PostgreSQL database of the test's own).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.guardrails.audit import AuditLog, canonical, record_hash
from storage.db import Database
from storage.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HEAL_AUDIT_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*HEAL, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def audited(heal_env: dict[str, str], own_database: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AuditLog, Path]]:
    """An AuditLog writing to HEAL_HOME with a database (the file's head anchored in Redis
    and PostgreSQL, each record witnessed by the table), and the log's path."""
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    db = Database(own_database)
    migrate(db)
    log = AuditLog(Settings.from_env(), db=db)
    try:
        yield log, log.path
    finally:
        db.close()


def _ignore(log: AuditLog, n: int) -> None:
    for i in range(n):  # what `heal ignore` appends: file and table
        log.append("fingerprint.ignore", f"fp-heads-{i}", {"reason": "noise"})


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical(r) + "\n" for r in records))


def _key(path: Path) -> bytes:
    return (path.parent / "audit.key").read_bytes().strip()


def _forge(path: Path, kind: str, subject: str, data: dict[str, Any]) -> None:
    """Seal one more record with the key on disk and append it, as the QA's attacker did."""
    last = _records(path)[-1]
    record = {"seq": last["seq"] + 1, "ts": dt.datetime.now(dt.UTC).isoformat(),
              "kind": kind, "subject": subject, "data": data, "prev": last["hash"],
              "alg": "hmac-sha256"}
    record["hash"] = record_hash(record, _key(path))
    with path.open("a") as fh:
        fh.write(canonical(record) + "\n")


def test_a_record_sealed_with_the_key_past_the_anchored_head_is_reported(
        audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 3)
    assert _heal("audit", "verify").returncode == 0
    # Given a lifecycle transition (always written with the database) sealed with the key
    # and appended after the anchored head
    _forge(path, "lifecycle.transition", "fp-v4:dba0/format.ruff_format/fix",
           {"from": "DRAFT", "to": "AUTOMATED", "reason": "graduated"})
    done = _heal("audit", "verify")
    # Then verify names it (it used to say "chain intact", exit 0)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT ANCHORED at record 4 (after 3 good)" in done.stdout, done.stdout
    assert "past the anchored head 3" in done.stdout
    assert "no audit_log table record witnesses it" in done.stdout
    assert "appended without heal?" in done.stdout
    assert "chain intact" not in done.stdout.split("\n")[0]


def test_a_record_heal_did_not_anchor_is_told_apart_and_anchored_by_the_next_append(
        audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 2)
    # Given a breaker record appended but never anchored (heal stopped in between)
    AuditLog(log.settings, anchored=False).append("breaker.transition", "step:x",
                                                  {"from": "CLOSED", "to": "OPEN"})
    done = _heal("audit", "verify")
    # Then it is reported, in words that allow for the crash, exit 1: nothing witnesses it
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT ANCHORED at record 3" in done.stdout and "TAMPERED" not in done.stdout
    assert "heal stopped (or lost Redis) between appending and anchoring it" in done.stdout
    # ... and heal's next append anchors it
    _ignore(log, 1)
    done = _heal("audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


def _reseal_from(path: Path, position: int) -> None:
    """Edit record ``position`` and re-seal it and every later record with the key."""
    records, key = _records(path), _key(path)
    records[position - 1]["data"]["fix_id"] = "evil/fix"
    for i in range(position - 1, len(records)):
        records[i]["prev"] = records[i - 1]["hash"] if i else "0" * 64
        records[i].pop("hash")
        records[i]["hash"] = record_hash(records[i], key)
    _write(path, records)


def test_a_chain_resealed_at_record_10_is_narrowed_to_the_first_mark_that_differs(
        audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 40)  # Redis marks at 16 and 32, heads at 40 in Redis and PostgreSQL
    _reseal_from(path, 10)
    done = _heal("audit", "verify")
    assert done.returncode == 1, done.stdout + done.stderr
    # (it named record 40 "after 39 good": PostgreSQL's head was checked before the marks)
    assert "TAMPERED at record 16 (after 0 good)" in done.stdout, done.stdout
    assert "re-sealed at one of records 1..16" in done.stdout


def test_file_only_says_the_heads_were_not_checked(audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 4)
    _write(path, _records(path)[:2])  # truncated
    done = _heal("audit", "verify", "--file-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok, 2 record(s), chain intact" in done.stdout
    assert "head not checked: --file-only" in done.stdout
    as_json = json.loads(_heal("audit", "verify", "--file-only", "--json").stdout)
    assert "head not checked: --file-only" in as_json["skipped"]
    # without it, the anchors catch the truncation
    assert _heal("audit", "verify").returncode == 1


def test_a_swapped_pair_of_records_is_called_reordered(audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 4)
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    done = _heal("audit", "verify", "--file-only")
    assert done.returncode == 1
    assert "TAMPERED at record 2" in done.stdout
    assert "(records reordered or removed?)" in done.stdout, done.stdout


def test_an_audit_key_others_could_write_is_refused_not_quietly_tightened(
        audited: tuple[AuditLog, Path]) -> None:
    log, path = audited
    _ignore(log, 2)
    key = path.parent / "audit.key"
    # Given a key other users may write (start-up made it 0600 and verify trusted it)
    key.chmod(0o606)
    for _ in range(2):  # refused every time, until the operator has looked
        done = _heal("audit", "verify", "--file-only")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "is writable by other users (mode 0o602), so it may have been replaced" \
            in done.stderr
        assert "chain intact" not in done.stdout and "Traceback" not in done.stderr
    assert key.stat().st_mode & 0o777 == 0o602  # others may no longer read it
    key.chmod(0o600)
    assert _heal("audit", "verify", "--file-only").returncode == 0
    # Given a HEAL_HOME others could write (the key in it could have been replaced)
    path.parent.chmod(0o777)
    done = _heal("audit", "verify", "--file-only")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "was writable by other users (mode 0o777)" in done.stderr
    assert "the key may have been replaced" in done.stderr
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # (once made private, it is the operator's own again: the refusal said so)
    assert _heal("audit", "verify", "--file-only").returncode == 0


def test_an_operator_configuration_others_could_write_stays_refused(
        audited: tuple[AuditLog, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _log, path = audited
    monkeypatch.delenv("HEAL_CONFIG", raising=False)  # $HEAL_HOME/heal.toml, then
    path.parent.mkdir(parents=True, exist_ok=True)
    operator = path.parent / "heal.toml"
    operator.write_text('[trust]\nmax_mode = "observe"\n')
    operator.chmod(0o666)
    # every heal command starts by making HEAL_HOME private: it used to make this 0600 and
    # trust it; now only others' read bit goes, and heal keeps refusing it (capped at observe)
    for _ in range(2):
        done = _heal("policy", "--repo", str(tmp_path))
        assert "operator configuration refused" in done.stderr, done.stderr
        assert "writable by other users (mode 0o622), so it may have been replaced" \
            in done.stderr
        assert operator.stat().st_mode & 0o777 == 0o622
