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

from pipeline.lifecycle.flakiness import determinism_score
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


@dataclass(frozen=True)
class RecordResult:
    new: bool  # False: this event id was already recorded (redelivery)
    kind: str | None = None  # "success" | "failure" | "revert" | None (not an attempt)
    state: LifecycleState | None = None
    stats: Posterior = field(default_factory=Posterior)
    transition: Transition | None = None


async def _fixes_table(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('fixes') IS NOT NULL"))


async def _initial_state(conn: Conn, fix_id: str) -> LifecycleState:
    if await _fixes_table(conn):
        state = await conn.fetchval("SELECT state FROM fixes WHERE id = $1", fix_id)
        if state in LifecycleState.__members__:
            return LifecycleState(state)
    return LifecycleState.DRAFT


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
_FIX_COUNTER = {"success": "successes", "failure": "failures", "revert": "rollbacks"}


class LifecycleStore:
    def __init__(self, db: Any) -> None:
        self.db = db

    def record_outcome(self, rec: OutcomeRecord, policy: LifecyclePolicy) -> RecordResult:
        """Record one outcome, update the pair's statistics and apply the transition it causes.

        Idempotent: an event id seen before returns ``RecordResult(new=False)``.
        """
        kind = outcome_kind(rec.status)

        async def go(conn: Conn) -> RecordResult:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, fix_id,"
                    " status, workflow, step, commit, ok) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    rec.event_id, rec.error_id, rec.fingerprint, rec.fix_id, rec.status,
                    rec.workflow, rec.step, rec.commit,
                    None if kind is None else kind == "success")
                if inserted is None:
                    return RecordResult(new=False)
                if kind is None or not rec.fix_id:
                    return RecordResult(new=True)
                return await self._count(conn, rec, kind, policy)

        result: RecordResult = self.db.run(go)
        return result

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
    def unquarantine(self, target: str) -> list[Transition]:
        """QUARANTINED -> DRAFT for every pair of fingerprint (or fix id) ``target``; the
        fix must pass validation again before it is applied."""
        async def go(conn: Conn) -> list[Transition]:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT fingerprint, fix_id FROM fix_stats WHERE (fingerprint = $1 OR"
                    " fix_id = $1) AND state = 'QUARANTINED' ORDER BY 1, 2 FOR UPDATE", target)
                decision = Decision(LifecycleState.DRAFT, "heal unquarantine")
                return [await _apply(conn, r["fingerprint"], r["fix_id"],
                                     LifecycleState.QUARANTINED, decision) for r in rows]
        result: list[Transition] = self.db.run(go)
        return result

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
    def pair(self, fingerprint: str, fix_id: str) -> dict[str, Any] | None:
        row = self.db.fetchrow("SELECT * FROM fix_stats WHERE fingerprint = $1 AND fix_id = $2",
                               fingerprint, fix_id)
        return dict(row) if row else None

    def posteriors(self, fingerprint: str, fix_ids: list[str]) -> dict[str, Posterior]:
        """Posterior per candidate (the uniform prior for a fix never tried here)."""
        rows = self.db.fetch(
            "SELECT fix_id, successes, failures + reverts AS bad FROM fix_stats"
            " WHERE fingerprint = $1 AND fix_id = ANY($2::text[])", fingerprint, fix_ids)
        known = {r["fix_id"]: Posterior(r["successes"], r["bad"]) for r in rows}
        return {fix_id: known.get(fix_id, Posterior()) for fix_id in fix_ids}

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
        """(commit, ok) of attempts and occurrence times (epoch s), for the determinism score."""
        rows = self.db.fetch("SELECT commit, ok, extract(epoch FROM ts) AS t FROM"
                             " lifecycle_outcomes WHERE fingerprint = $1 ORDER BY ts",
                             fingerprint)
        results = [(r["commit"], bool(r["ok"])) for r in rows
                   if r["ok"] is not None and r["commit"]]
        return results, [float(r["t"]) for r in rows]

    def attempt_summary(self, fingerprint: str) -> tuple[int, float, list[str]]:
        """(attempts, first seen as epoch seconds, distinct fixes tried) of a fingerprint."""
        row = self.db.fetchrow(
            "SELECT count(*) FILTER (WHERE ok IS NOT NULL) AS attempts,"
            " extract(epoch FROM min(ts)) AS first_seen,"
            " coalesce(array_agg(DISTINCT fix_id) FILTER (WHERE fix_id <> ''), '{}') AS fixes"
            " FROM lifecycle_outcomes WHERE fingerprint = $1", fingerprint)
        if row is None or row["first_seen"] is None:
            return 0, 0.0, []
        return int(row["attempts"]), float(row["first_seen"]), sorted(row["fixes"])

    def determinism(self, fingerprint: str) -> float:
        """0 flaky .. 1 deterministic (see pipeline.lifecycle.flakiness)."""
        results, times = self.step_results(fingerprint)
        return determinism_score(results, times)

    # --- ignore -----------------------------------------------------------------------
    def set_ignored(self, fingerprint: str, ignored: bool, reason: str = "") -> None:
        self.db.execute(
            "INSERT INTO fingerprint_controls (fingerprint, ignored, reason) VALUES ($1, $2, $3)"
            " ON CONFLICT (fingerprint) DO UPDATE SET ignored = $2, reason = $3,"
            " updated_at = now()", fingerprint, ignored, reason)

    def is_ignored(self, fingerprint: str) -> bool:
        return bool(self.db.fetchval(
            "SELECT ignored FROM fingerprint_controls WHERE fingerprint = $1", fingerprint))


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
        row = self.db.fetchrow(
            "SELECT d.*, COALESCE(s.state, d.state) AS lifecycle_state FROM precedent_drafts d"
            " LEFT JOIN fix_stats s ON s.fingerprint = d.fingerprint AND s.fix_id = d.id"
            " WHERE d.fingerprint = $1"
            " AND COALESCE(s.state, d.state) NOT IN ('QUARANTINED', 'DEPRECATED')"
            " ORDER BY d.created_at DESC, d.id LIMIT 1", fingerprint)
        return None if row is None else dict(row)

    def drafts(self, fingerprint: str) -> list[dict[str, Any]]:
        rows = self.db.fetch("SELECT * FROM precedent_drafts WHERE fingerprint = $1"
                             " ORDER BY created_at", fingerprint)
        return [dict(r) for r in rows]
