"""The issue queue: unmatched errors accumulated by fine fingerprint for later review.

Raises :class:`~pipeline.errors.DatabaseUnavailable` / ``QueryError`` like every repository.
Writes arrive through the outbox (``storage.outbox``), so they are idempotent per error.
"""

from __future__ import annotations

from typing import Any

from storage.db import Database


class IssueQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.fetch(
            """SELECT fine, coarse, count, first_seen, last_seen, sample, status
               FROM issue_queue WHERE status = $1 ORDER BY count DESC, last_seen DESC LIMIT $2""",
            status, limit,
        )
        return [
            {**dict(r), "first_seen": r["first_seen"].isoformat(),
             "last_seen": r["last_seen"].isoformat()}
            for r in rows
        ]

    def get(self, fine: str) -> dict[str, Any] | None:
        row = self.db.fetchrow("SELECT * FROM issue_queue WHERE fine = $1", fine)
        return None if row is None else dict(row)
