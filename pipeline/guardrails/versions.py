"""Versioned store of learned artifacts (pattern sets, embedding index, thresholds) in
PostgreSQL: snapshot, list, roll back to a version, prune old ones, and roll back on its own
when the success rate measured after an update drops by more than a policy margin.

Every change holds a row lock on the artifact's versions, so two workers never both activate
a version. Raises DatabaseUnavailable / QueryError (storage), UsageError (unknown version).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UsageError

DEFAULT_MARGIN = 0.1


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    checksum: str
    note: str
    success_rate: float | None
    active: bool
    created_at: Any


def _row(r: Any) -> Version:
    return Version(r["name"], r["version"], r["checksum"], r["note"], r["success_rate"],
                   r["active"], r["created_at"])


_COLS = "name, version, checksum, note, success_rate, active, created_at"


class VersionedStore:
    def __init__(self, db: Any, audit: Any = None) -> None:
        self.db = db
        self.audit = audit

    def snapshot(self, name: str, payload: Any, note: str = "") -> int:
        """Store ``payload`` as the next version of ``name`` and make it active; an identical
        payload to the active version stores nothing and returns that version."""
        text = json.dumps(payload, sort_keys=True, default=str)
        checksum = hashlib.sha256(text.encode()).hexdigest()

        async def go(conn: Any) -> int:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   f"heal:artifact:{name}")
                active = await conn.fetchrow("SELECT version, checksum FROM artifact_versions"
                                             " WHERE name = $1 AND active", name)
                if active is not None and active["checksum"] == checksum:
                    return int(active["version"])
                version = int(await conn.fetchval(
                    "SELECT coalesce(max(version), 0) + 1 FROM artifact_versions"
                    " WHERE name = $1", name))
                await conn.execute("UPDATE artifact_versions SET active = false"
                                   " WHERE name = $1 AND active", name)
                await conn.execute(
                    "INSERT INTO artifact_versions (name, version, payload, checksum, note,"
                    " active) VALUES ($1, $2, $3::jsonb, $4, $5, true)",
                    name, version, text, checksum, note)
                return version

        version: int = self.db.run(go)
        self._audit("artifact.snapshot", name, {"version": version, "note": note})
        return version

    def list(self, name: str) -> list[Version]:
        rows = self.db.fetch(f"SELECT {_COLS} FROM artifact_versions WHERE name = $1"
                             " ORDER BY version", name)
        return [_row(r) for r in rows]

    def active(self, name: str) -> tuple[int, Any] | None:
        row = self.db.fetchrow("SELECT version, payload FROM artifact_versions"
                               " WHERE name = $1 AND active", name)
        if row is None:
            return None
        payload = row["payload"]
        return int(row["version"]), json.loads(payload) if isinstance(payload, str) else payload

    def rollback(self, name: str, version: int, reason: str = "rolled back by hand") -> None:
        """Make ``version`` the active one. Raises UsageError when it does not exist."""
        async def go(conn: Any) -> bool:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   f"heal:artifact:{name}")
                exists = await conn.fetchval("SELECT 1 FROM artifact_versions WHERE name = $1"
                                             " AND version = $2", name, version)
                if not exists:
                    return False
                await conn.execute("UPDATE artifact_versions SET active = false"
                                   " WHERE name = $1 AND active", name)
                await conn.execute("UPDATE artifact_versions SET active = true"
                                   " WHERE name = $1 AND version = $2", name, version)
                return True

        if not self.db.run(go):
            known = ", ".join(str(v.version) for v in self.list(name)) or "none"
            raise UsageError(f"artifact {name!r} has no version {version} (known: {known})")
        self._audit("artifact.rollback", name, {"version": version, "reason": reason})

    def prune(self, name: str, keep: int = 5) -> int:
        """Delete all but the newest ``keep`` versions (never the active one)."""
        if keep < 1:
            raise UsageError(f"prune: keep must be >= 1, got {keep}")
        status = self.db.execute(
            "DELETE FROM artifact_versions WHERE name = $1 AND NOT active AND version NOT IN"
            " (SELECT version FROM artifact_versions WHERE name = $1"
            " ORDER BY version DESC LIMIT $2)", name, keep)
        return int(str(status).rsplit(" ", 1)[-1])

    def record_success_rate(self, name: str, version: int, rate: float) -> None:
        self.db.execute("UPDATE artifact_versions SET success_rate = $3 WHERE name = $1"
                        " AND version = $2", name, version, rate)

    def check_regression(self, name: str, margin: float = DEFAULT_MARGIN) -> int | None:
        """Roll back to the previous version when the active one's success rate is more than
        ``margin`` below it; returns the version rolled back to, or None."""
        versions = [v for v in self.list(name) if v.success_rate is not None or v.active]
        current = next((v for v in versions if v.active), None)
        if current is None or current.success_rate is None:
            return None
        before = [v for v in versions if v.version < current.version
                  and v.success_rate is not None]
        if not before:
            return None
        previous = before[-1]
        assert previous.success_rate is not None
        drop = previous.success_rate - current.success_rate
        if drop <= margin:
            return None
        self.rollback(name, previous.version,
                      f"success rate fell {drop:.3f} (> margin {margin}) after version "
                      f"{current.version}")
        return previous.version

    def _audit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(kind, subject, data)
