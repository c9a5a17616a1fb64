"""PostgreSQL repository of the lifecycle: outcomes (once per event id), per (fingerprint,
fix) statistics and state, transitions, Thompson rankings, ignored fingerprints and precedent.

Every method runs in one transaction and row-locks the pair it changes, so concurrent
lifecycle workers never lose an update. ``fixes.state`` (the lookup stage's table) mirrors the
latest state of the fix.

Raises (every method): DatabaseUnavailable / QueryError from :class:`storage.db.Database`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.lifecycle.flakiness import determinism_score, evidence, is_flaky
from pipeline.lifecycle.graduation import (
    Decision,
    LifecyclePolicy,
    Transition,
    after_outcome,
    check,
    outcome_kind,
    when_unused,
)
from pipeline.lifecycle.posterior import Posterior
from pipeline.lifecycle.precedent import StepFailure
from pipeline.lifecycle.ranking import Draw
from pipeline.model import LifecycleState
from pipeline.replayid import replay_of, sql_original
from storage.db import Pending

Conn = Any  # asyncpg.Connection


@dataclass(frozen=True)
class OutcomeRecord:
    event_id: str
    error_id: str
    fingerprint: str
    fix_id: str
    status: str
    workflow: str = ""
    step: str = ""
    commit: str = ""
    #: False: a success on a flaky fingerprint, recorded as evidence but never credited to
    #: the fix (it would graduate a fix on luck)
    credit: bool = True
    #: the repository the error event names (``repo.path``; '' when it names none): what
    #: ``heal explain`` shows for an outcome no attempt was made for
    repo: str = ""


@dataclass(frozen=True)
class RecordResult:
    new: bool  # False: this event id was already recorded (redelivery) and finished
    kind: str | None = None  # "success" | "failure" | "revert" | None (not an attempt)
    state: LifecycleState | None = None
    stats: Posterior = field(default_factory=Posterior)
    transition: Transition | None = None
    #: True: recorded by an earlier delivery whose after-steps did not finish (an outage);
    #: the counts are not made again, the after-steps are resumed
    resumed: bool = False
    #: True: a replay copy's attempt of a fix its original (or another copy of it) already
    #: attempted on this fingerprint: recorded, never counted again (pipeline/replayid.py)
    repeat: bool = False

    def to_json(self) -> str:
        t = self.transition
        return json.dumps({
            "kind": self.kind, "repeat": self.repeat,
            "state": self.state.value if self.state else None,
            "successes": self.stats.successes, "failures": self.stats.failures,
            "transition": None if t is None else {
                "fingerprint": t.fingerprint, "fix_id": t.fix_id, "src": t.src.value,
                "dst": t.dst.value, "reason": t.reason}})

    @classmethod
    def resumed_from(cls, raw: Any) -> RecordResult:
        body = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw or {})
        t = body.get("transition")
        return cls(True, body.get("kind"),
                   LifecycleState(body["state"]) if body.get("state") else None,
                   Posterior(body.get("successes", 0), body.get("failures", 0)),
                   None if not t else Transition(t["fingerprint"], t["fix_id"],
                                                 LifecycleState(t["src"]),
                                                 LifecycleState(t["dst"]), t["reason"]),
                   resumed=True, repeat=bool(body.get("repeat")))


async def _fixes_table(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('fixes') IS NOT NULL"))


async def _initial_state(conn: Conn, fix_id: str) -> LifecycleState:
    """A new pair starts where the fix is (``fixes.state``), but never AUTOMATED: graduation
    is earned per fingerprint. A pair born AUTOMATED with no attempts was demoted by its
    first success (the bound of Beta(2, 1) is below the threshold), and the demotion,
    mirrored into ``fixes.state``, withdrew the fix from the fingerprint that earned it."""
    if await _fixes_table(conn):
        state = await conn.fetchval("SELECT state FROM fixes WHERE id = $1", fix_id)
        if state == LifecycleState.AUTOMATED:
            return LifecycleState.ACTIVE
        if state in LifecycleState.__members__:
            return LifecycleState(state)
    return LifecycleState.DRAFT


async def _counted_before(conn: Conn, rec: OutcomeRecord) -> bool:
    """True when ``rec`` is a replay copy's attempt of a fix whose original error (or another
    copy of it) already has an attempt of that fix on that fingerprint recorded.

    The pair's statistics count an error once, under its original id (pipeline/replayid.py):
    a copy applied or rolled back after pre-flight's dedupe window would otherwise graduate
    or quarantine the pair a second time on the same error. An error that is no copy always
    counts, so an event naming itself a copy of another error changes only its own count.
    """
    original = replay_of(rec.error_id)
    if original is None:
        return False
    # the pair's row lock orders this with the outcome of another copy counted concurrently
    await conn.execute("SELECT 1 FROM fix_stats WHERE fingerprint = $1 AND fix_id = $2"
                       " FOR UPDATE", rec.fingerprint, rec.fix_id)
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM lifecycle_outcomes WHERE fingerprint = $1"
        " AND fix_id = $2 AND event_id <> $3 AND ok IS NOT NULL"
        f" AND {sql_original('error_id')} = $4)",
        rec.fingerprint, rec.fix_id, rec.event_id, original))


async def _apply(conn: Conn, fp: str, fix_id: str, src: LifecycleState,
                 decision: Decision) -> Transition:
    check(src, decision.dst)
    await conn.execute(
        "UPDATE fix_stats SET state = $3, updated_at = now()"
        " WHERE fingerprint = $1 AND fix_id = $2",
        fp, fix_id, decision.dst.value)
    await conn.execute(
        "INSERT INTO lifecycle_transitions (fingerprint, fix_id, src, dst, reason)"
        " VALUES ($1, $2, $3, $4, $5)", fp, fix_id, src.value, decision.dst.value, decision.reason)
    if await _fixes_table(conn):
        await conn.execute("UPDATE fixes SET state = $2, updated_at = now() WHERE id = $1",
                           fix_id, decision.dst.value)
    return Transition(fp, fix_id, src, decision.dst, decision.reason)


_COUNTER = {"success": "successes", "failure": "failures", "revert": "reverts"}
#: an outcome where a fix was tried (SQL over lifecycle_outcomes)
_TRIED = ("(ok IS NOT NULL OR status IN ('rolled_back', 'failed')"
          " OR (status = 'escalated' AND fix_id <> '' AND EXISTS (SELECT 1 FROM attempts t"
          " WHERE t.id = lifecycle_outcomes.error_id AND t.decision IN ('apply', 'suggest'))))")
#: newest outcomes that leave an error unfixed (pipeline.lifecycle.escalate.UNRESOLVED)
UNRESOLVED_STATUSES = frozenset({"rolled_back", "escalated", "failed", "skipped"})
_FIX_COUNTER = {"success": "successes", "failure": "failures", "revert": "rollbacks"}


class LifecycleStore:
    def __init__(self, db: Any) -> None:
        self.db = db

    def record_outcome(self, rec: OutcomeRecord, policy: LifecyclePolicy, *,
                       resumable: bool = False) -> RecordResult:
        """Record one outcome, update the pair's statistics and apply the transition it causes.

        Idempotent: an event id seen before returns ``RecordResult(new=False)``. With
        ``resumable`` the outcome stays unfinished (with its result) until :meth:`finish`:
        a redelivery before that returns the stored result with ``resumed=True`` (the counts
        are not made twice), so the caller's after-steps are not lost to an outage. A replay
        copy's attempt of a fix its original already attempted on the fingerprint is recorded
        with ``repeat=True`` and counts nowhere (see :func:`_counted_before`).
        """
        kind = outcome_kind(rec.status)
        ok = None if kind is None else kind == "success"
        if kind == "success" and not rec.credit:
            kind = None

        async def go(conn: Conn) -> RecordResult:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, fix_id,"
                    " status, workflow, step, commit, ok, finished, repo)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
                    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    rec.event_id, rec.error_id, rec.fingerprint, rec.fix_id, rec.status,
                    rec.workflow, rec.step, rec.commit, ok, not resumable, rec.repo)
                if inserted is None:
                    row = await conn.fetchrow(
                        "SELECT finished, result FROM lifecycle_outcomes WHERE event_id = $1",
                        rec.event_id)
                    if row is not None and not row["finished"]:
                        return RecordResult.resumed_from(row["result"])
                    return RecordResult(new=False)
                if kind is None or not rec.fix_id:
                    result = RecordResult(new=True)
                elif await _counted_before(conn, rec):
                    result = RecordResult(new=True, repeat=True)
                else:
                    result = await self._count(conn, rec, kind, policy)
                if resumable:
                    await conn.execute(
                        "UPDATE lifecycle_outcomes SET result = $2::jsonb WHERE event_id = $1",
                        rec.event_id, result.to_json())
                return result

        result: RecordResult = self.db.run(go)
        return result

    def finish(self, event_id: str) -> None:
        """The after-steps of a resumable outcome all ran: a redelivery is now a no-op."""
        self.db.execute("UPDATE lifecycle_outcomes SET finished = true, result = NULL"
                        " WHERE event_id = $1", event_id)

    async def _count(self, conn: Conn, rec: OutcomeRecord, kind: str,
                     policy: LifecyclePolicy) -> RecordResult:
        fp, fix_id = rec.fingerprint, rec.fix_id
        await conn.execute(
            "INSERT INTO fix_stats (fingerprint, fix_id, state) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", fp, fix_id, (await _initial_state(conn, fix_id)).value)
        col = _COUNTER[kind]
        row = await conn.fetchrow(
            f"UPDATE fix_stats SET {col} = {col} + 1, last_used = now(), updated_at = now(),"
            " first_success_at = CASE WHEN $3 AND first_success_at IS NULL THEN now()"
            " ELSE first_success_at END"
            " WHERE fingerprint = $1 AND fix_id = $2 RETURNING state, successes, failures, reverts",
            fp, fix_id, kind == "success")
        if await _fixes_table(conn):  # the fix's own totals (export, /api/patterns)
            total = _FIX_COUNTER[kind]
            await conn.execute(
                f"UPDATE fixes SET attempts = attempts + 1, {total} = {total} + 1,"
                " last_used = now(), updated_at = now() WHERE id = $1", fix_id)
        state = LifecycleState(row["state"])
        stats = Posterior(row["successes"], row["failures"] + row["reverts"])
        decision = after_outcome(state, stats, kind, policy)
        transition = None
        if decision is not None:
            transition = await _apply(conn, fp, fix_id, state, decision)
            state = decision.dst
        return RecordResult(True, kind, state, stats, transition)

    # --- manual transitions -----------------------------------------------------------
    def unquarantine(self, target: str, reason: str = "heal unquarantine") -> list[Transition]:
        """QUARANTINED -> DRAFT for every pair of fingerprint (or fix id) ``target``; the
        fix must pass validation again before it is applied. ``reason`` (with who lifted it)
        is the transition's."""
        async def go(conn: Conn) -> list[Transition]:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT fingerprint, fix_id FROM fix_stats WHERE (fingerprint = $1 OR"
                    " fix_id = $1) AND state = 'QUARANTINED' ORDER BY 1, 2 FOR UPDATE", target)
                decision = Decision(LifecycleState.DRAFT, reason)
                return [await _apply(conn, r["fingerprint"], r["fix_id"],
                                     LifecycleState.QUARANTINED, decision) for r in rows]
        result: list[Transition] = self.db.run(go)
        return result

    def quarantined_offers(self, fingerprint: str) -> list[str]:
        """Fixes held back from ``fingerprint`` by their own QUARANTINED state (``fixes.state``,
        which the lookup and the validator act on): fixes of the patterns it was matched to or
        mapped to, and fixes tried for it."""
        rows = self.db.fetch(
            """SELECT f.id FROM fixes f WHERE f.state = 'QUARANTINED' AND (f.pattern_id IN (
                   SELECT pattern_id FROM occurrences WHERE fine = $1 OR coarse = $1
                   UNION SELECT pattern_id FROM pattern_fingerprints WHERE fingerprint = $1)
                 OR f.id IN (SELECT fix_id FROM attempts WHERE fingerprint = $1))
               ORDER BY f.id""", fingerprint)
        return [str(r["id"]) for r in rows]

    def knows_fix(self, fix_id: str) -> bool:
        return bool(self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM fix_stats WHERE fix_id = $1)"
            " OR EXISTS (SELECT 1 FROM fixes WHERE id = $1)", fix_id))

    def quarantine(self, fingerprint: str, fix_id: str, reason: str) -> Transition | None:
        """Any state -> QUARANTINED for one pair (None when it already is)."""
        async def go(conn: Conn) -> Transition | None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO fix_stats (fingerprint, fix_id, state) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING", fingerprint, fix_id,
                    (await _initial_state(conn, fix_id)).value)
                state = LifecycleState(await conn.fetchval(
                    "SELECT state FROM fix_stats WHERE fingerprint = $1 AND fix_id = $2"
                    " FOR UPDATE", fingerprint, fix_id))
                if state is LifecycleState.QUARANTINED:
                    return None
                return await _apply(conn, fingerprint, fix_id, state,
                                    Decision(LifecycleState.QUARANTINED, reason))
        result: Transition | None = self.db.run(go)
        return result

    def deprecate_unused(self, policy: LifecyclePolicy,
                         now: dt.datetime | None = None) -> list[Transition]:
        """Sweep: ACTIVE/AUTOMATED pairs unused for ``policy.unused_days`` -> DEPRECATED."""
        now = now or dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(days=policy.unused_days)

        async def go(conn: Conn) -> list[Transition]:
            out = []
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT fingerprint, fix_id, state, last_used FROM fix_stats"
                    " WHERE state IN ('ACTIVE', 'AUTOMATED') AND last_used < $1 FOR UPDATE",
                    cutoff)
                for r in rows:
                    state = LifecycleState(r["state"])
                    decision = when_unused(state, r["last_used"], now, policy)
                    if decision is not None:
                        out.append(await _apply(conn, r["fingerprint"], r["fix_id"], state,
                                                decision))
            return out
        result: list[Transition] = self.db.run(go)
        return result

    # --- reads ------------------------------------------------------------------------
    def posteriors(self, fingerprint: str, fix_ids: list[str]) -> dict[str, Posterior]:
        """Posterior per candidate (the uniform prior for a fix never tried here)."""
        rows = self.db.fetch(
            "SELECT fix_id, successes, failures + reverts AS bad FROM fix_stats"
            " WHERE fingerprint = $1 AND fix_id = ANY($2::text[])", fingerprint, fix_ids)
        known = {r["fix_id"]: Posterior(r["successes"], r["bad"]) for r in rows}
        return {fix_id: known.get(fix_id, Posterior()) for fix_id in fix_ids}

    def start_posteriors_of(
            self, fingerprints: list[str]) -> Pending[dict[str, dict[str, Posterior]]]:
        """Every recorded posterior of each of ``fingerprints``, in one query sent now (a
        batch of lookups reads them while it starts on its events); ``result()`` waits for
        them. A fix missing from a fingerprint's dict has the uniform prior, as in
        :meth:`posteriors`."""
        pending: Pending[list[Any]] = self.db.start_fetch(
            "SELECT fingerprint, fix_id, successes, failures + reverts AS bad FROM fix_stats"
            " WHERE fingerprint = ANY($1::text[])", fingerprints)

        def convert(rows: list[Any]) -> dict[str, dict[str, Posterior]]:
            out: dict[str, dict[str, Posterior]] = {fp: {} for fp in fingerprints}
            for r in rows:
                out[r["fingerprint"]][r["fix_id"]] = Posterior(r["successes"], r["bad"])
            return out

        return pending.then(convert)

    def record_ranking(self, fingerprint: str, draws: list[Draw]) -> None:
        payload = [{"fix_id": d.fix_id, "draw": d.draw, "alpha": d.alpha, "beta": d.beta}
                   for d in draws]
        self.db.execute("INSERT INTO fix_rankings (fingerprint, chosen, draws) VALUES ($1, $2,"
                        " $3::jsonb)", fingerprint, draws[0].fix_id if draws else "",
                        json.dumps(payload))

    def transitions(self, fingerprint: str) -> list[dict[str, Any]]:
        rows = self.db.fetch("SELECT fix_id, src, dst, reason, ts FROM lifecycle_transitions"
                             " WHERE fingerprint = $1 ORDER BY id", fingerprint)
        return [dict(r) for r in rows]

    def step_results(self, fingerprint: str) -> tuple[list[tuple[str, bool]], list[float]]:
        """(commit, ok) of attempts and occurrence times (epoch s), for the determinism score.
        An occurrence is an error, at its first outcome: a person's later ``heal apply`` of it
        is no new occurrence (else when someone clicked would move the interval spread)."""
        rows = self.db.fetch("SELECT commit, ok, status, error_id, extract(epoch FROM ts) AS t"
                             " FROM lifecycle_outcomes WHERE fingerprint = $1 ORDER BY ts",
                             fingerprint)
        results: list[tuple[str, bool]] = []
        first: dict[str, float] = {}
        for r in rows:
            results += evidence(r["commit"], r["ok"], r["status"])
            first.setdefault(str(r["error_id"]), float(r["t"]))
        return results, list(first.values())

    def has_flaky_outcome(self, fingerprints: list[str]) -> bool:
        """Whether a failure of any of ``fingerprints`` has passed on a plain re-run."""
        return bool(self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM lifecycle_outcomes WHERE status = 'flaky'"
            " AND fingerprint = ANY($1::text[]))", fingerprints))

    def flaky(self, fingerprint: str) -> bool:
        """Whether ``fingerprint`` is flaky: one of its failures passed on a plain re-run and
        its determinism score is below the line. The one rule the lookup (retry playbook,
        :meth:`flaky_fingerprints`), explain and the crediting of successes share: a low
        score from irregular occurrences alone is no flakiness."""
        return self.has_flaky_outcome([fingerprint]) and is_flaky(self.determinism(fingerprint))

    def flaky_fingerprints(self) -> dict[str, float]:
        """Fingerprints with flaky evidence whose determinism score is below the flaky line,
        with the score (the lookup gives them the retry playbook, never a code change)."""
        rows = self.db.fetch("SELECT DISTINCT fingerprint FROM lifecycle_outcomes"
                             " WHERE status = 'flaky'")
        out: dict[str, float] = {}
        for r in rows:
            score = self.determinism(r["fingerprint"])
            if is_flaky(score):
                out[r["fingerprint"]] = score
        return out

    def attempt_summary(self, fingerprint: str) -> tuple[int, float, list[str]]:
        """(attempts, first seen as epoch seconds, distinct fixes tried) of a fingerprint.

        An attempt is an outcome where a fix was tried: applied, reverted, failed, or
        escalated after its fix ran (an escalation naming a fix)."""
        row = self.db.fetchrow(
            f"SELECT count(*) FILTER (WHERE {_TRIED}) AS attempts,"
            " extract(epoch FROM min(ts)) AS first_seen,"
            " coalesce(array_agg(DISTINCT fix_id) FILTER (WHERE fix_id <> ''), '{}') AS fixes"
            " FROM lifecycle_outcomes WHERE fingerprint = $1", fingerprint)
        if row is None or row["first_seen"] is None:
            return 0, 0.0, []
        return int(row["attempts"]), float(row["first_seen"]), sorted(row["fixes"])

    def attempt_facts(self, error_id: str) -> dict[str, str]:
        """Category and pattern of the fix validated for ``error_id`` ({} when none was)."""
        row = self.db.fetchrow(
            "SELECT a.category, coalesce(a.fix->>'pattern_id', '') AS pattern_id,"
            " a.repo FROM attempts a WHERE a.id = $1", error_id)
        if row is None:
            return {}
        return {"category": str(row["category"] or ""), "pattern_id": str(row["pattern_id"]),
                "repo": str(row["repo"] or "")}

    def unresolved(self, limit: int = 1000, within_days: float = 30.0) -> list[dict[str, Any]]:
        """Fingerprints whose newest outcome (within ``within_days``) is still unresolved, with
        attempts, first seen (epoch s), fixes tried, and the newest attempt's repository,
        category and pattern: what the time-based escalation rules need."""
        rows = self.db.fetch(
            "WITH latest AS (SELECT DISTINCT ON (fingerprint) fingerprint, error_id, status,"
            " workflow, step FROM lifecycle_outcomes WHERE ts > now() - make_interval(days => $2)"
            " ORDER BY fingerprint, ts DESC),"
            " hist AS (SELECT fingerprint, extract(epoch FROM min(ts)) AS first_seen,"
            f" count(*) FILTER (WHERE {_TRIED}) AS attempts,"
            " coalesce(array_agg(DISTINCT fix_id) FILTER (WHERE fix_id <> ''), '{}') AS fixes"
            " FROM lifecycle_outcomes WHERE fingerprint IN (SELECT fingerprint FROM latest)"
            " GROUP BY fingerprint)"
            " SELECT l.fingerprint, l.status, l.workflow, l.step, h.first_seen, h.attempts,"
            " h.fixes, coalesce(a.category, '') AS category,"
            " coalesce(a.fix->>'pattern_id', '') AS pattern_id, coalesce(a.repo, '') AS repo"
            " FROM latest l JOIN hist h USING (fingerprint)"
            " LEFT JOIN attempts a ON a.id = l.error_id"
            " WHERE l.status = ANY($3::text[]) ORDER BY h.first_seen LIMIT $1",
            limit, float(within_days), sorted(UNRESOLVED_STATUSES))
        return [dict(r) for r in rows]

    def determinism(self, fingerprint: str) -> float:
        """0 flaky .. 1 deterministic (see pipeline.lifecycle.flakiness)."""
        results, times = self.step_results(fingerprint)
        return determinism_score(results, times)

    # --- ignore -----------------------------------------------------------------------
    def set_ignored(self, fingerprint: str, ignored: bool, reason: str = "") -> None:
        """Ignore the fingerprint (or stop ignoring it) and, in the same transaction, mark
        its open issue-queue groups ``ignored`` (or reopen the ones marked so): ``heal
        ignore`` and ``heal issues review``'s ``n`` have one effect."""
        src, dst = ("open", "ignored") if ignored else ("ignored", "open")

        async def go(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO fingerprint_controls (fingerprint, ignored, reason)"
                    " VALUES ($1, $2, $3) ON CONFLICT (fingerprint) DO UPDATE"
                    " SET ignored = $2, reason = $3, updated_at = now()",
                    fingerprint, ignored, reason)
                await conn.execute(
                    "UPDATE issue_queue SET status = $3 WHERE (fine = $1 OR coarse = $1)"
                    " AND status = $2", fingerprint, src, dst)

        self.db.run(go)


