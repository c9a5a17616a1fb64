"""The local SQLite cache under ``$HEAL_HOME`` in front of PostgreSQL.

Holds what the lookup needs to answer without PostgreSQL: fingerprint -> pattern (tier 1),
fix states, pattern reference vectors and per-fingerprint query vectors (tier 2), causal
edges (tier 3), and the outbox of writes waiting for PostgreSQL. Several workers may share
one file (WAL mode, a busy timeout). Raises :class:`~pipeline.errors.EngineError` when the
file cannot be opened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline.errors import EngineError, StateHomeFull
from pipeline.homedir import home_write_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT NOT NULL, level TEXT NOT NULL, pattern_id TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'rule',
    PRIMARY KEY (fingerprint, level)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fix_states (fix_id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pattern_vectors (
    id TEXT PRIMARY KEY, pattern_id TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS query_vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS edges (
    cause TEXT NOT NULL, effect TEXT NOT NULL, confidence REAL NOT NULL,
    PRIMARY KEY (cause, effect));
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    payload BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parked_ops (
    op_id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL,
    parked REAL NOT NULL);
"""


#: a fingerprint mapping the lookup learned from a detection rule's match: served only when
#: that pattern's rule matches the text again (storage/migrations/0610_fingerprint_source.sql)
RULE = "rule"
#: a fingerprint mapping a person taught (heal learn, reviews, packs): served by itself
TAUGHT = "taught"

log = logging.getLogger("heal.cache")

#: what the outbox holds, for the messages about a damaged file
_OUTBOX_HOLDS = ("the lookup's records not yet written to PostgreSQL (the errors it saw: "
                 "issues and occurrences; learned fingerprints, fix rankings)")
#: SQLite's primary result codes of a file that is no database, or a damaged one
_DAMAGED_CODES = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}

#: outbox rows per INSERT statement (4 parameters each: under SQLite's oldest limit of 999)
ENQUEUE_ROWS = 200


def _home_full(exc: Exception, home: Path, path: Path) -> StateHomeFull | None:
    """StateHomeFull for an OSError or SQLite error that says the file system under
    HEAL_HOME is full (SQLITE_FULL: "database or disk is full"); None for anything else."""
    if isinstance(exc, OSError):
        error = exc
    elif getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    else:
        return None
    translated = home_write_error(error, home, "opening the local lookup cache", path)
    return translated if isinstance(translated, StateHomeFull) else None


