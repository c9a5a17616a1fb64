"""The validate stage's logic: candidate fix -> verdict (pre-flight, verification, judges).

Decisions: ``observe`` (mode observe), ``escalate`` (nothing mechanical to do), ``reject``
(a pre-flight check, the verification or a judge said no), ``suggest`` (verified; a human
applies it with ``heal apply``), ``apply`` (verified and the mode allows applying it).
Redelivery of the same candidate returns the verdict already decided (cached in Redis).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import redis

from pipeline.branch_record import forget
from pipeline.branches import prune_quietly, retention_of
from pipeline.config import Settings
from pipeline.errors import AccessRefused, DecodeError, GitError, HealError, StreamUnavailable
from pipeline.events import CandidateEvent, ErrorEvent, VerdictEvent
from pipeline.fixes.alternatives import with_alternatives
from pipeline.fixes.scope import scoped
from pipeline.gitops import GitRepo
from pipeline.guardrails.budget import Budget
from pipeline.guardrails.gate import WorkflowGate, gate_for
from pipeline.lifecycle.graduation import DRAFT_NOTE
from pipeline.model import Category, FixKind, Mode
from pipeline.policy import Policy, policy_for
from pipeline.runtime.connection import redis_failure
from pipeline.trust.boundary import Trust, assess, event_root, no_root_reason
from pipeline.trust.operator import lower_mode, refusal_note, restrict
from pipeline.trust.packages import review_install
from pipeline.trust.seal import seal, unseal
from pipeline.validate.audit import audit_witnessed_later, write_witness
from pipeline.validate.judges import Evidence, Vote, collect_votes, needs_human
from pipeline.validate.manager import MANAGER_NOTE, managed_fix
from pipeline.validate.owner import owner_token
from pipeline.validate.preflight import Preflight
from pipeline.validate.request import FixRequest
from pipeline.validate.rqjobs import CheckQueue
from pipeline.validate.verify import (
    Verification,
    Verifier,
    failure_reproduced,
    rel_cwd,
    taught_elsewhere,
)

log = logging.getLogger(__name__)
VERDICT_TTL_S = 7 * 24 * 3600
VERDICT_CACHE_ROLE = "verdict-cache"
#: how a verdict the mode would have applied, but a guardrail held back, begins
HELD = "not applied automatically: "
#: how a reject because the fix failed verification begins (any other reject of a verified
#: fix, the judges' refusal, is not the fix failing)
VERIFICATION_FAILED = "verification failed: "


def effective_mode(policy: Policy, candidate: CandidateEvent, trust: Trust,
                   ceiling: Mode | None = None) -> Mode:
    """``tags.mode`` may lower the policy's mode; only an attested ``heal run --mode`` (the
    operator's own choice) may raise it, up to ``ceiling`` (the operator's
    ``trust.max_mode``, or ``suggest`` when the repository's checks could not be honoured)."""
    tag = candidate.error.tags.get("mode") if isinstance(candidate.error.tags, dict) else None
    return lower_mode(trust.mode(policy.mode, tag, ceiling), ceiling or Mode.AUTO)


def repo_root(error: ErrorEvent) -> Path | None:
    """The git work tree the error happened in (``tags.cwd`` or ``repo.path``), or None."""
    return event_root(error)


#: delete the dedupe marker only while it still names this error (another may hold it now)
_RELEASE_IF_MINE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) end return 0")
#: drop the in-flight owner while this error holds the marker and this process owns it
_RELEASE_INFLIGHT = ("if redis.call('get', KEYS[1]) == ARGV[1] and "
                     "redis.call('get', KEYS[2]) == ARGV[2] then "
                     "return redis.call('del', KEYS[2]) end return 0")


