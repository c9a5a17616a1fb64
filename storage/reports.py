"""Read-only reports over the pipeline's tables for ``heal explain``, ``heal metrics`` and
``heal issues``, plus the two writes a review makes (a DRAFT pattern from an unmatched error,
an issue's status).

The tables belong to other stages (``0100_lookup.sql``, ``0200_attempts.sql``,
``0310_lifecycle.sql``); this module only reads them, except ``issue_queue.status`` and the
pattern a review creates. Every method raises :class:`~pipeline.errors.DatabaseUnavailable`
when PostgreSQL cannot be reached and ``QueryError`` when it rejects a statement.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import orjson

from pipeline.errors import UsageError
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.replayid import sql_counted, sql_original
from storage.db import Database

#: every column that holds a fingerprint, with its level, searched to resolve what a user typed
_FP_SOURCES = (
    ("occurrences", "fine", "fine"), ("occurrences", "coarse", "coarse"),
    ("issue_queue", "fine", "fine"), ("issue_queue", "coarse", "coarse"),
    ("attempts", "fingerprint", "fine"), ("fix_stats", "fingerprint", "fine"),
    ("lifecycle_outcomes", "fingerprint", "fine"), ("fingerprint_controls", "fingerprint", "fine"),
)


def _plain(row: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict: timestamps as ISO text, jsonb text decoded."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        out[key] = value
    return out


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [_plain(r) for r in rows]


def _decode_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _transition(body: Any) -> dict[str, Any] | None:
    """The ``data`` of a breaker transition's audit record text, or None when it is no JSON
    object whose ``data`` is an object of text values (a row changed by hand)."""
    try:
        record = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None
    data = record.get("data") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        return None
    fields = ("from", "to", "reason", "error_id")
    return data if all(isinstance(data.get(f, ""), str) for f in fields) else None


def verdict_error_text(verdict: Any) -> str:
    """The error text an attempt's verdict (the validator's event as JSON text) carries, or ''
    when it carries none: the verdict is no JSON, or JSON of another shape (a row changed by
    hand: ``error`` no object, its ``text`` no text), which is never fatal to the reader."""
    decoded = _decode_json(verdict)
    error = decoded.get("error") if isinstance(decoded, dict) else None
    text = error.get("text") if isinstance(error, dict) else None
    return text if isinstance(text, str) else ""


#: the namespace of the placeholder patterns ``heal issues review`` creates (``y``): the
#: pattern's id is derived from the error's fine fingerprint and its one fix is an escalation
#: under :func:`review_fix_id`; a pack may not name a fix there that heal would not create
REVIEW = "review."


def review_pattern_id(fine: str) -> str:
    """The id of the placeholder pattern a review creates for the fine fingerprint ``fine``."""
    return f"{REVIEW}{fine.split(':', 1)[-1]}"


def review_fix_id(pattern_id: str) -> str:
    """The id of the one (``escalate``) fix of a review's placeholder pattern."""
    return f"{pattern_id}.escalate"

