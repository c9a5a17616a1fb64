"""The last valid ``heal.toml`` of each repository, kept in the state home.

DESIGN §2: an invalid policy is refused and the last valid one stays in force. A worker's memory
is not enough for that: a worker that starts (or restarts) while the file is invalid never saw
the valid one, and two workers could then decide differently for the same repository. Every
loader (pipeline.policy.PolicyLoader) therefore writes the text of each policy file that
validates here, keyed by the repository's resolved path, and reads it back when the file is
invalid. One SQLite file in the state home (``policies.sqlite3``), shared by every worker and
``heal`` command that uses that state home, and kept across restarts.

An empty text with ``present = 0`` records "no heal.toml: the defaults were in force".
``saved_at`` is when a loader saw the policy valid (taken before it read the file); a write
never replaces a row seen valid later, so the row is the newest valid policy any loader saw.
Only repositories that pass the trust check are recorded (pipeline.policy.policy_for).
Errors: ``sqlite3.Error`` / ``OSError`` are raised to the caller, which then keeps what it
has in memory (or fails safe); nothing here decides a policy.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS last_valid_policy (
    repo TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    present INTEGER NOT NULL,
    saved_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StoredPolicy:
    """A policy file's text as it was when it last validated."""

    text: str
    #: False: there was no heal.toml (the defaults were in force)
    present: bool
    #: when a loader last saw it valid (seconds since the epoch): of two valid policies the
    #: one seen later is the newer (pipeline.policy.PolicyLoader)
    saved_at: float


class LastValidPolicies:
    """The last valid policy text of each repository (one short-lived connection per call:
    loaders call this only when a file changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def file_at(home: Path) -> Path:
        return home / "policies.sqlite3"

    @classmethod
    def at_home(cls, home: Path) -> LastValidPolicies:
        return cls(cls.file_at(home))

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def remember(self, repo: str, text: str, present: bool,
                 seen_at: float | None = None) -> bool:
        """Record ``text`` as the last valid policy of ``repo``, seen valid at ``seen_at``
        (seconds since the epoch; now when None). A row seen valid later is never replaced
        (two workers racing, or one slow to write, cannot put an older policy back): the
        upsert only takes a strictly newer ``seen_at``. True when this row is now stored."""
        moment = time.time() if seen_at is None else float(seen_at)
        conn = self._connect()
        try:
            cur = conn.execute(
                "INSERT INTO last_valid_policy (repo, text, present, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (repo) DO UPDATE SET text = excluded.text, "
                "present = excluded.present, saved_at = excluded.saved_at "
                "WHERE excluded.saved_at > last_valid_policy.saved_at",
                (repo, text, int(present), moment))
            return cur.rowcount > 0
        finally:
            conn.close()

    def last(self, repo: str) -> StoredPolicy | None:
        """The last valid policy recorded for ``repo``, or None when none ever was."""
        conn = self._connect()
        try:
            row = conn.execute("SELECT text, present, saved_at FROM last_valid_policy "
                               "WHERE repo = ?", (repo,)).fetchone()
        finally:
            conn.close()
        return None if row is None else StoredPolicy(str(row[0]), bool(row[1]), float(row[2]))