class LocalCache:
    """One SQLite connection per cache object (thread-safe through a lock)."""

    def __init__(self, path: Path, home: Path | None = None) -> None:
        """Open (creating) the cache at ``path``. ``home``: the HEAL_HOME it lies in, whose
        full file system is then reported as such (StateHomeFull: free space or move
        HEAL_HOME), not as an engine that cannot open.

        Raises:
            EngineError: the file cannot be opened or is not a cache.
            StateHomeFull: (with ``home``) no space left to create or open it.
        """
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _open(path)
        except (OSError, sqlite3.Error) as exc:
            if _damaged(exc):
                # (with ``home``: a worker, heal run, heal up; status creates no state)
                self._conn = _recover(path, exc, fix=home is not None)
            else:
                full = None if home is None else _home_full(exc, home, path)
                raise full or EngineError(
                    f"cannot open the local cache {path}: {exc}") from exc
        self._lock = threading.Lock()

    @staticmethod
    def file_at(home: Path) -> Path:
        return home / "lookup-cache.sqlite3"

    @classmethod
    def at_home(cls, home: Path) -> LocalCache:
        return cls(cls.file_at(home), home)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, in one IMMEDIATE transaction: committed when the
        block ends, rolled back when it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self._transaction() as conn:
            conn.executemany(sql, rows)

    # -- tier 1 ------------------------------------------------------------------------------

    def pattern_for(self, fingerprint: str, level: str) -> tuple[str, str] | None:
        """(pattern id, source: RULE or TAUGHT) of the mapping, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT pattern_id, source FROM fingerprints WHERE fingerprint = ? AND level = ?",
                (fingerprint, level)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def put_fingerprints(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """(fingerprint, level, pattern_id, source); the first mapping of a fingerprint wins."""
        self._write("INSERT OR IGNORE INTO fingerprints (fingerprint, level, pattern_id, source)"
                    " VALUES (?, ?, ?, ?)", rows)

    def replace_fingerprints(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(fingerprint, level, pattern_id) that replace what was known (a taught pattern)."""
        self._write("INSERT OR REPLACE INTO fingerprints (fingerprint, level, pattern_id, source)"
                    " VALUES (?, ?, ?, ?)", ((f, lv, p, TAUGHT) for f, lv, p in rows))

    def put_fix_states(self, states: dict[str, str]) -> None:
        self._write("INSERT OR REPLACE INTO fix_states VALUES (?, ?)", states.items())

    def fix_states(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT fix_id, state FROM fix_states").fetchall())

    # -- tier 2 ------------------------------------------------------------------------------

    def put_pattern_vectors(self, rows: Iterable[tuple[str, str, str, np.ndarray]]) -> None:
        """Replace every reference vector (the set follows the seeds)."""
        items = [(i, p, t, np.asarray(v, np.float32).tobytes()) for i, p, t, v in rows]
        with self._transaction() as conn:
            conn.execute("DELETE FROM pattern_vectors")
            conn.executemany("INSERT INTO pattern_vectors VALUES (?, ?, ?, ?)", items)

    def pattern_vectors(self) -> list[tuple[str, str, str, np.ndarray]]:
        with self._lock:
            rows = self._conn.execute("SELECT id, pattern_id, text, vector FROM pattern_vectors")
            return [(i, p, t, np.frombuffer(v, np.float32)) for i, p, t, v in rows.fetchall()]

    def query_vector(self, key: str) -> np.ndarray | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT vector FROM query_vectors WHERE key = ?", (key,)).fetchone()
        return None if row is None else np.frombuffer(row[0], np.float32)

    def put_query_vector(self, key: str, vector: np.ndarray) -> None:
        self._write("INSERT OR REPLACE INTO query_vectors VALUES (?, ?)",
                    [(key, np.asarray(vector, np.float32).tobytes())])

    # -- tier 3 ------------------------------------------------------------------------------

    def put_edges(self, edges: Iterable[tuple[str, str, float]]) -> None:
        self._write("INSERT OR REPLACE INTO edges VALUES (?, ?, ?)", edges)

    def edges(self) -> list[tuple[str, str, float]]:
        with self._lock:
            return [(c, e, float(w)) for c, e, w in
                    self._conn.execute("SELECT cause, effect, confidence FROM edges").fetchall()]

    # -- outbox ------------------------------------------------------------------------------

    def enqueue(self, ops: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Queue writes for PostgreSQL, in one transaction; an op id already queued is ignored
        (idempotent). Rows go in by ENQUEUE_ROWS per statement: one multi-row INSERT costs
        ~40% less per op than executemany's statement per row (the lookup stage writes one
        op per event)."""
        now = time.time()
        rows = [(op_id, kind, orjson.dumps(payload), now) for op_id, kind, payload in ops]
        if not rows:
            return
        with self._transaction() as conn:
            for start in range(0, len(rows), ENQUEUE_ROWS):
                chunk = rows[start:start + ENQUEUE_ROWS]
                conn.execute(
                    "INSERT OR IGNORE INTO outbox (op_id, kind, payload, created) VALUES "
                    + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
                    [value for row in chunk for value in row])

    def pending(self, limit: int = 500) -> list[tuple[int, str, str, dict[str, Any]]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, op_id, kind, payload FROM outbox ORDER BY seq LIMIT ?", (limit,))
            return [(s, o, k, orjson.loads(p)) for s, o, k, p in rows.fetchall()]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def acknowledge(self, up_to_seq: int) -> None:
        self._write("DELETE FROM outbox WHERE seq <= ?", [(up_to_seq,)])

    def park(self, seq: int, op_id: str, kind: str, payload: dict[str, Any], reason: str) -> None:
        """Move one outbox op that PostgreSQL rejects (not an outage) aside with its reason,
        so it never blocks the ops queued after it (``parked()`` lists them)."""
        self._write("INSERT OR REPLACE INTO parked_ops VALUES (?, ?, ?, ?, ?)",
                    [(op_id, kind, orjson.dumps(payload), reason[:2000], time.time())])
        self._write("DELETE FROM outbox WHERE seq = ?", [(seq,)])

    def parked(self) -> list[tuple[str, str, str]]:
        """``(op_id, kind, reason)`` of every parked op, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT op_id, kind, reason FROM parked_ops ORDER BY parked").fetchall()
        return [(str(o), str(k), str(r)) for o, k, r in rows]

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(key, value)])


