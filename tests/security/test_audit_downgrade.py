"""The audit chain against records heal never writes (QA s13b D1, D2, D4, D5), each through
this checkout's ``heal`` as a subprocess on the session's real Redis and PostgreSQL:

* D2: a record without ``alg`` (plain SHA-256, which anyone can compute) after keyed ones, in
  the file or the table, is a forgery without the key: verify calls it a downgrade and heal
  appends nothing onto it; a log of records made before keys still verifies;
* D1: the table's last row with a body whose seq (or hash) is not the row's own is refused
  (exit 2, the row named), never a raw duplicate-key or out-of-range error;
* D4: a command refused because of the table writes no file record either;
* D5: verify's hint at record 1 says "no record matches" only when none does, and names
  ``audit.key`` only when it exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import DOWNGRADE, canonical

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
KEY = "a-shared-audit-key-0123456789abcdef-k1"
OTHER = "another-audit-key-0123456789abcdef-k2"


def _heal(env: dict[str, str], *args: str, key: str | None = KEY
          ) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    run_env.update(env, PYTHONPATH=str(ROOT))
    if key is not None:
        run_env["HEAL_AUDIT_KEY"] = key
    return subprocess.run([*HEAL, *args], env=run_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)


@pytest.fixture
def db(own_database: str) -> Iterator[Any]:
    database = open_database(Settings.from_env())
    try:
        yield database
    finally:
        database.close()


def _unkeyed(prev: dict[str, Any], subject: str) -> dict[str, Any]:
    """A record as one without the key can make: no alg, a plain SHA-256 of its body."""
    record: dict[str, Any] = {"seq": prev["seq"] + 1, "ts": "2026-12-01T00:00:00+00:00",
                              "kind": "fingerprint.ignore", "subject": subject,
                              "data": {"ignored": True, "reason": "forged"},
                              "prev": prev["hash"]}
    record["hash"] = hashlib.sha256(canonical(record).encode()).hexdigest()
    return record


def _ignore(env: dict[str, str], n: int, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    return _heal(env, "ignore", f"{V}:{n:016x}", "--reason", "x", key=key)


def test_a_forged_unkeyed_record_after_keyed_ones_in_the_file_is_a_downgrade(
        heal_env: dict[str, str], db: Any) -> None:
    # Given a log sealed with HEAL_AUDIT_KEY, and a record forged without the key after it
    for n in (1, 2):
        assert _ignore(heal_env, n).returncode == 0
    path = Path(heal_env["HEAL_HOME"]) / "audit.jsonl"
    last = json.loads(path.read_text().splitlines()[-1])
    with path.open("a") as fh:
        fh.write(canonical(_unkeyed(last, "fp-v4:forged")) + "\n")
    forged = path.read_text()
    # When it is verified, the forged record is TAMPERED as a downgrade (exit 1)
    done = _heal(heal_env, "audit", "verify", "--file-only")
    assert done.returncode == 1, done
    assert f"TAMPERED at record {last['seq'] + 1}" in done.stdout, done.stdout
    assert "unkeyed record after keyed ones (a downgrade)" in done.stdout, done.stdout
    # And heal appends nothing onto it (before, its next append chained onto the forgery and
    # made the whole log verify): exit 2, naming the record, neither file nor table changed
    rows = db.fetchval("SELECT count(*) FROM audit_log")
    done = _ignore(heal_env, 3)
    assert done.returncode == 2, done
    assert "carries no key, yet records before it are keyed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_text() == forged
    assert db.fetchval("SELECT count(*) FROM audit_log") == rows
    assert db.fetchval("SELECT count(*) FROM fingerprint_controls WHERE fingerprint = $1",
                       f"fp-v4:{3:016x}") == 0
    # and a shell without the key does not make a new audit.key beside it either
    assert _ignore(heal_env, 4, key=None).returncode == 2
    assert not (path.parent / "audit.key").exists()


def test_a_forged_unkeyed_row_after_keyed_ones_in_the_table_is_a_downgrade(
        heal_env: dict[str, str], db: Any) -> None:
    # Given an audit_log table sealed with HEAL_AUDIT_KEY, and a row forged without the key
    for n in (1, 2, 3):
        assert _ignore(heal_env, n).returncode == 0
    last = json.loads(db.fetchval("SELECT body FROM audit_log ORDER BY seq DESC LIMIT 1"))
    record = _unkeyed(last, "fp-v4:forged")
    db.execute("INSERT INTO audit_log (seq, kind, subject, prev_hash, hash, body)"
               " VALUES ($1, $2, $3, $4, $5, $6)", record["seq"], record["kind"],
               record["subject"], record["prev"], record["hash"], canonical(record))
    # When it is verified, the table is TAMPERED at the forged row, as a downgrade (exit 1)
    done = _heal(heal_env, "audit", "verify")
    assert done.returncode == 1, done
    assert (f"postgres:audit_log: TAMPERED at record {record['seq']} (after {last['seq']} "
            f"good): {DOWNGRADE}") in done.stdout, done.stdout
    # And heal appends nothing onto it (before, it chained on and verify said ok)
    file_before = (Path(heal_env["HEAL_HOME"]) / "audit.jsonl").read_text()
    done = _ignore(heal_env, 4)
    assert done.returncode == 2, done
    assert "the audit_log table (row seq" in done.stderr, done.stderr
    assert "carries no key, yet records before it are keyed" in done.stderr
    assert db.fetchval("SELECT max(seq) FROM audit_log") == record["seq"]
    assert (Path(heal_env["HEAL_HOME"]) / "audit.jsonl").read_text() == file_before


def test_a_forged_unkeyed_row_after_keyed_ones_is_refused_without_the_key_too(
        heal_env: dict[str, str], db: Any) -> None:
    """QA s13c D1: the scan for keyed rows before an unkeyed last row ran only with
    HEAL_AUDIT_KEY set; without it heal appended onto the forged row and acted."""
    # Given a table sealed with HEAL_AUDIT_KEY (the file too, its key kept as audit.key, so
    # the file is usable without HEAL_AUDIT_KEY), and a row forged without the key after it
    for n in (1, 2):
        assert _ignore(heal_env, n).returncode == 0
    home = Path(heal_env["HEAL_HOME"])
    (home / "audit.key").write_text(KEY)
    (home / "audit.key").chmod(0o600)
    last = json.loads(db.fetchval("SELECT body FROM audit_log ORDER BY seq DESC LIMIT 1"))
    record = _unkeyed(last, "fp-v4:forged")
    db.execute("INSERT INTO audit_log (seq, kind, subject, prev_hash, hash, body)"
               " VALUES ($1, $2, $3, $4, $5, $6)", record["seq"], record["kind"],
               record["subject"], record["prev"], record["hash"], canonical(record))
    file_before = (home / "audit.jsonl").read_text()
    # When a command runs without HEAL_AUDIT_KEY, it is refused as a downgrade (exit 2)
    done = _ignore(heal_env, 3, key=None)
    assert done.returncode == 2, done
    assert "the audit_log table (row seq" in done.stderr, done.stderr
    assert "carries no key, yet records before it are keyed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # And nothing is appended or decided
    assert db.fetchval("SELECT max(seq) FROM audit_log") == record["seq"]
    assert (home / "audit.jsonl").read_text() == file_before
    assert db.fetchval("SELECT count(*) FROM fingerprint_controls WHERE fingerprint = $1",
                       f"fp-v4:{3:016x}") == 0


def test_a_shell_without_the_key_the_table_was_sealed_with_appends_nothing(
        heal_env: dict[str, str], db: Any) -> None:
    # Given a table sealed with HEAL_AUDIT_KEY and a file sealed with the same value kept as
    # the home's audit.key, so only the table tells a shell without HEAL_AUDIT_KEY apart
    assert _ignore(heal_env, 1).returncode == 0
    home = Path(heal_env["HEAL_HOME"])
    key_file = home / "audit.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    before = (home / "audit.jsonl").read_text()
    # When a command runs without HEAL_AUDIT_KEY, it would append an unkeyed table record
    # after keyed ones (a downgrade verify then reports): refused, exit 2, nothing written
    done = _ignore(heal_env, 2, key=None)
    assert done.returncode == 2, done
    assert "the audit_log table is sealed with HEAL_AUDIT_KEY" in done.stderr, done.stderr
    assert "Set HEAL_AUDIT_KEY to the key the other hosts and workers use" in done.stderr
    assert (home / "audit.jsonl").read_text() == before
    assert db.fetchval("SELECT count(*) FROM audit_log") == 1


def test_a_log_and_table_of_records_made_before_keys_still_verify_after_keyed_appends(
        heal_env: dict[str, str], db: Any) -> None:
    # Given a file and a table of unkeyed records (written before keys; the table is unkeyed
    # without HEAL_AUDIT_KEY), the file's first record made by hand without alg
    home = Path(heal_env["HEAL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    first = _unkeyed({"seq": 0, "hash": "0" * 64}, "fp-v4:legacy")
    (home / "audit.jsonl").write_text(canonical(first) + "\n")
    assert _ignore(heal_env, 1, key=None).returncode == 0  # makes audit.key: file keyed
    assert _ignore(heal_env, 2, key=None).returncode == 0
    assert db.fetchval("SELECT count(*) FROM audit_log WHERE body LIKE '%\"alg\"%'") == 0
    # When HEAL_AUDIT_KEY (set to audit.key's content, as the README says) keys the table from
    # now on, the first keyed table append goes onto the unkeyed rows
    key = (home / "audit.key").read_text().strip()
    for n in (3, 4):
        done = _ignore(heal_env, n, key=key)
        assert done.returncode == 0, done
    # Then both chains verify: unkeyed records, then keyed ones, is an upgrade
    done = _heal(heal_env, "audit", "verify", key=key)
    assert done.returncode == 0, done
    assert "audit.jsonl: ok, 5 record(s), chain intact" in done.stdout, done.stdout
    assert "postgres:audit_log: ok, 4 record(s), chain intact" in done.stdout, done.stdout


@pytest.mark.parametrize("seq", ["1", "9223372036854775808", "1000000000000000000000000000000"])
def test_a_last_row_whose_body_seq_is_not_its_own_is_refused_not_a_raw_error(
        heal_env: dict[str, str], db: Any, seq: str) -> None:
    # Given a table whose last row's body got another seq (still JSON, an integer seq, a hash)
    for n in (1, 2, 3):
        assert _ignore(heal_env, n).returncode == 0
    db.execute(f"UPDATE audit_log SET body = jsonb_set(body::jsonb, '{{seq}}', '{seq}')::text"
               " WHERE seq = 3")
    file_before = (Path(heal_env["HEAL_HOME"]) / "audit.jsonl").read_text()
    # When a command appends, it is refused as an edited row (exit 2), the row named, never
    # PostgreSQL's duplicate key or out-of-range error (exit 1), and nothing is written
    done = _ignore(heal_env, 4)
    assert done.returncode == 2, done
    assert "the audit_log table's last row (seq 3) is not an audit record" in done.stderr
    assert "not the row's own" in done.stderr and "heal audit verify" in done.stderr
    assert "PostgreSQL rejected" not in done.stderr and "duplicate key" not in done.stderr
    assert db.fetchval("SELECT count(*) FROM audit_log") == 3
    assert (Path(heal_env["HEAL_HOME"]) / "audit.jsonl").read_text() == file_before


def test_a_last_row_whose_body_hash_is_not_its_hash_column_is_refused(
        heal_env: dict[str, str], db: Any) -> None:
    for n in (1, 2):
        assert _ignore(heal_env, n).returncode == 0
    db.execute("UPDATE audit_log SET body = jsonb_set(body::jsonb, '{hash}', '\"ab\"')::text"
               " WHERE seq = 2")
    done = _ignore(heal_env, 3)
    assert done.returncode == 2, done
    assert "last row (seq 2) is not an audit record (its body's hash is not the row's hash" \
        in done.stderr, done.stderr
    assert db.fetchval("SELECT count(*) FROM audit_log") == 2


def test_the_lifecycle_stage_stops_on_a_last_row_with_another_seq_and_loses_no_event(
        heal_env: dict[str, str], db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    from pipeline.guardrails.audit import AuditChainUnusable
    from pipeline.runtime.drain import drain_inline
    from tests.integration.test_audit_chain_unusable import _publish_outcome

    # Given a last row whose body says seq 1, and an outcome waiting for the lifecycle stage
    for n in (1, 2):
        assert _ignore(heal_env, n).returncode == 0
    db.execute("UPDATE audit_log SET body = jsonb_set(body::jsonb, '{seq}', '1')::text"
               " WHERE seq = 2")
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    _publish_outcome(settings, client, "e-u3-d1")
    # When the stage handles it, it stops (its audit refused), never dead-letters it
    with pytest.raises(AuditChainUnusable, match=r"last row \(seq 2\)"):
        drain_inline(settings, client, stages=["lifecycle"])
    assert client.xlen(settings.stream("dead")) == 0
    assert client.xpending(settings.stream("outcomes"), "lifecycle")["pending"] == 1


def test_a_command_refused_by_the_table_writes_no_file_record(
        heal_env: dict[str, str], db: Any) -> None:
    # Given a table whose last row was edited by hand
    assert _ignore(heal_env, 1).returncode == 0
    db.execute("UPDATE audit_log SET body = 'not json' WHERE seq = 1")
    path = Path(heal_env["HEAL_HOME"]) / "audit.jsonl"
    before = path.read_text()
    # When a command is refused five times ("nothing changed", exit 2)
    for n in range(2, 7):
        done = _ignore(heal_env, n)
        assert done.returncode == 2, done
    # Then the file holds no record of an ignore that never happened
    assert path.read_text() == before


def _two_keys(env: dict[str, str]) -> None:
    """Record 1 sealed with KEY, records 2..3 with OTHER (no audit.key anywhere)."""
    first = _heal(env, "breaker", "open", "workflow:u3", key=KEY)
    assert first.returncode == 0, first.stderr
    assert _heal(env, "breaker", "reset", "workflow:u3", key=OTHER).returncode == 0
    assert _heal(env, "breaker", "open", "workflow:u3", key=OTHER).returncode == 0


def test_the_first_record_hint_says_later_records_match_and_names_no_missing_key_file(
        heal_env: dict[str, str]) -> None:
    # Given a log whose first record was sealed with one key and the others with another
    _two_keys(heal_env)
    home = Path(heal_env["HEAL_HOME"])
    assert not (home / "audit.key").exists()
    # When it is verified with the later key
    done = _heal(heal_env, "audit", "verify", "--file-only", key=OTHER)
    # Then record 1 fails, and the hint says later records verify with this key (before: "no
    # record matches its seal" and "if heal wrote it with .../audit.key", which is not there)
    assert done.returncode == 1, done
    first = done.stdout.splitlines()[0]
    assert "TAMPERED at record 1" in first, first
    assert "2 later keyed record(s) verify with the key used (HEAL_AUDIT_KEY (set))" in first
    assert "no record matches" not in first and "audit.key" not in first, first


def test_the_first_record_hint_with_a_wrong_key_names_no_missing_key_file(
        heal_env: dict[str, str]) -> None:
    _two_keys(heal_env)
    done = _heal(heal_env, "audit", "verify", "--file-only", key="z" * 40)
    assert done.returncode == 1, done
    first = done.stdout.splitlines()[0]
    assert "no record matches its seal, so the key may be the wrong one" in first, first
    assert "audit.key" not in first, first
    assert "verify with the HEAL_AUDIT_KEY heal wrote it with" in first, first
