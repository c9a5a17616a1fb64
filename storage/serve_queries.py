"""Read-only queries behind ``heal serve`` (patterns with their fixes and statistics, the
lifecycle funnel, top errors, pending approvals, apply counts).

Every method raises :class:`~pipeline.errors.DatabaseUnavailable` when PostgreSQL cannot be
reached and :class:`~pipeline.errors.QueryError` when a statement fails (from
:mod:`storage.db`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import orjson

from pipeline.lifecycle.flakiness import determinism_score, evidence
from pipeline.replayid import sql_counted, sql_original

#: the lifecycle states, in funnel order (pipeline.model.LifecycleState values)
FUNNEL = ("DRAFT", "ACTIVE", "AUTOMATED", "DEPRECATED", "QUARANTINED")


class _DB(Protocol):
    def fetch(self, sql: str, *args: Any) -> list[Any]: ...
    def fetchrow(self, sql: str, *args: Any) -> Any: ...


def _plain(value: Any) -> Any:
    """A JSON-friendly value: timestamps as ISO text, jsonb text decoded."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _row(record: Any, json_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {k: _plain(v) for k, v in dict(record).items()}
    for key in json_keys:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = orjson.loads(out[key])
    return out


class ServeQueries:
    def __init__(self, db: _DB) -> None:
        self.db = db

    def patterns(self, limit: int = 500) -> list[dict[str, Any]]:
        """Patterns (most seen first), each with its fixes, their lifecycle state and counters,
        and the number of (fingerprint, fix) pairs per lifecycle state."""
        patterns = [
            _row(r) for r in self.db.fetch(
                """SELECT id, name, category, description, source, state, occurrences,
                          first_seen, last_seen
                   FROM patterns ORDER BY occurrences DESC, id LIMIT $1""", limit)
        ]
        fixes: dict[str, list[dict[str, Any]]] = {}
        for r in self.db.fetch(
                """SELECT f.id, f.pattern_id, f.kind, f.category, f.state, f.title,
                          f.attempts, f.successes, f.failures, f.rollbacks, f.last_used,
                          COALESCE(s.pairs, '{}'::jsonb) AS pair_states
                   FROM fixes f LEFT JOIN (
                       SELECT fix_id, jsonb_object_agg(state, n) AS pairs FROM (
                           SELECT fix_id, state, count(*) AS n FROM fix_stats
                           GROUP BY fix_id, state) g GROUP BY fix_id) s ON s.fix_id = f.id
                   ORDER BY f.pattern_id, f.id"""):
            row = _row(r, ("pair_states",))
            fixes.setdefault(row["pattern_id"], []).append(row)
        for pattern in patterns:
            pattern["fixes"] = fixes.get(pattern["id"], [])
        return patterns

    def funnel(self) -> dict[str, dict[str, int]]:
        """Counts per lifecycle state: of fixes (``fixes.state``) and of (fingerprint, fix)
        pairs (``fix_stats.state``); every state present, zero when empty."""
        out: dict[str, dict[str, int]] = {}
        for name, sql in (("fixes", "SELECT state, count(*) AS n FROM fixes GROUP BY state"),
                          ("pairs", "SELECT state, count(*) AS n FROM fix_stats GROUP BY state")):
            counts = {state: 0 for state in FUNNEL}
            for r in self.db.fetch(sql):
                counts[str(r["state"])] = int(r["n"])
            out[name] = counts
        return out

    def top_patterns(self, limit: int = 10) -> list[dict[str, Any]]:
        """Most frequent known patterns (occurrences)."""
        rows = self.db.fetch(
            """SELECT 'pattern' AS kind, id AS key, name AS label, occurrences AS count,
                      last_seen FROM patterns WHERE occurrences > 0
               ORDER BY count DESC, key LIMIT $1""", limit)
        return [_row(r) for r in rows]

    def open_issue_rows(self, limit: int) -> list[dict[str, Any]]:
        """Open issue-queue rows with their samples, most frequent first (grouped by mined
        template in ``pipeline.operator.groups``)."""
        rows = self.db.fetch(
            """SELECT fine, count, first_seen, last_seen, sample, ended FROM issue_queue
               WHERE status = 'open' ORDER BY count DESC, fine LIMIT $1""", limit)
        return [_row(r) for r in rows]

    def issues(self, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.fetch(
            """SELECT fine, coarse, count, first_seen, last_seen, sample, status
               FROM issue_queue WHERE ($1 = 'all' OR status = $1)
               ORDER BY count DESC, last_seen DESC LIMIT $2""", status, limit)
        return [_row(r) for r in rows]

    def approvals(self, categories: tuple[str, ...], limit: int = 200) -> list[dict[str, Any]]:
        """Verified suggestions nobody applied or rejected yet, newest first."""
        rows = self.db.fetch(
            """SELECT a.id, a.fingerprint, a.fix_id, a.category, a.mode, a.reason, a.repo,
                      a.command, a.branch, a.commit, a.created_at,
                      a.fix->>'title' AS title, a.fix->>'kind' AS kind, a.fix AS fix
               FROM attempts a LEFT JOIN apply_results r ON r.error_id = a.id
               WHERE a.decision = 'suggest' AND a.verdict <> ''
                 AND (r.status IS NULL OR r.status = 'suggested')
                 AND a.category = ANY($1::text[])
               ORDER BY a.created_at DESC LIMIT $2""", list(categories), limit)
        return [_row(r, ("command", "fix")) for r in rows]

    def apply_counts(self) -> dict[str, int]:
        """Apply results per status (applied, rolled_back, failed, suggested, ...), an error
        once under its original id: a replay copy's result only when its original has none,
        the newest of all copies of one original as one (``pipeline/replayid.py``, as
        ``heal report`` counts outcomes)."""
        rows = self.db.fetch(
            f"""SELECT status, count(*) AS n FROM (
                   SELECT DISTINCT ON ({sql_original('a.error_id')}) a.status
                   FROM apply_results a WHERE {sql_counted('a', 'apply_results')}
                   ORDER BY {sql_original('a.error_id')}, a.created_at DESC, a.error_id DESC
               ) last GROUP BY status""")  # noqa: S608 (fixed names)
        return {str(r["status"]): int(r["n"]) for r in rows}

    def open_issues(self) -> int:
        return int(self.db.fetchrow(
            "SELECT count(*) AS n FROM issue_queue WHERE status = 'open'")["n"])

    def fingerprints(self, limit: int = 200) -> list[dict[str, Any]]:
        """Fingerprints mapped to a pattern (learned or seeded), most hit first."""
        rows = self.db.fetch(
            """SELECT fingerprint, level, pattern_id, hits, created_at
               FROM pattern_fingerprints ORDER BY hits DESC, created_at DESC LIMIT $1""", limit)
        out = [_row(r) for r in rows]
        scores = self.determinism([r["fingerprint"] for r in out if r["level"] == "fine"])
        for r in out:
            r["determinism"] = scores.get(r["fingerprint"]) if r["level"] == "fine" else None
        return out

    def determinism(self, fines: list[str]) -> dict[str, float]:
        """Determinism score per fine fingerprint (1.0 without evidence), in one query."""
        rows = self.db.fetch(
            """SELECT fingerprint, commit, ok, status, extract(epoch FROM ts) AS t
               FROM lifecycle_outcomes WHERE fingerprint = ANY($1::text[]) ORDER BY ts""",
            fines)
        results: dict[str, list[tuple[str, bool]]] = {f: [] for f in fines}
        times: dict[str, list[float]] = {f: [] for f in fines}
        for r in rows:
            fp = r["fingerprint"]
            times[fp].append(float(r["t"]))
            results[fp] += evidence(r["commit"], r["ok"], r["status"])
        return {fp: determinism_score(results[fp], times[fp]) for fp in fines}

    def learning(self, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """Recent lifecycle transitions (with their reasons) and learned records, newest
        first."""
        transitions = self.db.fetch(
            """SELECT fingerprint, fix_id, src, dst, reason, ts FROM lifecycle_transitions
               ORDER BY id DESC LIMIT $1""", limit)
        learnings = self.db.fetch(
            """SELECT kind, subject, data, created_at FROM learnings
               ORDER BY id DESC LIMIT $1""", limit)
        return {"transitions": [_row(r) for r in transitions],
                "learnings": [_row(r, ("data",)) for r in learnings]}