class Validator:
    def __init__(self, settings: Settings, client: redis.Redis, store: Any = None,
                 checks: CheckQueue | None = None) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.checks = checks or CheckQueue(client, settings.key("verify"),
                                            prefix=settings.prefix)
        self.preflight = Preflight(settings, client)
        self.verifier = Verifier(self.checks, settings.home / "worktrees", settings.home)

    def validate(self, cand: CandidateEvent) -> VerdictEvent:
        """Raises StreamUnavailable when Redis is unreachable (the runtime retries)."""
        cached = self._cached(cand)
        if cached is not None:
            # a retry (PostgreSQL was down when it was recorded, say) never re-runs a
            # finished verification: it only writes what is still unwritten
            self._flush_pending_record(cand.error_id)
            return cached
        verdict = self._decide(cand)
        self._remember(verdict)
        return verdict

    def _pending_key(self, error_id: str) -> str:
        return self.settings.key("validate", "unrecorded", error_id)

    def _flush_pending_record(self, error_id: str) -> None:
        """Raises: DatabaseUnavailable (the runtime parks the event until it is back)."""
        if self.store is None:
            return
        try:
            raw = self.client.get(self._pending_key(error_id))
        except redis.RedisError as exc:
            raise self._redis_failure(exc) from exc
        if isinstance(raw, bytes):
            pending = orjson.loads(raw)
            if "row" not in pending:  # kept by an older heal: the row alone
                pending = {"row": pending, "audit": None}
            self._write_pending(pending["row"], pending.get("audit"))
            try:
                self.client.delete(self._pending_key(error_id))
            except redis.RedisError as exc:
                raise self._redis_failure(exc) from exc

    def _redis_failure(self, exc: redis.RedisError) -> AccessRefused | StreamUnavailable:
        """What a failed Redis command of this stage raises: the ACL's refusal (NOPERM) as
        the refusal it is (the stage stops, saying what to grant), anything else as an
        outage (the event is parked until Redis answers again)."""
        return redis_failure(exc, "validate", self.settings.prefix)

    def _write_pending(self, row: dict[str, Any], witness: dict[str, Any] | None) -> None:
        """The attempt row and, when PostgreSQL was down at the verdict, the audit table's
        record of it (the file's was written then). Raises DatabaseUnavailable."""
        if witness is not None:
            write_witness(self.settings, self.store, witness, self.client)
            # written: a failure of the row below must not write the record twice
            try:
                self.client.set(self._pending_key(str(row["error_id"])),
                                orjson.dumps({"row": row, "audit": None}, default=str),
                                ex=VERDICT_TTL_S)
            except redis.RedisError as exc:
                raise self._redis_failure(exc) from exc
        self.store.record_attempt(row)

    # -- redelivery ------------------------------------------------------------------------
    def _verdict_key(self, error_id: str) -> str:
        return self.settings.key("validate", "verdict", error_id)

    def _cached(self, cand: CandidateEvent) -> VerdictEvent | None:
        try:
            raw = self.client.get(self._verdict_key(cand.error_id))
        except redis.RedisError as exc:
            raise self._redis_failure(exc) from exc
        if not isinstance(raw, bytes):
            return None
        body = unseal(self.settings, VERDICT_CACHE_ROLE, raw)
        if body is None:  # not written by a validate stage holding the key: decide afresh
            log.warning("trust: ignoring an unsealed cached verdict for %s", cand.error_id[:80])
            return None
        try:
            return VerdictEvent.decode(body)
        except DecodeError:
            return None

    def _remember(self, verdict: VerdictEvent) -> None:
        try:
            self.client.set(self._verdict_key(verdict.error_id),
                            seal(self.settings, VERDICT_CACHE_ROLE, verdict.encode()),
                            ex=VERDICT_TTL_S)
        except redis.RedisError as exc:
            raise self._redis_failure(exc) from exc

    def _attempt(self, fingerprint: str, error_id: str) -> int:
        key = self.settings.key("validate", "attempt", error_id)
        try:
            existing = self.client.get(key)
            if existing is not None:
                return int(existing)
            n = int(self.client.incr(self.settings.key("validate", "attempts", fingerprint)))
            self.client.set(key, n, nx=True, ex=VERDICT_TTL_S)
            return int(self.client.get(key) or n)
        except redis.RedisError as exc:
            raise self._redis_failure(exc) from exc

    # -- the decision ----------------------------------------------------------------------
    def _decide(self, cand: CandidateEvent) -> VerdictEvent:
        base = VerdictEvent(id=f"{cand.error_id}:validate", error_id=cand.error_id,
                            error=cand.error, fine=cand.fine, fix=cand.fix, params=cand.params)
        trust = assess(cand.error, self.settings)
        root = trust.root
        # only a repository that passes the trust check has its policy recorded in (and read
        # back from) the state home: an event naming any repository must not make heal keep
        # that repository's file
        loader = policy_for(root, trusted=trust.repo_trusted) if root else None
        policy, warnings, ceiling = restrict(
            loader.current() if loader else Policy(), trust.operator)
        verdict = self._decide_mode(base, cand, root, policy, trust, warnings, ceiling)
        if loader is not None and loader.warning:  # the file is invalid: say what is in force
            verdict = replace(verdict, reason=f"{verdict.reason}; {loader.warning}")
        return verdict

    def _decide_mode(self, base: VerdictEvent, cand: CandidateEvent, root: Path | None,
                     policy: Policy, trust: Trust, warnings: list[str],
                     ceiling: Mode | None) -> VerdictEvent:
        mode = effective_mode(policy, cand, trust, ceiling)
        if mode == Mode.OBSERVE:
            note = f"; {refusal_note(trust.operator)}" if trust.operator.refused else ""
            return replace(base, decision="observe", reason=f"mode observe: detected only{note}")
        gate = gate_for(self.client, self.settings, cand.error, policy)
        return with_note(self._decide_under(base, cand, root, policy, mode, gate, trust,
                                            warnings), gate)

    def _decide_under(self, base: VerdictEvent, cand: CandidateEvent, root: Path | None,
                      policy: Policy, mode: Mode, gate: WorkflowGate, trust: Trust,
                      warnings: list[str]) -> VerdictEvent:
        fix = cand.fix
        if cand.match.get("ignored"):
            return replace(base, decision="observe", reason=str(cand.match.get("reason", "")))
        if not fix:
            return replace(base, decision="escalate", reason=_no_fix(cand))
        if fix.get("kind") == FixKind.ESCALATE:
            msg = (fix.get("rendered") or {}).get("message") or fix.get("explanation") or ""
            return replace(base, decision="escalate", reason=f"needs a human: {msg}".strip())
        if root is None:
            return replace(base, decision="escalate",
                           reason=f"{no_root_reason(cand.error)}, so no fix can be verified")
        if not trust.repo_trusted:
            log.warning("trust: refused to act on error %s: %s", cand.error_id[:80],
                        trust.reason)
            return replace(base, decision="observe", reason=(
                f"diagnosed only, not acted on: {trust.reason}; to let heal act here, add "
                "the repository root to [trust] repos in the operator configuration "
                "($HEAL_HOME/heal.toml or HEAL_CONFIG), or run the command with heal run"))
        hold = ""
        review = review_install(fix, root, trust.command, root / rel_cwd(cand.error, root),
                                trust.operator.packages)
        if review is not None:  # pip install NAME: bounded (pipeline.trust.packages)
            fix, base = review.fix, replace(base, fix=review.fix)
            warnings = [*warnings, f"package install: {review.reason}"]
            hold = "" if review.unattended else review.reason
        hold = hold or taught_elsewhere(fix, cand.match, root)
        fix, unscoped = scoped_fix(fix, trust.command, root, root / rel_cwd(cand.error, root))
        fix, unmanaged, chosen = managed_fix(fix, root, root / rel_cwd(cand.error, root))
        if unmanaged:  # the repository's manager is unknown, ambiguous or not installed
            return replace(base, decision="escalate", reason=f"needs a human: {unmanaged}")
        warnings = [*warnings, chosen] if chosen else warnings
        if fix is not cand.fix:  # the verdict carries what runs: apply runs that, no more
            base = replace(base, fix=fix)
        req = FixRequest(cand, fix, root, policy, trusted_command=trust.command,
                         trust_note=trust.reason, hold=hold, mode=str(mode.value),
                         unscoped=unscoped)
        return self._validate_fix(base, req, mode, gate, warnings)

    def _validate_fix(self, base: VerdictEvent, req: FixRequest, mode: Mode,
                      gate: WorkflowGate,
                      trust_warnings: list[str] | None = None) -> VerdictEvent:
        """Pre-flight, verification, judges. When this raises, nothing was decided: the
        dedupe marker pre-flight set for this request is released (when it is still this
        error's), so a retry or the next run is not refused as a duplicate of it."""
        try:
            return self._validate_checked(base, req, mode, gate, trust_warnings)
        except Exception:
            self._release_dedupe(req)
            raise
        finally:  # decided or released: no longer in flight in this process
            self._release_inflight(req)

    def _release_dedupe(self, req: FixRequest) -> None:
        self._release(_RELEASE_IF_MINE, [self.preflight.dedupe_key(req)],
                      [req.candidate.error_id])

    def _release_inflight(self, req: FixRequest) -> None:
        """The in-flight owner is dropped only by the request holding the dedupe marker
        (another request of this process may have been refused as its duplicate)."""
        self._release(_RELEASE_INFLIGHT, [self.preflight.dedupe_key(req),
                                          self.preflight.inflight_key(req)],
                      [req.candidate.error_id, owner_token()])

    def _release(self, script: str, keys: list[str], args: list[str]) -> None:
        if self.preflight.client is None:
            return
        try:
            self.client.eval(script, len(keys), *keys, *args)
        except redis.RedisError as exc:  # the marker then expires with its TTL
            log.warning("validate: could not release %s: %s", keys[-1][:120], exc)

    def _validate_checked(self, base: VerdictEvent, req: FixRequest, mode: Mode,
                          gate: WorkflowGate,
                          trust_warnings: list[str] | None = None) -> VerdictEvent:
        checks = self.preflight.run(req)
        warning = policy_for(req.root).warning
        if warning:  # still validated, under the last valid policy; say so with the evidence
            checks.append({"name": "policy", "ok": True, "reason": warning, "duration_s": 0.0})
        for note in [*(trust_warnings or []), *([req.trust_note] if req.trust_note else [])]:
            # the repository's package manager (pipeline.validate.manager) is its own row
            name = "package manager" if note.startswith(MANAGER_NOTE) else "trust"
            checks.append({"name": name, "ok": True, "reason": note.removeprefix(MANAGER_NOTE),
                           "duration_s": 0.0})
        failed = [c for c in checks if not c["ok"]]
        if failed:
            reason = "pre-flight refused: " + "; ".join(f"{c['name']}: {c['reason']}"
                                                        for c in failed)
            return self._record(with_note(replace(base, decision="reject", reason=reason,
                                                  preflight=checks), gate), req, mode, 0)
        attempt = self._attempt(req.fingerprint, req.candidate.error_id)
        try:
            ver = self.verifier.verify(req, attempt)
        except GitError as exc:
            ver = Verification(False, f"verification could not run: {exc}")
        budget = Budget(self.client, self.settings, req.policy.limits.budget())
        self._record_spend(budget, ver)
        history = self._history(req.fix_id)
        votes = collect_votes(Evidence(req, checks, ver, history), strict=gate.strict)
        tokens = sum(v.tokens for v in votes)
        if tokens:
            budget.record("llm_tokens", float(tokens))
        decision, reason = decide(req, mode, ver, votes, gate)
        if decision == "reject" and ver.passed and ver.branch:
            # verified, then refused (judges, the fix's state): never to be applied, so heal's
            # branch goes as a failed verification's does (it held the fix's whole change:
            # a refused install committed node_modules there)
            repo = GitRepo(req.root)
            repo.run("branch", "-D", ver.branch, check=False)
            forget(repo, ver.commit)
            reason = f"{reason}; heal branch {ver.branch} discarded"
            ver = replace(ver, branch="", commit="")
        capped = [w for w in trust_warnings or [] if "capped at suggest" in w]
        if decision == "suggest" and capped:  # say why it was not applied by itself
            reason = f"{reason}; {capped[0]}"
        verdict = replace(base, decision=decision, reason=reason, preflight=checks,
                          verification=ver.runs, votes=[v.to_dict() for v in votes],
                          branch=ver.branch, commit=ver.commit if ver.passed else "")
        recorded = self._record(with_note(verdict, gate), req, mode, attempt)
        # the repository's [branches] retention, the branch just made spared
        prune_quietly(req.root, retention_of(req.policy.limits), spare=ver.branch)
        if ver.inconclusive and not ver.passed:
            # nothing was decided about the fix ("a re-run may verify it"): the next identical
            # request is not refused as a duplicate of this one
            self._release_dedupe(req)
        return recorded

    def _record_spend(self, budget: Budget, ver: Verification) -> None:
        minutes = sum(float(r.get("duration_s", 0.0)) for r in ver.runs) / 60
        if minutes:
            budget.record("verification_minutes", minutes)

    def _history(self, fix_id: str) -> dict[str, Any]:
        if self.store is None:
            return {}
        try:
            return dict(self.store.history(fix_id))
        except HealError as exc:
            log.warning("history unavailable: %s", exc)
            return {}

    def _record(self, verdict: VerdictEvent, req: FixRequest, mode: Mode,
                attempt: int) -> VerdictEvent:
        # the file record now; the table's too unless PostgreSQL is down, then by the retry
        witness = audit_witnessed_later(self.settings, self.store, "verdict", verdict.error_id, {
            "fix_id": req.fix_id, "fingerprint": req.fingerprint, "decision": verdict.decision,
            "reason": verdict.reason[:500], "votes": verdict.votes, "mode": mode.value,
            "commit": verdict.commit}, self.client)
        if self.store is not None:
            row = {
                "error_id": verdict.error_id, "fingerprint": req.fingerprint,
                "fix_id": req.fix_id, "attempt": attempt, "repo": str(req.root),
                "command": list(verdict.error.command), "decision": verdict.decision,
                "reason": verdict.reason, "category": req.category, "mode": mode.value,
                "branch": verdict.branch, "commit": verdict.commit,
                "preflight": verdict.preflight, "fix": req.fix, "votes": verdict.votes,
                "verification": verdict.verification,
                "verdict": verdict.encode().decode(),
            }
            # the verdict and its row are kept in Redis first: if PostgreSQL is down, the
            # retry writes the row and does not verify (or audit) a second time
            self._remember(verdict)
            try:
                self.client.set(self._pending_key(verdict.error_id),
                                orjson.dumps({"row": row, "audit": witness}, default=str),
                                ex=VERDICT_TTL_S)
            except redis.RedisError as exc:
                raise self._redis_failure(exc) from exc
            self._write_pending(row, witness)
            try:
                self.client.delete(self._pending_key(verdict.error_id))
            except redis.RedisError as exc:
                raise self._redis_failure(exc) from exc
        return verdict