def _add_source_column(conn: sqlite3.Connection) -> None:
    """A cache file from before mappings had a source gets the column and forgets its
    mappings: which were taught is not known here, and a cache refills from PostgreSQL (warmed
    at start, then read on each miss) with each mapping's source. Another process may add the
    column first: that is fine."""
    def has_source() -> bool:
        return any(row[1] == "source"
                   for row in conn.execute("PRAGMA table_info(fingerprints)"))

    if has_source():
        return
    conn.execute("BEGIN IMMEDIATE")  # (the busy timeout waits for another process's upgrade)
    try:
        if not has_source():
            conn.execute("ALTER TABLE fingerprints ADD COLUMN source TEXT NOT NULL "
                         "DEFAULT 'rule'")
            conn.execute("DELETE FROM fingerprints")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _open(path: Path) -> sqlite3.Connection:
    """A connection to the cache at ``path``, its schema made; closed again when it fails.

    Raises: OSError, sqlite3.Error."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False,
                           isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        _add_source_column(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _damaged(exc: BaseException) -> bool:
    """Whether ``exc`` says the file is no SQLite database, or a damaged one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and (
        code & 0xFF) in _DAMAGED_CODES


def _unsynced(path: Path) -> int | None:
    """How many writes the outbox (and its parked ops) of the file at ``path`` still holds,
    read without changing it; None when they cannot be read (then they are lost already)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except (sqlite3.Error, OSError, ValueError):
        return None
    try:
        held = 0
        for table in ("outbox", "parked_ops"):
            with contextlib.suppress(sqlite3.OperationalError):  # (no such table: none)
                held += int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return held
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _recover(path: Path, exc: BaseException, *, fix: bool) -> sqlite3.Connection:
    """A cache file that is no SQLite database or a damaged one (``exc``): the rest of what
    it holds is a copy of PostgreSQL's that refills by itself, so when its outbox holds no
    write that can still be read (nothing more is lost by it), and ``fix``, it is moved aside
    (``<name>.damaged-<UTC time>``, kept, never deleted) and a new one made; said once, as a
    warning. Under a lock, so two processes finding it damaged move it aside once.

    Raises:
        EngineError: not ``fix`` (heal status creates no state), or its outbox still holds
            writes that can be read: what the file is and what to do.
    """
    held = _unsynced(path)
    lost = ("no write waiting in it could be read" if held is None
            else "it held no write waiting for PostgreSQL")
    if not fix or held:
        if held:
            what = (f"its outbox still holds {held} writes that can be read: "
                    f"{_OUTBOX_HOLDS}; heal leaves it as it is: move it aside (mv "
                    f"{path} {path}.damaged) to start a new one, losing them, or restore it "
                    "from a backup")
        else:
            what = (f"the rest is a copy of PostgreSQL's that refills by itself, and {lost}: "
                    "the next heal run, heal up or stage worker moves it aside (to "
                    f"{path.name}.damaged-<time>) and makes a new one; or move it aside "
                    "yourself")
        raise EngineError(f"cannot open the local cache {path}: {exc}: the file is damaged "
                          f"(the lookup's local cache and outbox); {what}") from exc
    lock = os.open(path.parent, os.O_RDONLY)  # (its folder: no lock file left behind)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _open(path)  # another process moved it aside meanwhile
        except sqlite3.DatabaseError as again:
            if not _damaged(again):
                raise EngineError(f"cannot open the local cache {path}: {again}") from again
        aside = path.with_name(
            f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            for suffix in ("", "-wal", "-shm"):  # (a WAL belongs with its database file)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{path}{suffix}", f"{aside}{suffix}")
            conn = _open(path)
        except (OSError, sqlite3.Error) as failed:
            raise EngineError(f"cannot open the local cache {path}: {exc}: the file is "
                              f"damaged, and moving it aside to {aside} failed: {failed}; "
                              "move it aside yourself") from failed
    finally:
        os.close(lock)
    log.warning("the local lookup cache %s was damaged (%s): moved aside to %s and made anew "
                "(%s; the rest refills from PostgreSQL)", path, exc, aside, lost)
    return conn