class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- fingerprints ------------------------------------------------------------------
    def resolve(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """(fingerprint, level) pairs known anywhere that equal ``text`` or start with it
        (``fp-v8:`` may be left out). An exact match wins over prefixes."""
        prefixes = [text] if text.startswith("fp-") else [text, f"{ALGORITHM_VERSION}:{text}"]
        found: dict[str, str] = {}
        for table, column, level in _FP_SOURCES:
            for prefix in prefixes:
                rows = self.db.fetch(
                    f"SELECT DISTINCT {column} AS fp FROM {table}"  # noqa: S608 (fixed names)
                    f" WHERE {column} LIKE $1 || '%' AND {column} <> '' LIMIT $2",
                    prefix.replace("%", r"\%").replace("_", r"\_"), limit)
                for r in rows:
                    # a coarse hit never hides that the same hash is also a fine one
                    if found.get(r["fp"]) != "fine":
                        found[r["fp"]] = level
        exact = [(fp, lvl) for fp, lvl in found.items() if fp in prefixes]
        return exact or sorted(found.items())

    def fingerprint_of_error(self, error_id: str) -> str:
        """The fine fingerprint an error id was recorded under ('' when no table names it)."""
        value = self.db.fetchval(
            """SELECT fp FROM (
                 SELECT fine AS fp, 1 AS o FROM occurrences WHERE error_id = $1 AND fine <> ''
                 UNION ALL SELECT fingerprint, 2 FROM attempts
                   WHERE error_id = $1 AND fingerprint <> ''
                 UNION ALL SELECT fingerprint, 3 FROM lifecycle_outcomes
                   WHERE error_id = $1 AND fingerprint <> '') k ORDER BY o LIMIT 1""", error_id)
        return str(value or "")

    def fines_of_coarse(self, coarse: str) -> list[str]:
        rows = self.db.fetch(
            """SELECT fine FROM occurrences WHERE coarse = $1 AND fine <> ''
               UNION SELECT fine FROM issue_queue WHERE coarse = $1 ORDER BY 1""", coarse)
        return [r["fine"] for r in rows]

    # -- explain -----------------------------------------------------------------------
    def lookup_path(self, fines: list[str]) -> dict[str, Any]:
        """How lookups answered for these fingerprints: per (pattern, tier) counts and score
        range, the latest occurrences, and the fingerprints learned for a pattern."""
        paths = self.db.fetch(
            """SELECT pattern_id, tier, count(*) AS n, min(score) AS min_score,
                      max(score) AS max_score, min(seen_at) AS first_seen,
                      max(seen_at) AS last_seen, min(coarse) AS coarse
               FROM occurrences WHERE fine = ANY($1::text[])
               GROUP BY pattern_id, tier ORDER BY n DESC""", fines)
        learned = self.db.fetch(
            """SELECT fingerprint, level, pattern_id, hits, created_at FROM pattern_fingerprints
               WHERE fingerprint = ANY($1::text[]) ORDER BY created_at""", fines)
        return {"paths": _rows(paths), "learned": _rows(learned)}

    def patterns_and_fixes(self, pattern_ids: list[str]) -> list[dict[str, Any]]:
        rows = self.db.fetch(
            """SELECT p.id AS pattern_id, p.name, p.category AS pattern_category, p.source,
                      p.state AS pattern_state, f.id AS fix_id, f.kind, f.category, f.state,
                      f.title FROM patterns p LEFT JOIN fixes f ON f.pattern_id = p.id
               WHERE p.id = ANY($1::text[]) ORDER BY p.id, f.id""", pattern_ids)
        return _rows(rows)

    def fix_stats(self, fines: list[str]) -> list[dict[str, Any]]:
        return _rows(self.db.fetch(
            """SELECT fingerprint, fix_id, state, successes, failures, reverts,
                      first_success_at, last_used FROM fix_stats
               WHERE fingerprint = ANY($1::text[]) ORDER BY fix_id""", fines))

    def rankings(self, fines: list[str], limit: int = 3) -> list[dict[str, Any]]:
        rows = _rows(self.db.fetch(
            """SELECT fingerprint, chosen, draws, ts FROM fix_rankings
               WHERE fingerprint = ANY($1::text[]) ORDER BY id DESC LIMIT $2""", fines, limit))
        for r in rows:
            r["draws"] = _decode_json(r["draws"])
        return rows

    def attempts(self, fines: list[str], limit: int = 5) -> list[dict[str, Any]]:
        """The latest attempts with their votes, verification runs and apply result."""
        rows = _rows(self.db.fetch(
            """SELECT id, error_id, fingerprint, fix_id, attempt, repo, decision, reason,
                      category, mode, branch, commit, preflight, verdict, created_at
               FROM attempts
               WHERE fingerprint = ANY($1::text[]) ORDER BY created_at DESC LIMIT $2""",
            fines, limit))
        for r in rows:
            r["preflight"] = _decode_json(r["preflight"])
            r["error_text"] = verdict_error_text(r.pop("verdict"))
            r["votes"] = _rows(self.db.fetch(
                """SELECT judge, approve, reason, cost_usd FROM attempt_votes
                   WHERE attempt_id = $1 ORDER BY judge""", r["id"]))
            r["runs"] = _rows(self.db.fetch(
                """SELECT phase, name, argv, exit_code, timed_out, duration_s, tail
                   FROM verification_runs WHERE attempt_id = $1 ORDER BY phase, name""",
                r["id"]))
            for run in r["runs"]:
                run["argv"] = _decode_json(run["argv"])
            applied = self.db.fetchrow(
                """SELECT status, detail, branch, commit, revert_commit, created_at
                   FROM apply_results WHERE error_id = $1""", r["error_id"])
            r["apply"] = None if applied is None else _plain(applied)
        return rows

    def outcomes(self, fines: list[str], limit: int = 10) -> list[dict[str, Any]]:
        return _rows(self.db.fetch(
            # (the repository is the attempt's, the work tree the validator resolved; an
            # outcome without an attempt, an escalation, shows the one its error event named,
            # kept with the outcome since 0350_outcome_repo.sql: '' for one recorded before)
            """SELECT o.error_id, o.fix_id, o.status, o.workflow, o.step, o.commit, o.ok, o.ts,
                      coalesce((SELECT a.repo FROM attempts a WHERE a.error_id = o.error_id
                                AND a.repo <> '' LIMIT 1), nullif(o.repo, ''), '') AS repo
               FROM lifecycle_outcomes o WHERE o.fingerprint = ANY($1::text[])
               ORDER BY o.ts DESC LIMIT $2""", fines, limit))

    def transitions(self, fines: list[str]) -> list[dict[str, Any]]:
        return _rows(self.db.fetch(
            """SELECT fingerprint, fix_id, src, dst, reason, ts FROM lifecycle_transitions
               WHERE fingerprint = ANY($1::text[]) ORDER BY id DESC""", fines))

    def breaker_trips(self, fines: list[str], limit: int = 20,
                      problems: list[str] | None = None) -> list[dict[str, Any]]:
        """Breaker transitions a rollback of these fingerprints made (newest first), from the
        audit log's table: a transition names the error whose revert made it (``error_id``;
        transitions audited before it did are not found).

        The table's ``body`` is text (the exact JSON that was hashed), so it is not cast in
        SQL, where one row changed by hand into something that is no JSON would fail the query
        for every fingerprint: rows are narrowed by the text the audit log writes for the
        error id (:func:`pipeline.guardrails.audit.canonical`) and decoded here; a row that
        names one of these rollbacks but does not decode to a transition is skipped and named
        in ``problems``."""
        ids = [r["error_id"] for r in self.db.fetch(
            """SELECT error_id FROM lifecycle_outcomes
               WHERE fingerprint = ANY($1::text[]) AND status = 'rolled_back'
               GROUP BY error_id ORDER BY max(ts) DESC LIMIT 500""", fines)]
        if not ids:
            return []
        needles = [f'"error_id":{json.dumps(i, ensure_ascii=False)}' for i in ids]
        rows = self.db.fetch(
            """SELECT a.seq, a.ts, a.subject AS scope, a.body FROM audit_log a
               WHERE a.kind = 'breaker.transition'
                 AND EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE strpos(a.body, n) > 0)
               ORDER BY a.seq DESC LIMIT $2""", needles, limit * 5)
        wanted = set(ids)
        out: list[dict[str, Any]] = []
        for r in rows:
            data = _transition(r["body"])
            if data is None:
                if problems is not None:
                    problems.append(
                        f"audit_log row seq {r['seq']} (breaker.transition at "
                        f"{str(r['scope'])[:200]}) skipped: its body is not the JSON of a "
                        "transition (changed by hand? `heal audit verify` names edited "
                        "records)")
                continue
            if str(data.get("error_id", "")) not in wanted:
                continue  # (its text quotes the id elsewhere: another error's transition)
            out.append({"ts": _plain(r)["ts"], "scope": r["scope"],
                        "from": str(data.get("from", "")), "to": str(data.get("to", "")),
                        "reason": str(data.get("reason", "")),
                        "error_id": str(data.get("error_id", ""))})
            if len(out) == limit:
                break
        return out

    def controls(self, fps: list[str]) -> list[dict[str, Any]]:
        return _rows(self.db.fetch(
            """SELECT fingerprint, ignored, reason, updated_at FROM fingerprint_controls
               WHERE fingerprint = ANY($1::text[])""", fps))

    def issues_for(self, fines: list[str]) -> list[dict[str, Any]]:
        return _rows(self.db.fetch(
            """SELECT fine, coarse, count, first_seen, last_seen, sample, ended, status
               FROM issue_queue WHERE fine = ANY($1::text[]) ORDER BY count DESC""", fines))

    # -- issue queue -------------------------------------------------------------------
    def open_issues(self, limit: int = 100,
                    older_than: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Open groups, most frequent first; ``older_than``: only groups last seen before."""
        return _rows(self.db.fetch(
            """SELECT fine, coarse, count, first_seen, last_seen, sample, ended, status
               FROM issue_queue WHERE status = 'open'
                 AND ($2::timestamptz IS NULL OR last_seen < $2)
               ORDER BY count DESC, last_seen DESC LIMIT $1""", limit, older_than))

    def open_issue_count(self) -> int:
        """Open fine fingerprints in the issue queue (what ``open_issues`` reads from)."""
        return int(self.db.fetchval(
            "SELECT count(*) FROM issue_queue WHERE status = 'open'") or 0)

    def create_draft_pattern(self, issue: dict[str, Any], pattern_id: str, message: str) -> None:
        """A DRAFT pattern (source ``review``) with one DRAFT ``escalate`` fix, the issue's fine
        fingerprint mapped to it (``pattern_fingerprints``; the lookup offers it once a person
        completes it into a catalog seed), and the issue marked ``pattern``; all in one
        transaction. A placeholder already created by a review is kept as it is.

        Raises:
            UsageError: a row under the placeholder's ids was not created by a review (a
                pattern of another source, or the fix id held as another fix); nothing is
                stored."""
        sample = str(issue.get("sample", ""))
        headline = next((ln.strip() for ln in reversed(sample.splitlines()) if ln.strip()), "")

        fix_id = review_fix_id(pattern_id)

        async def go(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                # the review adopts no row it did not create: a pattern under its id from
                # elsewhere (an import from before packs were refused review. ids), or its
                # fix id held as another fix, would stand in for the placeholder (its name,
                # rules, message) with the error's fingerprint mapped to it
                held = await conn.fetchval(
                    "SELECT source FROM patterns WHERE id = $1 FOR UPDATE", pattern_id)
                fix = await conn.fetchrow(
                    "SELECT pattern_id, kind FROM fixes WHERE id = $1", fix_id)
                if (held is not None and held != "review") or (
                        fix is not None and (fix["pattern_id"] != pattern_id
                                             or fix["kind"] != "escalate")):
                    whose = (f"pattern {pattern_id} is held here with source {held}"
                             if held is not None and held != "review" else
                             f"fix {fix_id} is held here by pattern {fix['pattern_id']} "
                             f"({fix['kind']})" if fix is not None else "")
                    raise UsageError(
                        f"{issue['fine']}: {whose}, not created by heal issues review; "
                        "nothing was stored and the error stays open: teach it a fix "
                        "instead (heal learn, or c/m/p/e in heal issues review), or remove "
                        f"that pattern from PostgreSQL (heal export shows it)")
                await conn.execute(
                    """INSERT INTO patterns (id, name, category, description, examples, source,
                                             state, first_seen, last_seen)
                       VALUES ($1, $2, 'RISKY', $3, $4::jsonb, 'review', 'DRAFT', $5, $6)
                       ON CONFLICT (id) DO NOTHING""",
                    pattern_id, headline[:120] or pattern_id,
                    f"created by heal issues review from {issue['fine']}",
                    orjson.dumps([sample[-2000:]]).decode(),
                    _ts(issue.get("first_seen")), _ts(issue.get("last_seen")))
                await conn.execute(
                    """INSERT INTO fixes (id, pattern_id, kind, category, state, title,
                                          explanation, template)
                       VALUES ($1, $2, 'escalate', 'RISKY', 'DRAFT', $3, $4, $5::jsonb)
                       ON CONFLICT (id) DO NOTHING""",
                    fix_id, pattern_id, "escalate to a human", message,
                    orjson.dumps({"message": message}).decode())
                await conn.execute(
                    """INSERT INTO pattern_fingerprints (fingerprint, level, pattern_id, source)
                       VALUES ($1, 'fine', $2, 'taught') ON CONFLICT DO NOTHING""",
                    issue["fine"], pattern_id)
                await conn.execute(
                    "UPDATE issue_queue SET status = 'pattern' WHERE fine = $1", issue["fine"])

        self.db.run(go)

    # -- metrics -----------------------------------------------------------------------
    def outcome_counts(self, since: dt.datetime) -> dict[str, Any]:
        """Per-error ledger of the window: outcomes by status, how many errors had a pattern
        match (an ``occurrences`` row) and the repair times of applied fixes. An error counts
        once by its original id: a replay copy counts only when its original has no outcome
        of its own, all copies of one original as one (``pipeline/replayid.py``)."""
        counted = f"""SELECT o.*, {sql_original('o.error_id')} AS original
                      FROM lifecycle_outcomes o
                      WHERE o.ts >= $1 AND {sql_counted('o', 'lifecycle_outcomes')}"""
        errors = self.db.fetchval(
            f"SELECT count(DISTINCT original) FROM ({counted}) k", since)  # noqa: S608
        detected = self.db.fetchval(
            f"""SELECT count(DISTINCT k.original) FROM ({counted}) k
                JOIN occurrences c ON c.error_id = k.error_id""", since)  # noqa: S608
        by_status = {r["status"]: r["n"] for r in self.db.fetch(
            f"""SELECT status, count(*) AS n FROM (
                   SELECT DISTINCT ON (original) original, status FROM ({counted}) k
                   ORDER BY original, ts DESC) last GROUP BY status""", since)}  # noqa: S608
        repair = [float(r["s"]) for r in self.db.fetch(
            f"""SELECT extract(epoch FROM k.ts - c.seen_at) AS s FROM ({counted}) k
               JOIN occurrences c ON c.error_id = k.error_id
               WHERE k.status = 'applied'""", since) if r["s"] is not None]  # noqa: S608
        return {"errors": int(errors or 0), "detected": int(detected or 0),
                "by_status": by_status, "repair_seconds": repair}

    def unmatched_fingerprints(self, since: dt.datetime) -> int:
        """Fine fingerprints of the issue queue still open (not learned, not dismissed) and
        last seen in the window: the population `heal issues list` and `heal report` show."""
        return int(self.db.fetchval(
            "SELECT count(*) FROM issue_queue WHERE status = 'open' AND last_seen >= $1",
            since) or 0)

    def unmatched_in_window(self, since: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """Open issue-queue rows last seen in the window, most frequent first, with their
        samples (grouped by mined template in ``pipeline.operator.groups``)."""
        return _rows(self.db.fetch(
            """SELECT fine, count, first_seen, last_seen, sample, ended, status FROM issue_queue
               WHERE status = 'open' AND last_seen >= $1 ORDER BY count DESC, fine LIMIT $2""",
            since, limit))

    def judge_cost_by_day(self, since: dt.datetime) -> dict[str, float]:
        rows = self.db.fetch(
            """SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
                      sum(cost_usd) AS usd FROM attempt_votes WHERE created_at >= $1
               GROUP BY 1 ORDER BY 1""", since)
        return {r["day"]: float(r["usd"] or 0.0) for r in rows}

    def pattern_growth(self, since: dt.datetime) -> dict[str, Any]:
        by_source = {r["source"]: int(r["n"]) for r in self.db.fetch(
            "SELECT source, count(*) AS n FROM patterns WHERE created_at >= $1 GROUP BY source",
            since)}
        return {
            "patterns_total": int(self.db.fetchval("SELECT count(*) FROM patterns") or 0),
            "patterns_new": by_source,
            "fingerprints_learned": int(self.db.fetchval(
                "SELECT count(*) FROM pattern_fingerprints WHERE created_at >= $1", since) or 0),
        }

    def top_errors(self, since: dt.datetime, limit: int = 10) -> list[dict[str, Any]]:
        matched = self.db.fetch(
            f"""SELECT p.id AS pattern_id, p.name,
                      count(DISTINCT {sql_original('o.error_id')}) AS count,
                      max(o.seen_at) AS last_seen
               FROM occurrences o JOIN patterns p ON p.id = o.pattern_id
               WHERE o.seen_at >= $1 AND {sql_counted('o', 'occurrences')}
               GROUP BY p.id, p.name ORDER BY count DESC, p.id LIMIT $2""",  # noqa: S608
            since, limit)
        return _rows(matched)



def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime) or value is None:
        return value
    return dt.datetime.fromisoformat(str(value))
