"""Repository of validate/apply records: attempts, votes, verification runs, apply results.

Every write is idempotent on the error id (redelivery changes nothing twice).
All methods raise DatabaseUnavailable (from :mod:`storage.db`) when PostgreSQL is unreachable.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from storage.db import Database


class _DB(Protocol):
    def execute(self, sql: str, *args: Any) -> str: ...
    def fetch(self, sql: str, *args: Any) -> list[Any]: ...
    def fetchrow(self, sql: str, *args: Any) -> Any: ...


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


#: an attempt waiting for a person: suggested, or decided ``apply`` but held by the apply stage
#: (workflow quarantined, breaker opened, ...) and so left as a suggestion
_WAITING = ("((a.decision = 'suggest' AND r.status IS NULL) OR r.status = 'suggested')")


class AttemptStore:
    def __init__(self, db: _DB) -> None:
        self.db = db

    def record_attempt(self, row: dict[str, Any]) -> None:
        """Insert the attempt (first write wins) with its votes and verification runs."""
        self.db.execute(
            """INSERT INTO attempts (id, error_id, fingerprint, fix_id, attempt, repo, command,
                   decision, reason, category, mode, branch, commit, preflight, fix, verdict)
               VALUES ($1,$1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9,$10,$11,$12,$13::jsonb,$14::jsonb,
                       $15)
               ON CONFLICT (id) DO NOTHING""",
            row["error_id"], row.get("fingerprint", ""), row.get("fix_id", ""),
            int(row.get("attempt", 1)), row.get("repo", ""), _json(row.get("command", [])),
            row.get("decision", ""), row.get("reason", ""), row.get("category", ""),
            row.get("mode", ""), row.get("branch", ""), row.get("commit", ""),
            _json(row.get("preflight", [])), _json(row.get("fix") or {}),
            row.get("verdict", ""),
        )
        for vote in row.get("votes", []):
            self.db.execute(
                """INSERT INTO attempt_votes (attempt_id, judge, approve, reason, cost_usd)
                   VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING""",
                row["error_id"], vote["judge"], bool(vote["approve"]), vote.get("reason", ""),
                float(vote.get("cost_usd", 0.0)),
            )
        for run in row.get("verification", []):
            self.db.execute(
                """INSERT INTO verification_runs (attempt_id, name, phase, argv, exit_code,
                       timed_out, duration_s, tail)
                   VALUES ($1,$2,$3,$4::jsonb,$5,$6,$7,$8) ON CONFLICT DO NOTHING""",
                row["error_id"], run.get("name", ""), run.get("phase", ""),
                _json(run.get("argv", [])), run.get("exit_code"), bool(run.get("timed_out")),
                float(run.get("duration_s", 0.0)), str(run.get("tail", "")),
            )

    def votes(self, error_id: str) -> list[dict[str, Any]]:
        rows = self.db.fetch("SELECT judge, approve, reason, cost_usd FROM attempt_votes "
                             "WHERE attempt_id = $1 ORDER BY judge", error_id)
        return [dict(r) for r in rows]

    def runs(self, error_id: str) -> list[dict[str, Any]]:
        rows = self.db.fetch("SELECT name, phase, exit_code, timed_out, duration_s, tail "
                             "FROM verification_runs WHERE attempt_id = $1 ORDER BY phase, name",
                             error_id)
        return [dict(r) for r in rows]

    def attempt(self, error_id: str) -> dict[str, Any] | None:
        row = self.db.fetchrow("SELECT * FROM attempts WHERE id = $1", error_id)
        return _decode(row) if row is not None else None

    def pending_suggestions(self, fix_or_error_id: str, limit: int = 50
                            ) -> list[dict[str, Any]]:
        """Suggested attempts nobody applied or rejected yet, for an error id or a fix id,
        newest first."""
        rows = self.db.fetch(
            f"""SELECT a.* FROM attempts a LEFT JOIN apply_results r ON r.error_id = a.id
               WHERE (a.id = $1 OR a.fix_id = $1) AND {_WAITING}
               ORDER BY a.created_at DESC LIMIT $2""", fix_or_error_id, limit)
        return [_decode(r) for r in rows]

    def waiting_suggestions(self, limit: int = 50) -> list[dict[str, Any]]:
        """Verified suggestions nobody applied yet, newest first: ``error_id``, ``fix_id``,
        ``created_at``."""
        rows = self.db.fetch(
            f"""SELECT a.id AS error_id, a.fix_id, a.created_at FROM attempts a
               LEFT JOIN apply_results r ON r.error_id = a.id
               WHERE {_WAITING}
               ORDER BY a.created_at DESC LIMIT $1""", limit)
        return [dict(r) for r in rows]

    def history(self, fix_id: str) -> dict[str, int]:
        """How often this fix was applied, rolled back or failed (feeds the history judge):
        this stage's own apply results, or the lifecycle's counters in ``fixes`` when larger
        (they also count outcomes from other installations' imports)."""
        rows = self.db.fetch("SELECT status, count(*) AS n FROM apply_results WHERE fix_id = $1 "
                             "GROUP BY status", fix_id)
        counts = {str(r["status"]): int(r["n"]) for r in rows}
        from pipeline.errors import QueryError

        try:
            fix = self.db.fetchrow("SELECT successes, rollbacks, failures FROM fixes "
                                   "WHERE id = $1", fix_id)
        except QueryError:
            return counts  # no fixes table in this database: our own records only
        if fix is not None:
            for key, column in (("applied", "successes"), ("rolled_back", "rollbacks"),
                                ("failed", "failures")):
                counts[key] = max(counts.get(key, 0), int(fix[column] or 0))
        return counts

    def decided_suggestion(self, fix_or_error_id: str) -> dict[str, Any] | None:
        """The newest suggestion of an error id or a fix id that was already decided
        (applied, rejected, failed...): ``error_id``, ``fix_id``, ``status``, ``decided_at``;
        None when there is none."""
        row = self.db.fetchrow(
            """SELECT a.id AS error_id, a.fix_id, r.status, r.created_at AS decided_at
               FROM attempts a JOIN apply_results r ON r.error_id = a.id
               WHERE (a.id = $1 OR a.fix_id = $1) AND a.decision = 'suggest'
                 AND r.status <> 'suggested'
               ORDER BY r.created_at DESC LIMIT 1""", fix_or_error_id)
        return dict(row) if row is not None else None

    def quarantined(self, fingerprint: str, fix_id: str) -> str:
        """Why ``fix_id`` is quarantined for ``fingerprint`` now ('' when it is not): the
        pair's lifecycle state, or a rollback of the pair that the lifecycle may not have
        recorded yet (the apply stage reverts before the lifecycle stage sees the outcome)
        with no ``heal unquarantine`` of the pair after it."""
        row = self.db.fetchrow(
            """SELECT (SELECT state FROM fix_stats WHERE fingerprint = $1 AND fix_id = $2)
                          AS pair,
                      (SELECT r.error_id FROM apply_results r JOIN attempts a ON a.id = r.error_id
                        WHERE a.fingerprint = $1 AND r.fix_id = $2 AND r.status = 'rolled_back'
                          AND r.created_at > coalesce((SELECT max(t.ts) FROM lifecycle_transitions t
                                WHERE t.fingerprint = $1 AND t.fix_id = $2
                                  AND t.src = 'QUARANTINED'), '-infinity')
                        ORDER BY r.created_at DESC LIMIT 1) AS reverted""", fingerprint, fix_id)
        if row is None:
            return ""
        if row["reverted"] is not None:
            return f"rolled back for error {row['reverted']}"
        return "QUARANTINED for this fingerprint" if row["pair"] == "QUARANTINED" else ""

    def resolved_since(self, error_id: str, fingerprint: str, pattern_id: str,
                       seen: datetime | None = None, *, retry_pattern: str
                       ) -> dict[str, Any] | None:
        """The newest fix heal applied in the repository of ``error_id``'s attempt, for the
        same fingerprint or the same pattern, after that error was seen (its attempt's time,
        else ``seen``, the event's time): ``error_id``, ``fix_id``, ``commit``,
        ``applied_at``; None when there is none. A retry of the flaky pattern
        (``retry_pattern``, :data:`pipeline.model.FLAKY_PATTERN`) is no such fix: re-running
        changes nothing."""
        row = self.db.fetchrow(
            """SELECT r.error_id, r.fix_id, r.commit, r.created_at AS applied_at
               FROM apply_results r JOIN attempts a ON a.id = r.error_id
               WHERE r.status = 'applied' AND r.error_id <> $1
                 AND a.repo = (SELECT repo FROM attempts WHERE id = $1)
                 AND (a.fingerprint = $2 OR ($3 <> '' AND a.fix->>'pattern_id' = $3))
                 AND coalesce(a.fix->>'pattern_id', '') <> $5
                 AND r.created_at > coalesce((SELECT created_at FROM attempts WHERE id = $1),
                                             $4::timestamptz, 'infinity')
               ORDER BY r.created_at DESC LIMIT 1""",
            error_id, fingerprint, pattern_id, seen, retry_pattern)
        return dict(row) if row is not None else None

    def apply_result(self, error_id: str) -> dict[str, Any] | None:
        row = self.db.fetchrow("SELECT * FROM apply_results WHERE error_id = $1", error_id)
        return _decode(row) if row is not None else None

    def record_apply(self, error_id: str, result: dict[str, Any], *,
                     replace_suggested: bool = False) -> bool:
        """Store the apply result; False when one already exists (the done marker).

        ``replace_suggested`` lets ``heal apply`` turn a 'suggested' result into its outcome.
        """
        # the row's time becomes the decision's (heal apply / explain say when it was decided)
        conflict = ("DO UPDATE SET status = EXCLUDED.status, detail = EXCLUDED.detail, "
                    "created_at = now(), "
                    "branch = EXCLUDED.branch, commit = EXCLUDED.commit, "
                    "revert_commit = EXCLUDED.revert_commit, steps = EXCLUDED.steps "
                    "WHERE apply_results.status = 'suggested'"
                    if replace_suggested else "DO NOTHING")
        status = self.db.execute(
            f"""INSERT INTO apply_results (error_id, fix_id, status, detail, branch, commit,
                    revert_commit, steps) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb)
                ON CONFLICT (error_id) {conflict}""",
            error_id, result.get("fix_id", ""), result["status"], result.get("detail", ""),
            result.get("branch", ""), result.get("commit", ""), result.get("revert_commit", ""),
            _json(result.get("steps", [])),
        )
        return status.endswith(" 1")


def _decode(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("command", "preflight", "fix", "steps"):
        if isinstance(out.get(key), str):
            out[key] = orjson.loads(out[key])
    return out


#: the database :func:`store_for` opened per URL, kept for the life of the process (each one
#: closes itself at exit; ``storage.db.close_all`` may close it sooner, and is then reopened)
_DATABASES: dict[str, Database] = {}


def store_for(resources: dict[str, Any], settings: Any) -> AttemptStore | None:
    """The AttemptStore over ``resources["db"]``, or over a database opened (and migrated)
    once per process and opened again if it was closed since (a closed pool is never handed
    out); None, with a warning logged, when PostgreSQL cannot be reached (validation and apply
    still work; their records then live only in Redis and the streams).
    """
    import logging

    from pipeline.errors import HealError

    db = resources.get("db")
    if db is not None:
        return AttemptStore(db)
    from storage.engines import database_url, open_database

    try:
        key = database_url(settings)
        cached = _DATABASES.get(key)
        if cached is None or cached.closed:
            cached = _DATABASES[key] = open_database(settings)
    except HealError as exc:
        logging.getLogger(__name__).warning(
            "attempt records not stored in PostgreSQL: %s", exc)
        return None
    resources["db"] = cached
    return AttemptStore(cached)