def decide(req: FixRequest, mode: Mode, ver: Verification, votes: list[Vote],
           gate: WorkflowGate | None = None) -> tuple[str, str]:
    """(decision, reason) from the verification and the votes under ``mode``; ``gate`` (the
    workflow's execution state) may turn an automatic "apply" into a "suggest"."""
    if not ver.passed and ver.inconclusive:  # no evidence against the fix, nor for it
        return "escalate", (f"{ver.reason}; nothing applied or counted against the fix: a "
                            "re-run may verify it")
    if not ver.passed:
        return "reject", f"{VERIFICATION_FAILED}{ver.reason}"
    rejected = [v for v in votes if not v.approve]
    if rejected:
        return "reject", "judges refused: " + "; ".join(f"{v.judge}: {v.reason}"
                                                        for v in rejected)
    state = str(req.fix.get("state", "ACTIVE")).upper()
    if state in ("QUARANTINED", "DEPRECATED"):
        return "reject", f"fix is {state}: never applied until `heal unquarantine`"
    approvals = f"{len(votes)} judge(s) approved; {ver.reason}"
    if needs_human(req):
        return "suggest", (f"RISKY fix needs a human: heal apply {req.candidate.error_id}; "
                           f"{approvals}")
    if req.hold:
        argv = " ".join(str(a) for a in req.rendered.get("argv") or [])
        judged = approvals if ver.reason != req.hold else f"{len(votes)} judge(s) approved"
        return "suggest", (f"{req.hold}; a person approves it by name: heal apply "
                           f"{req.candidate.error_id} (runs: {argv}); {judged}")
    if ver.deferred and not req.trusted_command:
        # verified only when applied, by re-running the failing command: without a command
        # heal may trust, nothing would prove the fix, so a person decides
        return "suggest", (f"mode {mode.value}: the failing command is not trusted, so "
                           f"nothing would verify this fix when applied; a person decides: "
                           f"heal apply {req.candidate.error_id}; {approvals}")
    safe = req.category == Category.SAFE and state != "DRAFT"
    if (mode == Mode.AUTO_SAFE and safe) or (mode == Mode.AUTO and (safe or state == "AUTOMATED")):
        held = unproven_failure(ver) or automatic_refusal(req, gate)
        if held:
            return "suggest", (f"{HELD}{held}; run `heal apply {req.candidate.error_id}` to "
                               f"apply; {approvals}")
        return "apply", f"mode {mode.value}: {approvals}"
    # the error id, as heal run's decision line: `heal apply FIX_ID` is refused once several
    # suggestions of that fix wait (they may run different argv)
    why = not_automatic(mode, str(req.category), state)
    return "suggest", (f"mode {mode.value}: {why}run `heal apply {req.candidate.error_id}` "
                       f"to apply; {approvals}")


