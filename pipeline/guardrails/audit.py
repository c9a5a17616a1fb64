"""The audit log: every decision (state change, breaker transition, vote, apply, rollback)
appended as one JSON line under ``$HEAL_HOME/audit.jsonl`` and, when a database is given, as
a row of ``audit_log`` in PostgreSQL.

Each record carries the hash of the record before it (``prev``) and its own ``hash`` (SHA-256
of its canonical JSON without ``hash``), so editing, deleting or reordering any record breaks
the chain from that point on; :func:`verify_file` / :func:`verify_database` find the first
break. The file and the table are two independent chains (each appended under its own lock:
an exclusive ``flock`` for the file, a PostgreSQL advisory lock for the table), so several
workers, on one host or many, can append concurrently.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import HealError

GENESIS = "0" * 64
FILE_NAME = "audit.jsonl"
_TAIL_BLOCK = 8192


def canonical(record: dict[str, Any]) -> str:
    """The exact text that is hashed and stored (sorted keys, no spaces, UTF-8)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def _seal(prev: dict[str, Any] | None, kind: str, subject: str,
          data: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "seq": (prev["seq"] + 1) if prev else 1,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "subject": subject,
        "data": data,
        "prev": prev["hash"] if prev else GENESIS,
    }
    record["hash"] = record_hash(record)
    return record


class AuditLog:
    """Append-only, hash-chained decision log.

    Raises (from ``append``):
        HealError: the file's last line is not a record (a torn write); run ``heal audit
            verify``.
        DatabaseUnavailable: PostgreSQL was given and cannot be reached.
    """

    def __init__(self, settings: Settings, db: Any = None, path: Path | None = None) -> None:
        self.path = path or settings.home / FILE_NAME
        self.db = db

    def append(self, kind: str, subject: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one decision; returns the file record (with its ``seq`` and ``hash``)."""
        data = json.loads(canonical(data or {}))  # fail early on what cannot be hashed
        record = self._append_file(kind, subject, data)
        if self.db is not None:
            self._append_db(kind, subject, data)
        return record

    def _append_file(self, kind: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            try:
                record = _seal(_last_record(fh, self.path), kind, subject, data)
                fh.seek(0, os.SEEK_END)
                fh.write(canonical(record).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return record

    def _append_db(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        async def insert(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('heal:audit_log'))")
                row = await conn.fetchrow("SELECT body FROM audit_log ORDER BY seq DESC LIMIT 1")
                prev = json.loads(row["body"]) if row else None
                record = _seal(prev, kind, subject, data)
                await conn.execute(
                    "INSERT INTO audit_log (seq, kind, subject, prev_hash, hash, body)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    record["seq"], kind, subject, record["prev"], record["hash"],
                    canonical(record),
                )

        self.db.run(insert)


def _last_record(fh: Any, path: Path) -> dict[str, Any] | None:
    """The last record of the file, read from its end (the log can be large)."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos, tail = end, b""
    while pos > 0 and tail.rstrip(b"\n").count(b"\n") == 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
    line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record: dict[str, Any] = json.loads(line)
        record["seq"] = int(record["seq"])
        str(record["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HealError(
            f"audit log {path}: the last line is not a record ({exc}); "
            "run `heal audit verify` and repair or move the file aside"
        ) from exc
    return record


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    #: 1-based position (line number for the file) of the first bad record, or None
    bad_at: int | None = None
    reason: str = ""
    bad_record: str = ""


def verify_lines(lines: Iterator[str]) -> Verification:
    """Check a chain given as canonical JSON texts, oldest first."""
    prev_hash, count = GENESIS, 0
    for position, line in enumerate(lines, start=1):
        if not line.strip():
            return Verification(False, count, position, "empty line inside the log", line)
        try:
            record = json.loads(line)
        except ValueError:
            return Verification(False, count, position, "not JSON", line)
        reason = _check(record, prev_hash, count + 1)
        if reason:
            return Verification(False, count, position, reason, line)
        prev_hash, count = record["hash"], count + 1
    return Verification(True, count)


def _check(record: Any, prev_hash: str, seq: int) -> str:
    if not isinstance(record, dict) or "hash" not in record:
        return "not an audit record"
    if record.get("seq") != seq:
        return f"sequence {record.get('seq')!r} where {seq} was expected (record removed?)"
    if record.get("prev") != prev_hash:
        return "prev does not match the previous record's hash (chain broken)"
    if record_hash(record) != record["hash"]:
        return "hash does not match the record's content (record edited)"
    return ""


def verify_file(path: Path) -> Verification:
    """Verify the JSONL chain; a missing file is an empty, valid log."""
    if not path.exists():
        return Verification(True, 0)
    with open(path, encoding="utf-8", errors="replace") as fh:
        return verify_lines(line.rstrip("\n") for line in fh)


def verify_database(db: Any) -> Verification:
    """Verify the ``audit_log`` table's chain, in ``seq`` order."""
    rows = db.fetch("SELECT body FROM audit_log ORDER BY seq")
    return verify_lines(str(row["body"]) for row in rows)
