"""The apply stage's logic: verdict -> outcome.

- ``apply`` verdicts with a verified commit: bring the commit onto the working branch (fast-
  forward or cherry-pick, never a rewrite), re-run the failing step; when it still fails,
  ``git revert`` it, count the revert in the breaker and escalate.
- playbooks (and command fixes that change no file): run step by step where the error
  happened (:mod:`pipeline.apply.playbook`), then re-run the failing step.
- ``suggest`` leaves the verified branch and says ``heal apply FIX_ID``.
- Flaky failures are never credited to a fix: a verification whose "before" run passed, or a
  failing step that passes on a plain re-run before a playbook/command runs, gives the outcome
  ``flaky`` (nothing changed; the lifecycle records it as evidence of non-determinism).
- A fix is never applied twice for one error: a Redis done marker (SET NX) plus the
  ``apply_results`` row guard every action; a redelivered verdict returns the first outcome.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from pipeline.apply.playbook import PlaybookRunner, StepContext
from pipeline.config import Settings
from pipeline.errors import DecodeError, GitError, Retry, StreamUnavailable
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.gitops import GitRepo
from pipeline.trust.boundary import Trust, assess
from pipeline.trust.packages import install_target
from pipeline.validate.audit import audit, audit_before_acting
from pipeline.validate.runner import run_argv
from pipeline.validate.verify import failure_reproduced, rel_cwd

log = logging.getLogger(__name__)

DONE_TTL_S = 30 * 24 * 3600
IN_PROGRESS_TTL_S = 900
RERUN_TIMEOUT_S = 300.0


class Applier:
    def __init__(self, settings: Settings, client: redis.Redis, store: Any = None) -> None:
        self.settings = settings
        self.client = client
        self.store = store

    # -- idempotency ----------------------------------------------------------------------
    def _key(self, error_id: str) -> str:
        return self.settings.key("apply", "done", error_id)

    def _claim(self, error_id: str) -> OutcomeEvent | None:
        """Take the apply marker, or return the outcome already decided.

        Raises:
            Retry: another worker is applying this error right now.
            StreamUnavailable: Redis unreachable.
        """
        key = self._key(error_id)
        try:
            if self.client.set(key, b"in-progress", nx=True, ex=IN_PROGRESS_TTL_S):
                return None
            raw = self.client.get(key)
        except redis.RedisError as exc:
            raise StreamUnavailable(f"apply: Redis unreachable: {exc}") from exc
        if raw == b"in-progress":
            raise Retry("this error is being applied by another worker", delay=5.0)
        try:
            return OutcomeEvent.decode(raw) if isinstance(raw, bytes) else None
        except DecodeError:
            return None

    def _finish(self, outcome: OutcomeEvent, extra: dict[str, Any] | None = None,
                replace_suggested: bool = False) -> OutcomeEvent:
        try:
            self.client.set(self._key(outcome.error_id), outcome.encode(), ex=DONE_TTL_S)
        except redis.RedisError as exc:
            raise StreamUnavailable(f"apply: Redis unreachable: {exc}") from exc
        audit(self.settings, self.store, "apply", outcome.error_id, {
            "fix_id": outcome.fix_id, "status": outcome.status, "detail": outcome.detail[:500],
            "commit": outcome.commit, "revert_commit": (extra or {}).get("revert_commit", "")})
        if self.store is not None:
            self.store.record_apply(outcome.error_id, {
                "fix_id": outcome.fix_id, "status": outcome.status, "detail": outcome.detail,
                "branch": outcome.branch, "commit": outcome.commit, **(extra or {}),
            }, replace_suggested=replace_suggested)
        return outcome

    # -- entry points ---------------------------------------------------------------------
    def handle(self, verdict: VerdictEvent) -> OutcomeEvent:
        done = self._claim(verdict.error_id)
        if done is not None:
            return done
        started = time.monotonic()
        try:
            outcome, extra = self._outcome(verdict)
        except BaseException:
            self.client.delete(self._key(verdict.error_id))  # let a retry try again
            raise
        outcome = replace(outcome, duration_s=round(time.monotonic() - started, 3))
        return self._finish(outcome, extra)

    def apply_suggested(self, verdict: VerdictEvent) -> OutcomeEvent:
        """``heal apply``: turn a 'suggested' outcome into an applied (or rolled back) one."""
        started = time.monotonic()
        refusal = self._audit_intent(verdict)
        if refusal:
            return self._base(verdict, "escalated", refusal)
        outcome, extra = self._apply(verdict)
        outcome = replace(outcome, duration_s=round(time.monotonic() - started, 3))
        return self._finish(outcome, extra, replace_suggested=True)

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
                      else "not verified yet (checked step by step when applied)")
            fix_id = (verdict.fix or {}).get("id", "")
            return self._base(verdict, "suggested",
                              f"{detail}; apply with: heal apply {fix_id}"), {}
        if d == "reject":
            if failure_reproduced(verdict.verification) is False:
                return self._base(verdict, "flaky", "flaky: the failing command passed in a "
                                  "clean worktree without any fix; no fix applied or credited "
                                  "(a re-run is the remedy)"), {}
            verified = any(r.get("phase") == "after" for r in verdict.verification)
            if verified:
                # committed on a heal branch in a worktree, did not survive verification, the
                # branch was discarded: a failed attempt that never reached the user's branch
                # ("rolled_back" is kept for reverts of commits that did reach it)
                return self._base(verdict, "failed", "did not survive verification, rolled "
                                  f"back (heal branch discarded): {verdict.reason}"), {}
            status = "skipped" if "identical request" in verdict.reason else "escalated"
            return self._base(verdict, status, verdict.reason), {}
        if d == "apply":
            refusal = self._audit_intent(verdict)
            if refusal:
                return self._base(verdict, "escalated", refusal), {}
            return self._apply(verdict)
        return self._base(verdict, "skipped", f"unknown decision {d!r}"), {}

    def _audit_intent(self, verdict: VerdictEvent) -> str:
        """Fail closed: the intent is audited before anything changes ("" when it was)."""
        return audit_before_acting(self.settings, self.store, "apply.intent", verdict.error_id, {
            "fix_id": str((verdict.fix or {}).get("id", "")), "decision": verdict.decision})

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
        refused = self._spend_budget()
        if refused:
            return self._base(verdict, "suggested", f"{refused}; apply later with: heal apply "
                              f"{(verdict.fix or {}).get('id', '')}"), {}
        fix = verdict.fix or {}
        if fix.get("kind") == "playbook" or not verdict.commit:
            return self._run_steps(verdict, root, fix, trust)
        return self._apply_commit(verdict, GitRepo(root), trust)

    def _apply_commit(self, verdict: VerdictEvent, repo: GitRepo,
                      trust: Trust) -> tuple[OutcomeEvent, dict[str, Any]]:
        changed = repo.changed_files(verdict.commit)
        if repo.is_dirty(changed):
            return self._base(verdict, "suggested", "uncommitted changes in "
                              f"{', '.join(changed)}; left on branch {verdict.branch}: "
                              f"heal apply {(verdict.fix or {}).get('id', '')}"), {}
        try:
            head = repo.bring_onto_current(verdict.commit)
        except GitError as exc:
            return self._base(verdict, "escalated", f"could not apply: {exc}"), {}
        rerun = self._rerun(verdict, repo.root, trust)
        if rerun is None or rerun["exit_code"] == 0:
            what = "failing step passes again" if rerun else _no_rerun(verdict)
            out = replace(self._base(verdict, "applied", f"applied as {head[:10]}; {what}"),
                          commit=head)
            return out, {"steps": [rerun] if rerun else []}
        revert = repo.revert(head, f"heal: the failing step still fails after the fix "
                             f"(exit {rerun['exit_code']}); rolled back")
        self._record_revert(verdict)
        out = replace(self._base(verdict, "rolled_back", (
            f"still failing after applying (exit {rerun['exit_code']}); reverted by "
            f"{revert[:10]}; escalated to a human")), commit=head)
        return out, {"revert_commit": revert, "steps": [rerun]}

    def _run_steps(self, verdict: VerdictEvent, root: Path, fix: dict[str, Any],
                   trust: Trust) -> tuple[OutcomeEvent, dict[str, Any]]:
        plain = self._rerun(verdict, root, trust)
        if plain is not None and plain["exit_code"] == 0:
            # the failure does not reproduce: crediting the fix would reward luck
            return self._base(verdict, "flaky", "flaky: the failing step passed on a plain "
                              "re-run before any fix ran; nothing applied, no fix credited"), {
                "steps": [{**plain, "name": "plain re-run (does the failure reproduce?)"}]}
        failed: list[str] = []
        log: list[dict[str, Any]] = []
        details: list[str] = []
        for n, candidate in enumerate(fallbacks(fix)):
            fix_id = str(candidate.get("id", ""))
            if n:  # the fallback is one more application: it must fit in the budget too
                refused = self._spend_budget()
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
        self._record_revert(verdict)
        return replace(self._base(verdict, "escalated", "; ".join(details)),
                       failed_fixes=failed[1:]), {"steps": log}

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
        result = PlaybookRunner(ctx).run(steps)
        if not result.ok:
            return False, result.detail, result.steps
        rerun = self._rerun(verdict, root, trust)
        if rerun is not None and rerun["exit_code"] != 0:
            return False, (f"{result.detail}, but the failing step still fails (exit "
                           f"{rerun['exit_code']}); escalated"), [*result.steps, rerun]
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

    def _spend_budget(self) -> str:
        """Count one fix application against today's budget; the refusal reason or ''."""
        try:
            from pipeline.guardrails.budget import Budget
        except ImportError:
            return ""
        result = Budget(self.client, self.settings).try_spend("fix_applications", 1.0)
        if not result.allowed:
            return f"daily budget for fix applications used up ({result.used:g})"
        return ""

    def _rerun(self, verdict: VerdictEvent, root: Path, trust: Trust) -> dict[str, Any] | None:
        """Re-run the failing command, only when the operator's side vouches for it."""
        command = list(trust.command)
        if not command:
            return None
        cwd = root / rel_cwd(verdict.error, root)
        from pipeline.policy import policy_for

        timeout = policy_for(root).current().check_timeout_s or RERUN_TIMEOUT_S
        run = run_argv(command, str(cwd), timeout)
        return {"name": "re-run failing step", "ok": run["exit_code"] == 0, **run}

    def _record_revert(self, verdict: VerdictEvent) -> None:
        from pipeline.guardrails.alerts import alerting_breaker

        wf = verdict.error.workflow
        alerting_breaker(self.client, self.settings).record_revert(  # a trip notifies
            wf.step or None, wf.id or None, event_id=verdict.error_id)


class _Refused(Exception):
    """A fix's steps name a path outside the repository: it is not run at all."""


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


def _no_rerun(verdict: VerdictEvent) -> str:
    if verdict.error.command:
        return "the event's command is not trusted, so it was not re-run"
    return "no command to re-run"
