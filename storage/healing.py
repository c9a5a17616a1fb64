"""Read-only queries of ``heal report``: the healings and escalations of a window with their
error, fix, tier, time to fix and verification, and the lifecycle moves (graduations,
quarantines). The tables belong to other stages; this module only reads them.

Every method raises DatabaseUnavailable / QueryError like every repository.

An attempt's ``verdict`` is text (the validator's event as JSON): it is decoded here, never
cast in SQL, where one row changed by hand into text that is no JSON would fail the query for
every healing of the window; such a row is named in ``problems`` and its healing still shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from pipeline.replayid import sql_counted, sql_original
from storage.db import Database
from storage.reports import verdict_error_text

#: an error counts once by its original id: a replay copy only when its original has no
#: outcome of its own (``pipeline/replayid.py``)
_HEALINGS = f"""
SELECT DISTINCT ON ({sql_original('o.error_id')}) o.error_id, o.fix_id, o.fingerprint,
       o.status, o.ts, o.workflow, o.step, c.tier, c.pattern_id, c.score,
       extract(epoch FROM o.ts - c.seen_at) AS seconds,
       a.decision, a.reason, a.category, a.mode, a.branch, a.commit,
       a.verdict,
       (SELECT sample FROM issue_queue q WHERE q.fine = o.fingerprint) AS sample
FROM lifecycle_outcomes o
LEFT JOIN occurrences c ON c.error_id = o.error_id
LEFT JOIN attempts a ON a.id = o.error_id
WHERE o.ts >= $1 AND o.status = ANY($2::text[]) AND {sql_counted('o', 'lifecycle_outcomes')}
ORDER BY {sql_original('o.error_id')}, o.ts DESC
"""  # noqa: S608 (fixed names)


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = value.isoformat()
    return out


def _text(row: dict[str, Any], problems: list[str] | None) -> str | None:
    """The error text of ``row``'s attempt verdict (popped from the row), None without one."""
    verdict = row.pop("verdict", None) or ""
    if not verdict:
        return None
    try:
        decoded = orjson.loads(verdict)
    except orjson.JSONDecodeError:
        if problems is not None:
            problems.append(
                f"attempts row {row['error_id']!r}: its verdict is not JSON (changed by "
                "hand?), so its error text is not shown; the healing is")
        return None
    return verdict_error_text(decoded) or None


class HealingReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    def outcomes(self, since: dt.datetime, statuses: tuple[str, ...], limit: int = 500,
                 problems: list[str] | None = None) -> list[dict[str, Any]]:
        """The latest outcome per error of the window with one of ``statuses``, newest
        first, with its lookup (tier, pattern), attempt (verification) and error text (None
        without one). An attempt whose verdict is no JSON is named in ``problems``."""
        rows = self.db.fetch(_HEALINGS, since, list(statuses))
        out = sorted((_plain(r) for r in rows), key=lambda r: r["ts"], reverse=True)[:limit]
        for row in out:
            row["text"] = _text(row, problems)
        return out

    def transitions(self, since: dt.datetime) -> list[dict[str, Any]]:
        rows = self.db.fetch(
            """SELECT fingerprint, fix_id, src, dst, reason, ts FROM lifecycle_transitions
               WHERE ts >= $1 ORDER BY id""", since)
        return [_plain(r) for r in rows]

    def top_unmatched(self, since: dt.datetime, limit: int = 10) -> list[dict[str, Any]]:
        """Open issue-queue rows (fine fingerprints) seen in the window, most frequent first
        (grouped by mined template by the caller)."""
        rows = self.db.fetch(
            """SELECT fine, count, first_seen, last_seen, sample, ended FROM issue_queue
               WHERE status = 'open' AND last_seen >= $1
               ORDER BY count DESC, fine LIMIT $2""", since, limit)
        return [_plain(r) for r in rows]