def not_automatic(mode: Mode, category: str, state: str) -> str:
    """Why a verified fix that ``mode`` could apply automatically was only suggested (ending
    in "; "), or '' when ``mode`` applies nothing automatically."""
    if mode not in (Mode.AUTO_SAFE, Mode.AUTO):
        return ""
    if category == Category.SAFE and state == "DRAFT":
        return f"not applied automatically: {DRAFT_NOTE}; "
    if mode == Mode.AUTO_SAFE:
        return (f"not applied automatically: the fix is {category}, and mode auto-safe "
                "applies SAFE fixes only; ")
    return (f"not applied automatically: the fix is {category} and {state}, and mode auto "
            "applies a fix that is not SAFE only once it is AUTOMATED (`heal explain` shows "
            "how far it is); ")


def with_note(verdict: VerdictEvent, gate: WorkflowGate) -> VerdictEvent:
    """Every decision under a DEGRADED or QUARANTINED workflow says so (once)."""
    note = gate.note()
    if not note or note in verdict.reason:
        return verdict
    return replace(verdict, reason=f"{verdict.reason}; {note}")


def unproven_failure(ver: Verification) -> str:
    """Why a fix verified in a worktree lacks the evidence an automatic application needs,
    or '': a run of the failing command without the fix that failed. Checks passing before
    and after prove only that the fix breaks nothing; an event naming a repository (forged,
    or a command heal may not run) would otherwise get a fix applied to an error nothing
    showed exists there. Fixes verified when applied (``deferred``) are judged there."""
    if ver.deferred or failure_reproduced(ver.runs):
        return ""
    return ("no run of the failing command showed the failure in this repository (it was "
            "not re-run: not trusted, or heal.toml verify.include_failing = false), so an "
            "automatic application has no evidence the fix is needed")


