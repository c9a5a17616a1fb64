"""The apply stage's logic: verdict -> outcome.

- ``apply`` verdicts with a verified commit: bring the commit onto the working branch (fast-
  forward or cherry-pick, never a rewrite), re-run the failing step; when it still fails,
  ``git revert`` it, count the revert in the breaker and escalate.
- playbooks (and command fixes that change no file): run step by step where the error
  happened (:mod:`pipeline.apply.playbook`), then re-run the failing step.
- ``suggest`` leaves the verified branch and says ``heal apply ERROR_ID``.
- Flaky failures are never credited to a fix: a verification whose "before" run passed, or a
  failing step that passes on a plain re-run before a playbook/command runs, gives the outcome
  ``flaky`` (nothing changed; the lifecycle records it as evidence of non-determinism).
  A pass is flaky only when nothing changed since the error: the branch still at its commit
  and no fix heal applied since for the same fingerprint or pattern in that repository (the
  first of two suggestions of one failure, applied) and the working tree as ``heal run``
  recorded it with the error (``tags.tree_state``, :mod:`pipeline.treestate`: a fix by hand,
  not committed, changes it); otherwise it is ``skipped``, already resolved, and no
  determinism evidence.
- A fix is never applied twice for one error: a Redis done marker (SET NX) plus the
  ``apply_results`` row guard every action; a redelivered verdict returns the first outcome.
- Before an automatic application (decision ``apply``): the workflow's execution state
  (QUARANTINED: suggested instead, saying why), the circuit breaker at the pre-flight's scopes
  (opened since the verdict: suggested, ``heal apply --force`` applies it), the fix's
  quarantine for this fingerprint (rolled back since: escalated) and the token buckets (``[budget]
  automatic_fixes`` per ``automatic_fixes_minutes``: the repository's own when its heal.toml
  tightened the rate, then the one every repository shares at the operator's rate; see
  :func:`pipeline.guardrails.budget.apply_rates`). A verdict a bucket refuses is
  *deferred*: kept in a Redis sorted set and put back on the verdicts stream by
  :meth:`Applier.release_deferred` (the apply worker's tick) once due; never dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import redis

from pipeline.apply.playbook import PlaybookRunner, StepContext
from pipeline.branches import discard, prune_quietly, retention_of
from pipeline.config import STREAM_OUTCOMES, STREAM_VERDICTS, Settings
from pipeline.errors import DecodeError, GitError, HealError, Retry
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.gitops import AlreadyApplied, GitRepo, WorkTreeInTheWay
from pipeline.guardrails.budget import Budget, apply_rates, deferred_key
from pipeline.guardrails.gate import gate_for
from pipeline.lifecycle.graduation import UNRUNNABLE, cannot_run
from pipeline.model import FLAKY_PATTERN
from pipeline.policy import Policy, policy_for
from pipeline.runtime.connection import redis_failure
from pipeline.treestate import IGNORED as TREE_IGNORED
from pipeline.treestate import PREFIXES as TREE_PREFIXES
from pipeline.treestate import TAG as TREE_TAG
from pipeline.treestate import TRACKED as TREE_TRACKED
from pipeline.treestate import UNKNOWN as TREE_UNKNOWN
from pipeline.treestate import compare as compare_trees
from pipeline.treestate import status_entries, status_listing, tree_digest
from pipeline.trust.boundary import Trust, assess
from pipeline.trust.operator import governed, operator_config
from pipeline.trust.packages import install_target
from pipeline.trust.seal import seal, unseal
from pipeline.validate.audit import audit, audit_before_acting, check_audit_chain
from pipeline.validate.runner import run_argv
from pipeline.validate.validator import HELD, VERIFICATION_FAILED, repo_root
from pipeline.validate.verify import (
    NOT_RUN_HERE,
    RAN_UNCHANGED,
    failure_reproduced,
    judge_runs,
    rel_cwd,
)

log = logging.getLogger(__name__)
DEFERRED_ROLE = "apply-deferred"

DONE_TTL_S = 30 * 24 * 3600
#: the marker of an apply in progress: ``in-progress:<holder>``. It lives LEASE_TTL_S and its
#: holder refreshes it every third of that while it applies, so it lapses soon after its
#: holder dies (SIGKILL, a lost machine) and a redelivery takes the apply over. (A fixed
#: 900 s marker outlived the dead worker: its reclaimer retried every 5 s and dead-lettered
#: the fix, "being applied by another worker", with no other worker alive. QA)
IN_PROGRESS = b"in-progress"
LEASE_TTL_S = 30.0
#: how long what an apply did to the repository is kept for a takeover (see _Progress)
PROGRESS_TTL_S = 7 * 24 * 3600
RERUN_TIMEOUT_S = 300.0
#: outcomes after which nobody needs the verified fix's heal branch (its change is on the
#: working branch, was reverted there, was there already, or is not wanted)
BRANCH_DONE = frozenset({"applied", "rolled_back", "skipped", "flaky", "failed"})

#: extend the marker only while it is still this holder's
_REFRESH_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
#: delete the marker only while it is still this holder's
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Applier:
    def __init__(self, settings: Settings, client: redis.Redis, store: Any = None,
                 consumer: str = "") -> None:
        self.settings = settings
        self.client = client
        self.store = store
        #: the stage's consumer, named in the apply marker (who holds it)
        self.consumer = consumer
        #: the apply the stage is taking over (what the dead holder's progress said), and
        #: the lease of the one in hand; None outside :meth:`handle`
        self._taking_over: dict[str, Any] | None = None
        self._lease: _Lease | None = None

    # -- idempotency ----------------------------------------------------------------------
    def _key(self, error_id: str) -> str:
        return self.settings.key("apply", "done", error_id)

    def _claim(self, error_id: str) -> OutcomeEvent | _Lease:
        """Take the apply marker (a lease: see :data:`LEASE_TTL_S`), or return the outcome
        already decided.

        Raises:
            Retry: another worker is applying this error right now (not counted as an
                attempt: its marker lapses LEASE_TTL_S after that worker stops, and the
                redelivery waits exactly that long, then takes the apply over).
            StreamUnavailable: Redis unreachable.
        """
        key = self._key(error_id)
        holder = f"{self.consumer or 'apply'}@{socket.gethostname()}:{os.getpid()}:" \
                 f"{uuid.uuid4().hex[:8]}"
        marker = IN_PROGRESS + b":" + holder.encode()
        try:
            for _ in range(3):  # a marker that lapses between SET NX and GET: try again
                if self.client.set(key, marker, nx=True, px=int(LEASE_TTL_S * 1000)):
                    return _Lease(self.client, key, marker, self.settings.prefix)
                raw = self.client.get(key)
                if raw is not None:
                    break
            left_ms = self.client.pttl(key) if _held(raw) else -2
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        if _held(raw) or raw is None:
            who = (raw.partition(b":")[2].decode("utf-8", "replace")[:200]
                   if isinstance(raw, bytes) else "")
            # a marker with no expiry (set by hand) is looked at again in 5 s
            wait = left_ms / 1000.0 + 0.2 if isinstance(left_ms, int) and left_ms > 0 else 5.0
            raise Retry(f"this error is being applied by another worker ({who or 'unnamed'}); "
                        f"its claim lapses {LEASE_TTL_S:g}s after that worker stops, then "
                        "the apply is taken over", delay=wait, counted=False)
        done = _decoded(raw)
        if done is not None:
            return done
        try:  # a marker that does not decode: decided again, under this worker's marker
            self.client.set(key, marker, px=int(LEASE_TTL_S * 1000))
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        return _Lease(self.client, key, marker, self.settings.prefix)

    def _progress_key(self, error_id: str) -> str:
        return self.settings.key("apply", "progress", error_id)

    def _interrupted(self, error_id: str) -> dict[str, Any] | None:
        """What an earlier apply of ``error_id`` that did not finish did to the repository
        (see :meth:`_note_progress`), or None.

        Raises: StreamUnavailable."""
        raw = self._kept(self._progress_key(error_id))
        if raw is None:
            return None
        try:
            kept = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return dict(kept) if isinstance(kept, dict) else None

    def _note_progress(self, error_id: str, what: dict[str, Any]) -> None:
        """Keep, beside the marker, where the repository was before this apply brought its
        commit there: a worker that takes over a dead one's apply (:meth:`_resume_point`)
        then tells heal's own unverified commit from a change that was already there.

        Raises: StreamUnavailable (nothing was done to the repository yet)."""
        try:
            self.client.set(self._progress_key(error_id), orjson.dumps(what),
                            ex=PROGRESS_TTL_S)
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc

    def _unrecorded_key(self, error_id: str) -> str:
        return self.settings.key("apply", "unrecorded", error_id)

    def _unaudited_key(self, error_id: str) -> str:
        return self.settings.key("apply", "unaudited", error_id)

    def _finish(self, outcome: OutcomeEvent, extra: dict[str, Any] | None = None,
                replace_suggested: bool = False, *, stage: bool = False) -> OutcomeEvent:
        """Mark the error done (Redis), audit, and record the result (PostgreSQL).

        The done marker comes first: it is what keeps a redelivery from acting twice. The
        row it promises is kept beside it until PostgreSQL took it, so a redelivery after a
        failed write records it (:meth:`_record_unrecorded`) instead of skipping it. In the
        apply stage (``stage``) the audit record is kept beside it the same way: an audit
        chain that became unusable after :meth:`handle` checked it (a row edited meanwhile)
        stops the stage after it acted, and the redelivery writes the record
        (:meth:`_audit_unaudited`), once.

        Raises: StreamUnavailable; AuditChainUnusable (``stage`` only: the event stays
        pending); the store's errors (the row is then kept for a retry).
        """
        row = {"fix_id": outcome.fix_id, "status": outcome.status, "detail": outcome.detail,
               "branch": outcome.branch, "commit": outcome.commit, **(extra or {})}
        record = {"fix_id": outcome.fix_id, "status": outcome.status,
                  "detail": outcome.detail[:500], "commit": outcome.commit,
                  "revert_commit": (extra or {}).get("revert_commit", "")}
        pending = self._unrecorded_key(outcome.error_id)
        try:
            if self.store is not None:
                self.client.set(pending, orjson.dumps(
                    {"row": row, "replace_suggested": replace_suggested}, default=str),
                    ex=DONE_TTL_S)
            if stage:
                self.client.set(self._unaudited_key(outcome.error_id),
                                orjson.dumps(record, default=str), ex=DONE_TTL_S)
            self.client.set(self._key(outcome.error_id), outcome.encode(), ex=DONE_TTL_S)
            if stage:  # decided: a redelivery returns the outcome, it resumes nothing
                self.client.delete(self._progress_key(outcome.error_id))
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        if stage:
            self._audit_outcome(outcome.error_id, record)
        else:
            audit(self.settings, self.store, "apply", outcome.error_id, record, self.client)
        if self.store is not None:
            self.store.record_apply(outcome.error_id, row, replace_suggested=replace_suggested)
            self._forget(pending)
        return outcome

    def _audit_outcome(self, error_id: str, record: dict[str, Any]) -> None:
        """The apply stage's audit record of the outcome it decided for ``error_id``, named
        once (a redelivery after the file took it and PostgreSQL or Redis failed writes only
        what is missing: the table's record, naming the file's), then no longer kept for a
        redelivery.

        Raises: AuditChainUnusable, DatabaseUnavailable, StreamUnavailable (the record
        stays kept: the redelivery writes it)."""
        try:
            audit(self.settings, self.store, "apply", error_id, record, self.client,
                  once=f"apply.outcome:{error_id}")
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        self._forget(self._unaudited_key(error_id))

    def _audit_unaudited(self, error_id: str) -> None:
        """Write the audit record of an outcome decided before the chain refused it.

        Raises: StreamUnavailable; AuditChainUnusable (still refused: the stage stops)."""
        raw = self._kept(self._unaudited_key(error_id))
        if raw is None:
            return
        try:
            record = dict(orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.warning("apply: dropping an unreadable pending audit record of %s", error_id)
            self._forget(self._unaudited_key(error_id))
            return
        self._audit_outcome(error_id, record)

    def _record_unrecorded(self, error_id: str) -> bool | None:
        """Record the row of an outcome decided before PostgreSQL failed to take it; returns
        whether that outcome was a person's (``heal apply``), None when nothing was pending.

        Raises: StreamUnavailable; the store's errors (the row is kept for the next retry).
        """
        if self.store is None:
            return None
        pending = self._unrecorded_key(error_id)
        raw = self._kept(pending)
        if raw is None:
            return None
        try:
            kept = orjson.loads(raw)
            row, replace_suggested = dict(kept["row"]), bool(kept["replace_suggested"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("apply: dropping an unreadable pending record of %s", error_id)
            self._forget(pending)
            return None
        self.store.record_apply(error_id, row, replace_suggested=replace_suggested)
        log.info("apply: recorded the result of %s that PostgreSQL had missed", error_id)
        self._forget(pending)
        return replace_suggested

    def _decided(self, error_id: str) -> OutcomeEvent | None:
        """The outcome the done marker holds (None without a readable one)."""
        return _decoded(self._kept(self._key(error_id)))

    def _kept(self, key: str) -> bytes | None:
        """What the stage kept at ``key`` (None when nothing is).

        Raises: StreamUnavailable."""
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        return raw if isinstance(raw, bytes) else None

    def _forget(self, key: str) -> None:
        try:
            self.client.delete(key)
        except redis.RedisError as exc:  # recorded already: a later retry re-inserts nothing
            log.warning("apply: could not delete %s: %s", key, exc)

    # -- entry points ---------------------------------------------------------------------
    def handle(self, verdict: VerdictEvent) -> OutcomeEvent:
        """The apply stage's outcome of ``verdict`` (a redelivery's: the one decided before).

        Raises:
            AuditChainUnusable: the audit chain cannot be extended until the operator acts
                (checked before anything is done for the verdict, which stays pending; or,
                when it became so meanwhile, after: the redelivery records the outcome).
            Retry: another worker is applying this error.
            StreamUnavailable, AccessRefused: Redis.
        """
        # what the stage does is recorded after it did it: refuse before doing anything
        check_audit_chain(self.settings, self.store, self.client)
        claim = self._claim(verdict.error_id)
        if isinstance(claim, OutcomeEvent):
            self._record_unrecorded(verdict.error_id)
            self._audit_unaudited(verdict.error_id)
            return claim
        started = time.monotonic()
        try:
            # an apply whose worker stopped after it began acting (SIGKILL): taken over, it
            # is finished (its commit verified, rolled back when the step still fails), not
            # begun again, so no hold applies to it any more: it was decided and acted on
            self._taking_over = self._interrupted(verdict.error_id)
            if self._taking_over is not None:
                log.warning("apply: taking over the apply of %s that %s began and did not "
                            "finish", verdict.error_id, self._taking_over.get("holder", "?"))
            claim.start()
            self._lease = claim
            held = (self._automatic_hold(verdict)
                    if verdict.decision == "apply" and self._taking_over is None else None)
            if held is not None and held.status == "deferred":
                claim.release()  # the retry claims it again
                audit(self.settings, self.store, "apply", verdict.error_id, {
                    "fix_id": held.fix_id, "status": held.status, "detail": held.detail[:500]},
                    self.client)
                return held
            outcome, extra = (held, {}) if held is not None else self._outcome(verdict)
        except BaseException:
            claim.release()  # let a retry try again (what was done is kept: it resumes)
            raise
        finally:
            claim.stop()
            self._taking_over, self._lease = None, None
        outcome = replace(outcome, duration_s=round(time.monotonic() - started, 3))
        outcome = self._finish(outcome, extra, stage=True)
        self._tidy_branches(verdict, outcome)
        return outcome

    def _tidy_branches(self, verdict: VerdictEvent, outcome: OutcomeEvent) -> None:
        """Once recorded: the verified fix's heal branch goes when the fix is done with
        (applied, rolled back, already there, flaky, failed; a suggestion's and an
        escalation's stay for a person), then the repository's ``[branches]`` retention
        (:mod:`pipeline.branches`). Never raises: the outcome stands."""
        if not verdict.branch:
            return
        try:
            trust = assess(verdict.error, self.settings)
            if trust.root is None or not trust.repo_trusted:
                return
            if (outcome.status in BRANCH_DONE and verdict.commit
                    and discard(GitRepo(trust.root), verdict.branch, verdict.commit)):
                log.info("apply: heal branch %s removed (%s)", verdict.branch, outcome.status)
            policy = governed(self.settings, policy_for(trust.root, trusted=True).current())
        except (HealError, OSError) as exc:
            log.warning("apply: heal branch %s: %s", verdict.branch, exc)
            return
        prune_quietly(trust.root, retention_of(policy.limits))

    # -- automatic applications: execution state and rate ------------------------------------
    def _automatic_hold(self, verdict: VerdictEvent) -> OutcomeEvent | None:
        """The outcome that replaces an automatic application heal may not make now, or None.

        Raises: StreamUnavailable.
        """
        root = repo_root(verdict.error)
        # the guardrail thresholds as the operator's side lets the repository set them
        policy = governed(self.settings, policy_for(root).current() if root else Policy())
        fix_id = str((verdict.fix or {}).get("id", ""))
        gate = gate_for(self.client, self.settings, verdict.error, policy)
        if not gate.auto_allowed:
            return self._base(verdict, "suggested", f"{gate.note()}; apply with: heal apply "
                              f"{verdict.error_id}")
        # decided earlier (the verdicts of one batch are all decided before the first one is
        # applied; a deferred one waited): the breaker and the fix's quarantine are read again
        refusal = self._breaker_refusal(verdict, policy)
        if refusal:
            return self._base(verdict, "suggested", (
                f"{refusal}: the breaker opened after this fix was decided, so it is not "
                f"applied automatically; apply anyway with: heal apply {verdict.error_id} --force"))
        withdrawn = self._quarantined(verdict, fix_id)
        if withdrawn:
            return self._base(verdict, "escalated", (
                f"fix {fix_id} is quarantined ({withdrawn}): not applied automatically, "
                f"never retried until `heal unquarantine {verdict.fine or fix_id}`; "
                "escalated to a human"))
        # the repository's own bucket first (when its heal.toml tightened the rate), then the
        # one every repository shares at the operator's rate: a heal.toml never sets that one
        budget = Budget(self.client, self.settings, policy.limits.budget())
        refused_by = budget.take_rates(apply_rates(self.settings, policy.limits, root,
                                                   policy.source))
        if refused_by is None:
            return None
        limits = policy.limits
        delay = limits.get("budget.deferred_retry_seconds")
        try:
            # sealed: whoever can write Redis must not be able to queue a verdict that this
            # stage would re-publish (and so seal) on its own (pipeline.trust)
            n = self.client.zadd(deferred_key(self.settings), {
                seal(self.settings, DEFERRED_ROLE, verdict.encode()): time.time() + delay})
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        detail = (f"rate limit: at most {refused_by.fixes} automatic fixes per "
                  f"{refused_by.minutes:g} minutes ({refused_by.set_by}); deferred, retried "
                  f"automatically in {delay:g}s (or now with: heal apply {verdict.error_id})")
        return replace(self._base(verdict, "deferred", detail),
                       id=f"{verdict.error_id}:apply:deferred-{uuid.uuid4().hex[:8]}"
                       if n else f"{verdict.error_id}:apply:deferred")

    def _breaker_refusal(self, verdict: VerdictEvent, policy: Policy) -> str:
        """The breaker's refusal at the scopes the validate pre-flight checked ('' if none).

        Raises: StreamUnavailable."""
        from pipeline.guardrails.breaker import CircuitBreaker, error_scope

        step, workflow = error_scope(verdict.error)
        # a HALF_OPEN breaker lets through the probe this verdict's own pre-flight took
        probe = any(c.get("name") == "breaker" and "half-open probe" in str(c.get("reason"))
                    for c in verdict.preflight)
        return CircuitBreaker(self.client, self.settings, policy.limits.breaker()).refusal(
            step, workflow, str((verdict.fix or {}).get("category", "RISKY")),
            probe=probe)

    def _quarantined(self, verdict: VerdictEvent, fix_id: str) -> str:
        """How the fix is quarantined for the verdict's fingerprint now ('' when it is not,
        or when PostgreSQL cannot say: the breaker, in Redis, still holds then)."""
        if self.store is None or not fix_id or not hasattr(self.store, "quarantined"):
            return ""
        try:
            return str(self.store.quarantined(verdict.fine or verdict.error_id, fix_id))
        except HealError as exc:
            log.warning("apply: quarantine of %s not checked: %s", fix_id, exc)
            return ""

    def release_deferred(self, now: float | None = None, limit: int = 100) -> int:
        """Put due deferred verdicts back on the verdicts stream (each under a new event id,
        so the runtime's dedupe lets it through); returns how many. Several workers may call
        it: ZREM decides which one releases an entry.

        Raises: StreamUnavailable.
        """
        key = deferred_key(self.settings)
        moment = time.time() if now is None else now
        released = 0
        try:
            for raw in self.client.zrangebyscore(key, "-inf", moment, start=0, num=limit):
                if not isinstance(raw, bytes | str) or not self.client.zrem(key, raw):
                    continue  # another worker released it
                body = unseal(self.settings, DEFERRED_ROLE,
                              raw.encode() if isinstance(raw, str) else raw)
                if body is None:
                    log.warning("trust: dropped an unsealed deferred verdict (not queued by "
                                "an apply stage holding the signing key)")
                    continue
                try:
                    verdict = VerdictEvent.decode(body)
                except DecodeError:
                    continue
                retry = replace(verdict, id=f"{verdict.error_id}:validate:retry-"
                                f"{uuid.uuid4().hex[:8]}")
                # back to the verdict's own partition (HEAL_PARTITIONS > 1): not this
                # worker's, which serves every partition through one handler
                self.client.xadd(self._stream(retry, STREAM_VERDICTS), {
                    "event": seal(self.settings, STREAM_VERDICTS, retry.encode())})
                released += 1
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        return released

    def apply_suggested(self, verdict: VerdictEvent) -> OutcomeEvent:
        """``heal apply`` and API approvals: turn a 'suggested' outcome into an applied (or
        rolled back) one, and publish it on the outcomes stream like the apply stage does
        (its own event id, so the lifecycle stage counts it: statistics, explain, metrics,
        export). :func:`settle_outcomes` then records it when no lifecycle worker runs.

        Raises: StreamUnavailable."""
        started = time.monotonic()
        # a person's earlier ``heal apply`` of this error that acted, but whose record
        # PostgreSQL did not take: record and publish that outcome instead of acting twice
        earlier = (self._decided(verdict.error_id)
                   if self._record_unrecorded(verdict.error_id) else None)
        if earlier is not None:
            outcome = earlier
        else:
            refusal = self._audit_intent(verdict)
            if refusal:
                return self._base(verdict, "escalated", refusal)
            outcome, extra = self._apply(verdict)
            outcome = replace(outcome, duration_s=round(time.monotonic() - started, 3))
            outcome = self._finish(outcome, extra, replace_suggested=True)
            self._tidy_branches(verdict, outcome)
        published = replace(outcome, id=f"{verdict.error_id}:apply:manual-{uuid.uuid4().hex[:8]}")
        try:
            self.client.xadd(self._stream(published, STREAM_OUTCOMES), {
                "event": seal(self.settings, STREAM_OUTCOMES, published.encode())})
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.settings.prefix) from exc
        return published

    def _stream(self, event: VerdictEvent | OutcomeEvent, name: str) -> str:
        """Stream ``name`` of the partition ``event``'s error is routed to (the one it
        came from: an event stays in its partition from errors to outcomes)."""
        from producers.publisher import partition_of

        return partition_of(self.settings, event.error).stream(name)

    def _base(self, verdict: VerdictEvent, status: str, detail: str) -> OutcomeEvent:
        return OutcomeEvent(id=f"{verdict.error_id}:apply", error_id=verdict.error_id,
                            error=verdict.error, fine=verdict.fine,
                            fix_id=str((verdict.fix or {}).get("id", "")), status=status,
                            detail=detail, branch=verdict.branch, commit=verdict.commit)

    def _outcome(self, verdict: VerdictEvent) -> tuple[OutcomeEvent, dict[str, Any]]:
        d = verdict.decision
        if d == "observe":
            return self._base(verdict, "observed", verdict.reason), {}
        if d == "escalate":
            return self._base(verdict, "escalated", verdict.reason), {}
        if d == "suggest":
            where = f" on branch {verdict.branch}" if verdict.branch else ""
            # only a fix realized in a worktree and re-run there is "verified"; commands and
            # playbooks that act on the environment are verified step by step when applied
            verified = any(r.get("phase") == "after" for r in verdict.verification)
            detail = (f"verified{where}" if verified
                      else _unverified(verdict.reason))
            if verdict.reason.startswith(HELD):  # the mode would apply it: say what held it
                detail = f"{verdict.reason.split('; run `heal apply')[0]}; {detail}"
            return self._base(verdict, "suggested",
                              f"{detail}; apply with: heal apply {verdict.error_id}"), {}
        if d == "reject":
            if failure_reproduced(verdict.verification) is False:
                return self._passed_before(verdict), {}
            verified = any(r.get("phase") == "after" for r in verdict.verification)
            refused = verified and _passed(verdict) and not verdict.reason.startswith(
                VERIFICATION_FAILED)
            if verified and not refused:
                # committed on a heal branch in a worktree, did not survive verification, the
                # branch was discarded: a failed attempt that never reached the user's branch
                # ("rolled_back" is kept for reverts of commits that did reach it)
                return self._base(verdict, "failed", "did not survive verification, rolled "
                                  f"back (heal branch discarded): {verdict.reason}"), {}
            if refused:
                # it passed verification and was refused afterwards (the judges, its state):
                # the fix did not fail, a person decides; its branch was discarded (validate)
                return self._base(verdict, "escalated", "passed verification, then refused, "
                                  f"so not applied (a person decides): {verdict.reason}"), {}
            broken = cannot_run(verdict.verification)
            if broken is not None:  # the fix's own command is missing: a failed attempt
                return self._base(verdict, "failed", f"{UNRUNNABLE} (exit 127: "
                                  f"{str(broken.get('tail', ''))[-200:].strip()}): "
                                  f"{verdict.reason}"), {}
            status = "skipped" if "identical request" in verdict.reason else "escalated"
            return self._base(verdict, status, verdict.reason), {}
        if d == "apply":
            # a takeover's intent was audited by the worker that began acting on it
            refusal = self._audit_intent(verdict) if self._taking_over is None else ""
            if refusal:
                return self._base(verdict, "escalated", refusal), {}
            return self._apply(verdict)
        return self._base(verdict, "skipped", f"unknown decision {d!r}"), {}

    def _audit_intent(self, verdict: VerdictEvent) -> str:
        """Fail closed: the intent is audited before anything changes ("" when it was)."""
        return audit_before_acting(self.settings, self.store, "apply.intent", verdict.error_id, {
            "fix_id": str((verdict.fix or {}).get("id", "")), "decision": verdict.decision},
            self.client)

    # -- applying -------------------------------------------------------------------------
    def _apply(self, verdict: VerdictEvent) -> tuple[OutcomeEvent, dict[str, Any]]:
        # checked again here, not only in validate: `heal apply` and the approvals API read
        # verdicts back from storage
        trust = assess(verdict.error, self.settings)
        root = trust.root
        if root is None:
            return self._base(verdict, "escalated", "no git repository to apply to"), {}
        if not trust.repo_trusted:
            log.warning("trust: refused to apply for error %s: %s", verdict.error_id[:80],
                        trust.reason)
            return self._base(verdict, "escalated", f"not applied: {trust.reason}"), {}
        # a takeover's application was counted by the worker that began it
        refused = self._spend_budget(root) if self._taking_over is None else ""
        if refused:
            return self._base(verdict, "suggested", f"{refused}; apply later with: heal apply "
                              f"{verdict.error_id}"), {}
        fix = verdict.fix or {}
        if fix.get("kind") == "playbook" or not verdict.commit:
            return self._run_steps(verdict, root, fix, trust)
        return self._apply_commit(verdict, GitRepo(root), trust)

    def _apply_commit(self, verdict: VerdictEvent, repo: GitRepo,
                      trust: Trust) -> tuple[OutcomeEvent, dict[str, Any]]:
        if repo.run("cat-file", "-e", f"{verdict.commit}^{{commit}}", check=False).returncode:
            # its branch went (the [branches] retention, or by hand) and git pruned the commit
            return self._base(verdict, "escalated", (
                f"could not apply: the verified commit {verdict.commit[:10]} is no longer in "
                f"the repository (its heal branch {verdict.branch or '(none)'} was removed, by "
                "the [branches] retention or by hand, and git pruned the commit); nothing was "
                "changed: run the failing step again for a new verification")), {}
        changed = repo.changed_files(verdict.commit)
        if repo.is_dirty(changed):
            return self._base(verdict, "suggested", "uncommitted changes in "
                              f"{', '.join(changed)}; left on branch {verdict.branch}: "
                              f"heal apply {verdict.error_id}"), {}
        resumed = self._resume_point(verdict, repo)
        try:
            if resumed:
                head = resumed
            else:
                self._before_acting(verdict, repo)
                head = repo.bring_onto_current(verdict.commit)
        except AlreadyApplied as exc:  # made by hand or by another fix: nothing to do, and
            # nothing to credit or count against the fix ("skipped" has no fix statistic)
            return self._base(verdict, "skipped", str(exc)), {}
        except WorkTreeInTheWay as exc:  # the fix is fine: the user's tree is in its way
            return self._base(verdict, "suggested", f"{exc}; left on branch {verdict.branch}: "
                              f"heal apply {verdict.error_id} once those "
                              "files are moved or committed"), {}
        except GitError as exc:
            return self._base(verdict, "escalated", f"could not apply: {exc}"), {}
        rerun = self._rerun(verdict, repo.root, trust)
        taken = (" (verified by the worker that took over the apply of one that stopped "
                 "after committing it)") if resumed else ""
        if rerun is None or rerun["exit_code"] == 0:
            what = "failing step passes again" if rerun else _no_rerun(verdict)
            out = replace(self._base(verdict, "applied",
                                     f"applied as {head[:10]}{taken}; {what}"), commit=head)
            return out, {"steps": [rerun] if rerun else []}
        failing = f"still failing after applying (exit {rerun['exit_code']})"
        try:
            revert = _revert(repo, head, changed, f"heal: the failing step still fails after "
                             f"the fix (exit {rerun['exit_code']}); rolled back")
        except GitError as exc:
            # the fix stays on the branch: a person must revert it, and it counts as a fix
            # that did not hold (never "suggested": that would invite applying it again)
            self._record_revert(verdict)
            out = replace(self._base(verdict, "escalated", (
                f"{failing}; the rollback could not be made ({exc}); the fix {head[:10]} is "
                f"still on the branch: revert it by hand with `git revert {head}`")),
                commit=head)
            return out, {"steps": [rerun]}
        self._record_revert(verdict)
        out = replace(self._base(verdict, "rolled_back", (
            f"{failing}{taken}; reverted by {revert[:10]}; escalated to a human")),
            commit=head)
        return out, {"revert_commit": revert, "steps": [rerun]}

    def _before_acting(self, verdict: VerdictEvent, repo: GitRepo) -> None:
        """In the stage: the lease still held (else another worker took the apply over:
        this one must not act too), then where the branch is noted (:meth:`_note_progress`).

        Raises: Retry (the lease was lost); StreamUnavailable."""
        lease = self._lease
        if lease is None:  # heal apply: a person's, no marker
            return
        if not lease.held():
            raise Retry("the claim on this apply lapsed (Redis unreachable for "
                        f"{LEASE_TTL_S:g}s?) and may have been taken over; nothing was done")
        self._note_progress(verdict.error_id, {"holder": lease.holder(), "commit":
                                               verdict.commit, "before": repo.head()})

    def _resume_point(self, verdict: VerdictEvent, repo: GitRepo) -> str:
        """The commit on the working branch that the worker this one took over from made
        for ``verdict`` and never verified ('' when there is none: the apply starts over).

        Its commit is found on the branch's first-parent line since where the branch was
        before it (the progress it noted): the verified commit itself (fast-forward) or a
        cherry-pick of it (the same change, heal's message and trailers). A cherry-pick it
        left half-done (conflict, empty) is aborted. Any other commit is not heal's: the
        apply starts over (bring_onto_current says when its change is already there).

        Raises: GitError."""
        prior = self._taking_over
        if prior is None or prior.get("commit") != verdict.commit:
            return ""
        before = str(prior.get("before") or "")
        repo.abort_pick_of(verdict.commit)
        if not before or repo.head() == before:
            return ""
        line = repo.first_parent_since(before)
        if not line:
            return ""
        made = line[0]
        if made != verdict.commit and not repo.same_change(made, verdict.commit):
            return ""
        if made != repo.head():
            log.warning("apply: the commit %s of %s has commits on top of it since; verified "
                        "as the branch is now", made[:10], verdict.error_id)
        log.warning("apply: %s of %s is on the working branch, never verified: verifying it "
                    "now", made[:10], verdict.error_id)
        return made

    def _run_steps(self, verdict: VerdictEvent, root: Path, fix: dict[str, Any],
                   trust: Trust) -> tuple[OutcomeEvent, dict[str, Any]]:
        # before the re-run: what the developer left
        tree = _tree_now(verdict, root, self.settings.home)
        plain = self._rerun(verdict, root, trust)
        if plain is not None and plain["exit_code"] == 0:
            ran = {"steps": [{**plain, "name": "plain re-run (does the failure reproduce?)"}]}
            resolved = self._resolved_since(verdict, root, tree)
            if resolved:  # the step passes because something changed: not flakiness
                return self._base(verdict, "skipped", (
                    f"already resolved: nothing to do: the failing step passes now, and "
                    f"{resolved}; nothing applied, not counted as flaky")), ran
            # same commit, nothing heal applied since: the failure does not reproduce, and
            # crediting the fix would reward luck
            return self._base(verdict, "flaky", "flaky: the failing step passed on a plain "
                              "re-run before any fix ran; nothing applied, no fix "
                              "credited"), ran
        failed: list[str] = []
        log: list[dict[str, Any]] = []
        details: list[str] = []
        unrunnable = ""
        for n, candidate in enumerate(fallbacks(fix)):
            fix_id = str(candidate.get("id", ""))
            if n:  # the fallback is one more application: it must fit in the budget too
                refused = self._spend_budget(root)
                if refused:
                    details.append(f"fallback {fix_id} not tried: {refused}")
                    break
            try:
                ok, detail, steps = self._try_steps(verdict, root, candidate, trust)
            except _Refused as exc:  # a hostile path: nothing ran, nothing to count
                if not n:
                    return self._base(verdict, "escalated", str(exc)), {}
                details.append(f"{fix_id} not tried: {exc}")
                break
            log += steps
            if ok:
                if failed:
                    detail = (f"{'; '.join(details)}; fallback {fix_id} (ranked next): "
                              f"{detail}")
                return replace(self._base(verdict, "applied", detail), fix_id=fix_id,
                               failed_fixes=failed), {"steps": log}
            failed.append(fix_id)
            details.append(f"{fix_id} failed: {detail}")
            if not n and detail.startswith(UNRUNNABLE):
                unrunnable = detail
        self._record_revert(verdict)
        if unrunnable:  # the chosen fix's own command is missing: a failed attempt, counted
            rest = "; ".join(details[1:])
            return replace(self._base(verdict, "failed", unrunnable + (f"; {rest}" if rest
                                                                       else "")),
                           failed_fixes=failed[1:]), {"steps": log}
        return replace(self._base(verdict, "escalated", "; ".join(details)),
                       failed_fixes=failed[1:]), {"steps": log}

    def _passed_before(self, verdict: VerdictEvent) -> OutcomeEvent:
        """The outcome of a verification whose "before" run passed without any fix: flaky,
        unless something changed since the error was seen (:meth:`_resolved_since`)."""
        root = repo_root(verdict.error)
        # the tree the "before" run was a snapshot of, recorded when it ran (a change since
        # then, made or undone, did not make that run pass); else the tree now
        recorded, tree = _verified_tree(verdict)
        if root is not None and not recorded:
            tree = _tree_now(verdict, root, self.settings.home)
        resolved = self._resolved_since(verdict, root, tree) if root is not None else ""
        if resolved:  # it passed in a worktree of the changed code: not flakiness
            return self._base(verdict, "skipped", (
                "already resolved: nothing to do: the failing command passed in a clean "
                f"worktree without any fix, and {resolved}; nothing applied, not counted as "
                "flaky"))
        return self._base(verdict, "flaky", "flaky: the failing command passed in a clean "
                          "worktree without any fix; no fix applied or credited (a re-run is "
                          "the remedy)")

    def _resolved_since(self, verdict: VerdictEvent, root: Path, tree: str | None = None
                        ) -> str:
        """What changed since the error was seen that explains a pass of its step ('' when
        nothing did: a pass then is a flaky one). A flaky pass is the same code passing: the
        same commit, the same working tree, and no fix heal applied since for this failure.
        So: the branch moved since the error's commit (its commits may have fixed it), the
        working tree is not the one the error was seen in (``tree``, the digest now, differs
        from the event's ``tags.tree_state``: a change by hand, not committed yet), or heal
        applied a fix for the same fingerprint or pattern in this repository after the error
        was seen (the first of two suggestions of one failure, applied: the second finds it
        passing)."""
        seen_at = verdict.error.repo.commit
        try:
            head = GitRepo(root).head()
        except GitError:
            head = ""
        if seen_at and head and not (head.startswith(seen_at) or seen_at.startswith(head)):
            return (f"the branch moved since the error was seen (at {seen_at[:10]}, now "
                    f"{head[:10]}): a commit since then resolved it")
        applied = self._applied_since(verdict)
        if applied:
            return applied
        seen_tree = _seen_tree(verdict)
        if not seen_tree:
            return ""
        differs = compare_trees(seen_tree, tree)
        if differs == TREE_TRACKED:
            return ("the working tree changed since the error was seen (uncommitted changes "
                    "made since then): it was resolved by a change in the working tree")
        if differs == TREE_IGNORED:
            return ("files git ignores changed in the working tree since the error was seen "
                    "(installed dependencies, a virtualenv, build output): it was resolved by "
                    "a change in the working tree")
        if differs == TREE_UNKNOWN:  # not called flaky on a guess
            return ("heal could not tell whether the working tree changed since the error "
                    "was seen (git status did not answer in time, or the files git ignores "
                    "took too long to read)")
        return ""

    def _applied_since(self, verdict: VerdictEvent) -> str:
        """A fix heal applied here for this failure since the error was seen, said ('' when
        none, or no store to ask)."""
        if self.store is None or not hasattr(self.store, "resolved_since"):
            return ""
        fix = verdict.fix or {}
        try:
            row = self.store.resolved_since(verdict.error_id, verdict.fine or verdict.error_id,
                                            str(fix.get("pattern_id") or ""),
                                            _event_time(verdict.error.ts),
                                            retry_pattern=FLAKY_PATTERN)
        except HealError as exc:  # unknown: the pass is not called flaky on a guess
            log.warning("apply: could not read the fixes applied since %s: %s",
                        verdict.error_id, exc)
            return f"heal could not tell whether a fix resolved it ({exc})"
        if row is None:
            return ""
        commit = str(row.get("commit") or "")
        return (f"fix {row['fix_id']} was applied here for error {row['error_id']} since "
                f"this error was seen{f' (as {commit[:10]})' if commit else ''}: it resolved "
                "this one too")

    def _try_steps(self, verdict: VerdictEvent, root: Path, fix: dict[str, Any],
                   trust: Trust) -> tuple[bool, str, list[dict[str, Any]]]:
        """Run one command/playbook fix and re-run the failing step: (held?, detail, steps)."""
        rendered = fix.get("rendered") or {}
        if fix.get("kind") == "command":
            steps = {"primary": [{"name": "fix", "argv": rendered.get("argv") or [],
                                  "timeout_s": rendered.get("timeout_s") or 60}]}
        else:
            steps = rendered.get("steps") or {}
        cwd = root / rel_cwd(verdict.error, root)
        problem = _step_path_problem(root, cwd, steps, verdict.params)
        if problem:  # checked again here: a symlink may have appeared since validation
            raise _Refused(f"nothing applied: {problem}")
        # only a command the operator's side vouches for is re-run (pipeline.trust)
        ctx = StepContext(root, dict(verdict.params), trust.command, cwd)
        before = _tree_state(root)
        result = PlaybookRunner(ctx).run(steps)
        if not result.ok:
            left = _left_behind(root, before)
            broken = cannot_run(result.steps)
            if broken is not None:  # the fix's own command is missing: a failed attempt
                return False, (f"{UNRUNNABLE} (step {broken.get('name')} exit 127: "
                               f"{str(broken.get('tail', ''))[-200:].strip()}): "
                               f"{result.detail}{left}"), result.steps
            return False, f"{result.detail}{left}", result.steps
        rerun = self._rerun(verdict, root, trust)
        if rerun is not None and rerun["exit_code"] != 0:
            return False, (f"{result.detail}, but the failing step still fails (exit "
                           f"{rerun['exit_code']}); escalated{_left_behind(root, before)}"), [
                *result.steps, rerun]
        what = "failing step passes again" if rerun else _no_rerun(verdict)
        durable = self._declare_dependency(root, rendered)
        return True, f"{result.detail}; {what}{durable}", [*result.steps,
                                                            *([rerun] if rerun else [])]

    def _declare_dependency(self, root: Path, rendered: dict[str, Any]) -> str:
        """The durable half of a package install a person approved: the manifest diff
        (pipeline.trust.packages.manifest_diff) applied to the working tree, left uncommitted
        for review. '' when there is none."""
        diff = rendered.get("manifest_diff")
        if not isinstance(diff, str) or not diff:
            return ""
        try:
            GitRepo(root).apply_diff(diff, root)
        except GitError as exc:
            return f"; the manifest diff did not apply ({exc}): add the dependency by hand"
        name = diff.split("\n", 1)[0].removeprefix("--- a/")
        return f"; {name} now declares it (uncommitted: review and commit it)"

    def _spend_budget(self, root: Path) -> str:
        """Count one fix application against today's budget; the refusal reason or ''."""
        budget = Budget(self.client, self.settings,
                        governed(self.settings, policy_for(root).current()).limits.budget())
        result = budget.try_spend("fix_applications", 1.0)
        if not result.allowed:
            return f"daily budget for fix applications used up ({result.used:g})"
        return ""

    def _rerun(self, verdict: VerdictEvent, root: Path, trust: Trust) -> dict[str, Any] | None:
        """Re-run the failing command, only when the operator's side vouches for it."""
        command = list(trust.command)
        if not command:
            return None
        cwd = root / rel_cwd(verdict.error, root)
        # the operator's limits.check_timeout_s bounds it: a repository may only lower it
        timeout = governed(self.settings, policy_for(root).current()).check_timeout_s \
            or RERUN_TIMEOUT_S
        run = run_argv(command, str(cwd), timeout)
        return {"name": "re-run failing step", "ok": run["exit_code"] == 0, **run}

    def _record_revert(self, verdict: VerdictEvent) -> None:
        from pipeline.guardrails.alerts import alerting_breaker
        from pipeline.guardrails.breaker import error_scope

        # the shared breaker's thresholds: the operator's [breaker], never a repository's
        config = operator_config(self.settings).limits.breaker()
        alerting_breaker(self.client, self.settings, config,
                         getattr(self.store, "db", None)).record_revert(  # a trip notifies
            *error_scope(verdict.error), event_id=verdict.error_id)


def _revert(repo: GitRepo, head: str, changed: list[str], reason: str) -> str:
    """``git revert`` of ``head``; returns the revert commit.

    Raises:
        GitError: the revert cannot be made (nothing of the user's was discarded: with
            uncommitted changes in the fix's files, a revert that could conflict with them
            is not even tried).
    """
    dirty = [path for path in changed if repo.is_dirty([path])]
    if dirty:
        raise GitError(f"uncommitted changes in {', '.join(dirty[:5])} (made by the re-run?) "
                       "are in the way of git revert; heal does not discard them")
    return repo.revert(head, reason)


def _held(marker: Any) -> bool:
    """``marker`` is an apply in progress (``in-progress`` or ``in-progress:<holder>``)."""
    return isinstance(marker, bytes) and (marker == IN_PROGRESS
                                          or marker.startswith(IN_PROGRESS + b":"))


class _Lease:
    """This worker's apply marker, refreshed by a thread while the apply runs (so it lapses
    LEASE_TTL_S after the worker dies, never while it lives and reaches Redis)."""

    def __init__(self, client: redis.Redis, key: str, marker: bytes, prefix: str) -> None:
        self.client, self.key, self.marker, self.prefix = client, key, marker, prefix
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    def holder(self) -> str:
        return self.marker.partition(b":")[2].decode("utf-8", "replace")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="heal-apply-lease")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _refresh(self) -> bool:
        kept = self.client.eval(_REFRESH_LUA, 1, self.key, self.marker,
                                int(LEASE_TTL_S * 1000))
        return bool(kept)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(LEASE_TTL_S / 3):
            try:
                if not self._refresh():
                    self._lost = True
                    return
            except redis.RedisError as exc:  # it may come back before the lease lapses
                log.debug("apply: could not refresh the claim %s: %s", self.key, exc)

    def held(self) -> bool:
        """Still this worker's (checked in Redis).

        Raises: StreamUnavailable."""
        if self._lost:
            return False
        try:
            return bool(self._refresh())
        except redis.RedisError as exc:
            raise redis_failure(exc, "apply", self.prefix) from exc

    def release(self) -> None:
        """Delete the marker if it is still this worker's (never a peer's that took over)."""
        self.stop()
        try:
            self.client.eval(_RELEASE_LUA, 1, self.key, self.marker)
        except redis.RedisError as exc:
            log.warning("apply: could not release the claim %s: %s", self.key, exc)


class _Refused(Exception):
    """A fix's steps name a path outside the repository: it is not run at all."""


def _decoded(marker: Any) -> OutcomeEvent | None:
    """The outcome a done marker holds; None for none, or for one that does not decode."""
    try:
        return OutcomeEvent.decode(marker) if isinstance(marker, bytes) else None
    except DecodeError:
        return None


def fallbacks(fix: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen fix, then its ranked alternatives that may run without a person (playbooks
    and commands, never RISKY: those wait for `heal apply`)."""
    # a package install among the alternatives was never bounded by validate (declared
    # names only, pipeline.trust.packages): it waits for a person like RISKY ones
    alternatives = [a for a in fix.get("alternatives") or []
                    if isinstance(a, dict) and a.get("kind") in ("playbook", "command")
                    and a.get("category") != "RISKY" and install_target(a) is None]
    return [fix, *alternatives]


def _step_path_problem(root: Path, cwd: Path, steps: dict[str, Any],
                       params: dict[str, Any]) -> str | None:
    """Why a path among the steps' arguments and the parameters leaves the repository."""
    from pipeline.validate.paths import fix_escape

    values = [str(a) for phase in steps.values() if isinstance(phase, list)
              for step in phase if isinstance(step, dict)
              for a in (step.get("argv") or [])[1:]]
    values += [v for v in params.values() if isinstance(v, str)]
    return fix_escape(root, cwd, values)


def _passed(verdict: VerdictEvent) -> bool:
    """The verification runs of ``verdict`` show the fix passed (failure gone, nothing
    regressed): a reject then came after verification (the judges, the fix's state)."""
    try:
        return judge_runs(list(verdict.verification))[0]
    except (KeyError, TypeError):  # runs without a name or exit status: not shown
        return False


def _tree_state(root: Path) -> set[bytes] | None:
    """The ``git status`` entries of the working tree (untracked included), or None when git
    cannot say (:mod:`pipeline.treestate`, which digests the same listing)."""
    listing = status_listing(root)
    return None if listing is None else set(status_entries(listing))


def _left_behind(root: Path, before: set[bytes] | None) -> str:
    """What a fix that was not kept changed in the user's working tree (files it created
    or modified since ``before``), said so the person can review or delete them: heal does
    not delete what it cannot tell apart from the user's own work ('' when nothing)."""
    after = _tree_state(root)
    if before is None or after is None:
        return ""
    names = (os.fsdecode(entry[3:]) for entry in after - before)
    # a name as git's own listing quotes it when it holds a control or undecodable byte
    changed = sorted(n if n.isprintable() else ascii(n) for n in names)
    if not changed:
        return ""
    more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
    return (f"; the fix's steps left {', '.join(changed[:8])}{more} in the working tree "
            "(uncommitted, not removed: review or delete)")


def _seen_tree(verdict: VerdictEvent) -> str:
    """The working tree's digest ``heal run`` recorded with the error ('' without one: an
    event of another producer)."""
    tags = verdict.error.tags if isinstance(verdict.error.tags, dict) else {}
    seen = tags.get(TREE_TAG)
    return seen if isinstance(seen, str) and seen.startswith(TREE_PREFIXES) else ""


def _verified_tree(verdict: VerdictEvent) -> tuple[bool, str | None]:
    """(recorded?, digest) of the working tree when verification took the snapshot its
    "before" run ran in (:class:`pipeline.validate.verify.Verifier`; None: git could not say
    then). Not recorded: a verdict of an older heal, or an error without ``tags.tree_state``."""
    for run in verdict.verification:
        if (isinstance(run, dict) and run.get("phase") == "before"
                and run.get("name") == "failing-command" and TREE_TAG in run):
            found = run[TREE_TAG]
            return True, found if isinstance(found, str) else None
    return False, None


def _tree_now(verdict: VerdictEvent, root: Path | None, home: Path | None) -> str | None:
    """The working tree's digest now, when the error carries one to compare it with
    (``home``: HEAL_HOME, left out of it as ``heal run`` leaves it out)."""
    if root is None or not _seen_tree(verdict):
        return None
    return tree_digest(root, home)


def _event_time(ts: str) -> dt.datetime | None:
    """The event's ISO time (None when it is not one)."""
    try:
        when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _no_rerun(verdict: VerdictEvent) -> str:
    if verdict.error.command:
        return "the event's command is not trusted, so it was not re-run"
    return "no command to re-run"


def settle_outcomes(settings: Settings, client: redis.Redis) -> None:
    """Record published outcomes now when no lifecycle worker runs (``heal apply`` has no
    workers of its own, like ``heal run`` it runs the stage in this process).

    Raises: StreamUnavailable.
    """
    from pipeline.runtime import drain_inline, live_stages

    if "lifecycle" not in set(live_stages(client, settings)):
        drain_inline(settings, client, stages=["lifecycle"])


def _unverified(reason: str) -> str:
    """What a suggestion that was not verified in a worktree says about it (truthfully: a
    taught command that changed no file there did run once, to be verified)."""
    if RAN_UNCHANGED in reason:
        return (f"not verified: the {RAN_UNCHANGED} (it acts outside the repository); it runs "
                "again only when applied, then the failing step is re-run")
    if NOT_RUN_HERE in reason:
        return ("not verified, not run: a taught command matched outside the repository it "
                "was taught in, not exactly; it runs only when applied")
    return "not verified yet (checked step by step when applied)"
