"""The local SQLite cache under ``$HEAL_HOME`` in front of PostgreSQL.

Holds what the lookup needs to answer without PostgreSQL: fingerprint -> pattern (tier 1),
fix states, pattern reference vectors and per-fingerprint query vectors (tier 2), causal
edges (tier 3), and the outbox of writes waiting for PostgreSQL. Several workers may share
one file (WAL mode, a busy timeout). Raises :class:`~pipeline.errors.EngineError` when the
file cannot be opened, or is damaged (found at open or by any later query) and cannot be
replaced without losing writes its outbox still holds.
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from pipeline.errors import DamagedCache, EngineError, StateHomeFull
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
#: SQLite's primary result codes of a file that is no database ("file is not a database",
#: "file is encrypted or is not a database"), or a damaged one ("database disk image is
#: malformed")
_DAMAGED_CODES = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
#: extended result codes of a read that failed ("disk I/O error" reading a page, or a file
#: shorter than its header says): the file cannot be read back either
_UNREADABLE_CODES = {sqlite3.SQLITE_IOERR_READ, sqlite3.SQLITE_IOERR_SHORT_READ}

T = TypeVar("T")

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
            EngineError: the file cannot be opened or is not a cache (DamagedCache: damaged,
                and not replaced, see :func:`_recover`).
            StateHomeFull: (with ``home``) no space left to create or open it.
        """
        self.path = path
        # (with ``home``: a worker, heal run, heal up may replace a damaged file; heal status,
        # which creates no state, only says what it is)
        self._fix = home is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _open(path)
        except (OSError, sqlite3.Error) as exc:
            if _damaged(exc):
                self._conn = _recover(path, exc, fix=self._fix, opening=True)
            else:
                full = None if home is None else _home_full(exc, home, path)
                raise full or EngineError(
                    f"cannot open the local cache {path}: {exc}") from exc
        self._inode = _inode(path)
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

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` under the lock. A damage it finds (most pages are read only
        by a query, not at open) takes the path of one found at open: the file is replaced
        when that loses nothing (see :func:`_recover`) and ``work`` runs once more on the new
        one.

        Raises:
            DamagedCache: the file is damaged and cannot be replaced (or heal status).
        """
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                self._replace_damaged(exc)
            return work(self._conn)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in one IMMEDIATE transaction (under the lock, as
        :meth:`_read`): committed when it returns, rolled back when it raises."""
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # (SQLite may have rolled back already)
                    conn.execute("ROLLBACK")
                raise
            return done

        return self._read(transaction)

    def _replace_damaged(self, exc: sqlite3.DatabaseError) -> None:
        """Replace the connection to a file ``exc`` found damaged by one to a new file.

        Raises:
            DamagedCache, EngineError: see :func:`_recover` (the connection is kept: the
                next query says the same).
        """
        conn = _recover(self.path, exc, fix=self._fix, opening=False, inode=self._inode)
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._conn = conn
        self._inode = _inode(self.path)

    def _write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        items = list(rows)  # (a retry on a new file reads them again)
        self._transaction(lambda conn: conn.executemany(sql, items))

    # -- tier 1 ------------------------------------------------------------------------------

    def pattern_for(self, fingerprint: str, level: str) -> tuple[str, str] | None:
        """(pattern id, source: RULE or TAUGHT) of the mapping, if any."""
        row = self._read(lambda conn: conn.execute(
            "SELECT pattern_id, source FROM fingerprints WHERE fingerprint = ? AND level = ?",
            (fingerprint, level)).fetchone())
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
        return dict(self._read(
            lambda conn: conn.execute("SELECT fix_id, state FROM fix_states").fetchall()))

    # -- tier 2 ------------------------------------------------------------------------------

    def put_pattern_vectors(self, rows: Iterable[tuple[str, str, str, np.ndarray]]) -> None:
        """Replace every reference vector (the set follows the seeds)."""
        items = [(i, p, t, np.asarray(v, np.float32).tobytes()) for i, p, t, v in rows]

        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM pattern_vectors")
            conn.executemany("INSERT INTO pattern_vectors VALUES (?, ?, ?, ?)", items)

        self._transaction(replace)

    def pattern_vectors(self) -> list[tuple[str, str, str, np.ndarray]]:
        rows = self._read(lambda conn: conn.execute(
            "SELECT id, pattern_id, text, vector FROM pattern_vectors").fetchall())
        return [(i, p, t, np.frombuffer(v, np.float32)) for i, p, t, v in rows]

    def query_vector(self, key: str) -> np.ndarray | None:
        row = self._read(lambda conn: conn.execute(
            "SELECT vector FROM query_vectors WHERE key = ?", (key,)).fetchone())
        return None if row is None else np.frombuffer(row[0], np.float32)

    def put_query_vector(self, key: str, vector: np.ndarray) -> None:
        self._write("INSERT OR REPLACE INTO query_vectors VALUES (?, ?)",
                    [(key, np.asarray(vector, np.float32).tobytes())])

    # -- tier 3 ------------------------------------------------------------------------------

    def put_edges(self, edges: Iterable[tuple[str, str, float]]) -> None:
        self._write("INSERT OR REPLACE INTO edges VALUES (?, ?, ?)", edges)

    def edges(self) -> list[tuple[str, str, float]]:
        rows = self._read(lambda conn: conn.execute(
            "SELECT cause, effect, confidence FROM edges").fetchall())
        return [(c, e, float(w)) for c, e, w in rows]

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

        def insert(conn: sqlite3.Connection) -> None:
            for start in range(0, len(rows), ENQUEUE_ROWS):
                chunk = rows[start:start + ENQUEUE_ROWS]
                conn.execute(
                    "INSERT OR IGNORE INTO outbox (op_id, kind, payload, created) VALUES "
                    + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
                    [value for row in chunk for value in row])

        self._transaction(insert)

    def pending(self, limit: int = 500) -> list[tuple[int, str, str, dict[str, Any]]]:
        rows = self._read(lambda conn: conn.execute(
            "SELECT seq, op_id, kind, payload FROM outbox ORDER BY seq LIMIT ?",
            (limit,)).fetchall())
        return [(s, o, k, orjson.loads(p)) for s, o, k, p in rows]

    def pending_count(self) -> int:
        return int(self._read(
            lambda conn: conn.execute("SELECT count(*) FROM outbox").fetchone()[0]))

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
        rows = self._read(lambda conn: conn.execute(
            "SELECT op_id, kind, reason FROM parked_ops ORDER BY parked").fetchall())
        return [(str(o), str(k), str(r)) for o, k, r in rows]

    def check(self) -> None:
        """Read every page of the file (PRAGMA quick_check): a damage anywhere is found now
        and takes the path of one found by a query (heal status, which otherwise reads only
        the outbox's pages).

        Raises:
            DamagedCache: the file is damaged and cannot be replaced (or heal status).
        """
        def quick_check(conn: sqlite3.Connection) -> None:
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)").fetchall()]
            if found != ["ok"]:
                damage = sqlite3.DatabaseError(
                    "database disk image is malformed (" + "; ".join(found)[:300] + ")")
                damage.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
                raise damage

        self._read(quick_check)

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._read(lambda conn: conn.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
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
    """Whether ``exc`` says the file is no SQLite database, a damaged one, or one whose pages
    cannot be read back."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and (
        (code & 0xFF) in _DAMAGED_CODES or code in _UNREADABLE_CODES)


def _inode(path: Path) -> int | None:
    """The inode of the file at ``path`` (None: gone): tells whether another process has
    replaced a damaged file already."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _unsynced(path: Path) -> int | None:
    """How many writes the outbox (and its parked ops) of the file at ``path`` still holds
    that can be read, read without changing it (a damaged table is read as far as it goes);
    None when none can be read because of the damage (then they are lost already)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except (sqlite3.Error, OSError, ValueError):
        return None
    held, damaged = 0, False
    try:
        for table in ("outbox", "parked_ops"):
            try:
                # each row whole (an op's payload may lie on pages of its own)
                for _row in conn.execute(f"SELECT * FROM {table}"):
                    held += 1
            except sqlite3.DatabaseError as exc:
                if "no such table" in str(exc):
                    continue  # (none)
                if not _damaged(exc):
                    raise  # (not a damage: say nothing can be read, as before)
                damaged = True
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if damaged and not held else held


def _damage_error(path: Path, exc: BaseException, held: int | None, *,
                  opening: bool) -> DamagedCache:
    """What the damaged file at ``path`` is and what to do, ``held`` writes of its outbox
    still readable."""
    if held:
        what = (f"its outbox still holds {held} write(s) that can be read: "
                f"{_OUTBOX_HOLDS}; heal leaves it as it is: move it aside (mv "
                f"{path} {path}.damaged) to start a new one, losing them, or restore it "
                "from a backup")
    else:
        lost = ("no write waiting in it could be read" if held is None
                else "it held no write waiting for PostgreSQL")
        what = (f"the rest is a copy of PostgreSQL's that refills by itself, and {lost}: "
                "the next heal run, heal up or stage worker moves it aside (to "
                f"{path.name}.damaged-<time>) and makes a new one; or move it aside "
                "yourself")
    verb = "open" if opening else "read"
    return DamagedCache(f"cannot {verb} the local cache {path}: {exc}: the file is damaged "
                       f"(the lookup's local cache and outbox); {what}")


def _recover(path: Path, exc: BaseException, *, fix: bool, opening: bool,
             inode: int | None = None) -> sqlite3.Connection:
    """A cache file that is no SQLite database, a damaged one or an unreadable one (``exc``,
    raised at open with ``opening``, else by a query on the file ``inode``): the rest of what
    it holds is a copy of PostgreSQL's that refills by itself, so when its outbox holds no
    write that can still be read (nothing more is lost by it), and ``fix``, it is moved aside
    (``<name>.damaged-<UTC time>``, kept, never deleted) and a new one made; said once, as a
    warning. Under a lock, so two processes finding it damaged move it aside once.

    Raises:
        DamagedCache: not ``fix`` (heal status creates no state), or its outbox still holds
            writes that can be read: what the file is and what to do.
        EngineError: moving it aside failed.
    """
    if not fix:
        raise _damage_error(path, exc, _unsynced(path), opening=opening) from exc
    lock = os.open(path.parent, os.O_RDONLY)  # (its folder: no lock file left behind)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not opening and _inode(path) not in (inode, None):
            return _reopen(path)  # another process moved it aside meanwhile
        if opening:
            try:
                return _open(path)  # another process moved it aside meanwhile
            except sqlite3.DatabaseError as again:
                if not _damaged(again):
                    raise EngineError(f"cannot open the local cache {path}: {again}") from again
        held = _unsynced(path)
        if held:
            raise _damage_error(path, exc, held, opening=opening) from exc
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
    lost = ("no write waiting in it could be read" if held is None
            else "it held no write waiting for PostgreSQL")
    log.warning("the local lookup cache %s was damaged (%s): moved aside to %s and made anew "
                "(%s; the rest refills from PostgreSQL)", path, exc, aside, lost)
    return conn


def _reopen(path: Path) -> sqlite3.Connection:
    """A connection to the file another process made in place of a damaged one.

    Raises: EngineError."""
    try:
        return _open(path)
    except (OSError, sqlite3.Error) as exc:
        raise EngineError(f"cannot open the local cache {path}: {exc}") from exc