def newest_offered_sql(fingerprint: str) -> str:
    """The newest learned fix for the fingerprint ``fingerprint`` (a placeholder) that may
    still be offered, with its ``lifecycle_state`` (see :meth:`PrecedentRepository.
    newest_offered`; the lookup's probe asks the same inside its one statement)."""
    return ("SELECT d.*, COALESCE(s.state, d.state) AS lifecycle_state FROM precedent_drafts d"
            " LEFT JOIN fix_stats s ON s.fingerprint = d.fingerprint AND s.fix_id = d.id"
            f" WHERE d.fingerprint = {fingerprint}"
            " AND COALESCE(s.state, d.state) NOT IN ('QUARANTINED', 'DEPRECATED')"
            " ORDER BY d.created_at DESC, d.id LIMIT 1")


class PrecedentRepository:
    """Storage of :class:`pipeline.lifecycle.precedent.PrecedentLearner`."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def remember_failure(self, failure: StepFailure) -> None:
        self.db.execute(
            "INSERT INTO step_failures (workflow, step, fingerprint, repo_path, commit)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workflow, step, fingerprint) DO UPDATE"
            " SET repo_path = $4, commit = $5, ts = now()",
            failure.workflow, failure.step, failure.fingerprint, failure.repo_path,
            failure.commit)

    def failures_for_step(self, workflow: str, step: str) -> list[StepFailure]:
        rows = self.db.fetch("SELECT * FROM step_failures WHERE workflow = $1 AND step = $2"
                             " ORDER BY fingerprint", workflow, step)
        return [StepFailure(r["workflow"], r["step"], r["fingerprint"], r["repo_path"],
                            r["commit"]) for r in rows]

    def forget_failure(self, failure: StepFailure) -> None:
        self.db.execute("DELETE FROM step_failures WHERE workflow = $1 AND step = $2"
                        " AND fingerprint = $3", failure.workflow, failure.step,
                        failure.fingerprint)

    def save_draft(self, draft: dict[str, Any]) -> bool:
        """False when this precedent was already learned."""
        row = self.db.fetchval(
            "INSERT INTO precedent_drafts (id, fingerprint, workflow, step, repo_path,"
            " from_commit, to_commit, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            draft["id"], draft["fingerprint"], draft["workflow"], draft["step"],
            draft["repo_path"], draft["from_commit"], draft["to_commit"],
            draft["rendered"]["diff"])
        return row is not None

    def newest_offered(self, fingerprint: str) -> dict[str, Any] | None:
        """The newest learned fix for ``fingerprint`` that may still be offered: its lifecycle
        state (``fix_stats``, DRAFT until it was applied) is neither QUARANTINED nor
        DEPRECATED. Raises DatabaseUnavailable."""
        row = self.db.fetchrow(newest_offered_sql("$1"), fingerprint)
        return None if row is None else dict(row)

    def drafts(self, fingerprint: str) -> list[dict[str, Any]]:
        rows = self.db.fetch("SELECT * FROM precedent_drafts WHERE fingerprint = $1"
                             " ORDER BY created_at", fingerprint)
        return [dict(r) for r in rows]