def automatic_refusal(req: FixRequest, gate: WorkflowGate | None) -> str:
    """Why a fix the mode would apply must wait for a person, or ''."""
    if req.unscoped:
        return req.unscoped
    match = req.candidate.match
    if match.get("via") == "coarse":
        return ("matched by its coarse fingerprint alone (a learned mapping, not a detection "
                "rule or the exact error): never enough for an automatic fix")
    if gate is None:
        return ""
    return gate.refusal(float(match.get("score", 1.0) if match else 1.0))


#: how the lookup says it matched a pattern but withheld its fix (pipeline.lookup.service)
_WITHHELD = re.compile(r"fix (\S+) is (QUARANTINED|DEPRECATED), not offered")


def _no_fix(cand: CandidateEvent) -> str:
    """Why a candidate has no fix: a matched pattern whose fix is withheld says so (and how
    to lift it), not "no known fix"."""
    withheld = _WITHHELD.search(str(cand.match.get("reason", "")))
    pattern = cand.match.get("pattern_id")
    if not pattern or withheld is None:
        return "no known fix for this error; queued for a human"
    fix_id, state = withheld.groups()
    lift = (f"`heal unquarantine {cand.fine or fix_id}` lets it be validated again"
            if state == "QUARANTINED" else "teach a better one with heal learn")
    return f"matched {pattern}, but its fix {fix_id} is {state}, so it is not offered; {lift}"


def scoped_fix(fix: dict[str, Any], command: tuple[str, ...], root: Path,
               cwd: Path) -> tuple[dict[str, Any], str]:
    """``fix`` with its command (and its alternatives') acting on the paths the failing
    command checked (pipeline.fixes.scope), and why it is held for a person or ''. An
    alternative whose scope cannot be told is dropped: it would run without a person."""
    rendered = fix.get("rendered")
    alternatives = fix.get("alternatives")
    if not isinstance(rendered, dict) or not (rendered.get("scope_of") or any(
            isinstance(a, dict) and (a.get("rendered") or {}).get("scope_of")
            for a in alternatives or [])):
        return fix, ""
    narrowed, held = scoped(rendered, command, root, cwd)

    def narrow(alt: dict[str, Any]) -> dict[str, Any] | None:
        alt_narrowed, alt_held = scoped(alt, command, root, cwd)
        return None if alt_held else alt_narrowed

    out = with_alternatives(fix, {**fix, "rendered": narrowed}, narrow)
    return out, held
