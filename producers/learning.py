"""What ``heal run`` tells the guardrails and the precedent learner after each run.

- A failure: the workflow's execution state (Redis) and, when the run happened in a git
  commit, the failure for the precedent learner (PostgreSQL ``step_failures``) with the fine
  fingerprint of its text, computed here with the same call and arguments as the fingerprint
  stage (``fingerprint_event(event)``: text, repository, exit code, signal), so both agree.
- A success: the execution state always (one Redis script); the precedent learner only when
  the step record says the previous run failed (``resolved``) *and* that failure was
  remembered for learning (a Redis marker per step), so a plain success never opens
  PostgreSQL. A step that failed and now passes on another commit yields a DRAFT diff fix.
- A success right after heal applied its own fix (`heal run`'s re-run, or a commit carrying
  heal's ``Heal-Fix`` trailer, e.g. from `heal apply`): the remembered failure is forgotten,
  not learned (heal already knows that fix).

The workflow is the event's ``workflow.id``, or ``repo:<repository path>`` when none is set,
so steps of the same name in two checkouts are never diffed against each other.

Nothing here may change the command's exit status: every engine problem becomes one line
(returned as a message for ``heal run`` to print).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import AccessRefused, HealError
from pipeline.events import ErrorEvent, Repo, Workflow
from pipeline.guardrails.execution import ExecutionGuard, workflow_name
from pipeline.guardrails.gate import policy_at
from pipeline.lifecycle.precedent import PrecedentLearner, PrecedentStore
from pipeline.lifecycle.steps import StepReport, record_step_result

#: the Redis marker "this step's last failure is remembered in PostgreSQL" lives this long
PENDING_TTL_S = 30 * 24 * 3600


def learning_workflow(workflow: Workflow, repo: Repo) -> str:
    """The workflow name the guard and the learner use (see the module docstring)."""
    return workflow_name(workflow.id, repo.path)


def open_learning_db(settings: Settings, start: bool) -> Any:
    """A migrated Database, or None when ``start`` is False and the embedded PostgreSQL is
    not running (a failure never starts an engine just to be remembered).

    Raises: DatabaseUnavailable, ConfigError.
    """
    from storage.engines import embedded_postgres, open_database

    if not start and not settings.database_url and embedded_postgres(settings).pid() is None:
        return None
    return open_database(settings, min_size=1, max_size=1)


def _repository(db: Any) -> PrecedentStore:
    from storage.lifecycle import PrecedentRepository

    return PrecedentRepository(db)


def _alerting_guard(client: Any, settings: Settings) -> ExecutionGuard:
    """The execution guard whose state changes notify a person (pipeline.guardrails.alerts)."""
    from pipeline.guardrails.alerts import alerting_audit

    try:
        return ExecutionGuard(client, settings, audit=alerting_audit(settings, client))
    except HealError:  # a bad HEAL_WEBHOOK_URL: the state is still kept and audited
        return ExecutionGuard(client, settings)


@dataclass
class StepLearning:
    """One ``heal run``'s link to the execution guard and the precedent learner."""

    client: Any
    settings: Settings
    #: how PostgreSQL is reached (tests swap in their own): (settings, start) -> db or None
    open_db: Callable[[Settings, bool], Any] = open_learning_db
    #: the precedent store over that database
    store: Callable[[Any], PrecedentStore] = _repository
    guard: Callable[[Any, Settings], ExecutionGuard] = _alerting_guard

    def _pending_key(self, step_key: str) -> str:
        return self.settings.key("learning", "pending", step_key)

    def failed(self, event: ErrorEvent, step_key: str) -> list[str]:
        """Record a failed run; returns the lines to print (problems, state changes)."""
        from pipeline.fingerprint import fingerprint_event

        fp = fingerprint_event(event)
        workflow = learning_workflow(event.workflow, event.repo)
        common = {"workflow": workflow, "step": event.workflow.step, "ok": False,
                  "kind": fp.coarse, "fingerprint": fp.fine, "repo_path": event.repo.path,
                  "commit": event.repo.commit, "event_id": event.id}
        if not (fp.fine and event.repo.commit):
            return self._guarded(None, common)  # nothing a learner could diff: Redis only
        return self._guarded(True, common, pending=step_key, start=False)

    def succeeded(self, workflow: Workflow, repo: Repo, step_key: str, resolved: str | None,
                  *, healed: bool = False) -> list[str]:
        """Record a successful run; ``resolved`` is the error id this success resolves (from
        the step record), ``healed`` says heal's own applied fix made it pass."""
        common = {"workflow": learning_workflow(workflow, repo), "step": workflow.step,
                  "ok": True, "repo_path": repo.path, "commit": repo.commit}
        if not resolved or not self._pending(step_key):
            return self._guarded(None, common)
        if healed or heal_commit(repo):
            lines = self._guarded(None, common)
            return lines + self._forget(common, step_key)
        return self._guarded(True, common, pending=step_key, start=True)

    # -- the calls ----------------------------------------------------------------------------

    def _guarded(self, learn: bool | None, common: dict[str, Any], *, pending: str = "",
                 start: bool = False) -> list[str]:
        db = None
        try:
            guard = self.guard(self.client, self.settings)
            if isinstance(guard, ExecutionGuard) and common.get("repo_path"):
                # the repository's heal.toml [execution] thresholds (hot reloaded)
                guard.policy = policy_at(common["repo_path"], self.settings).limits.execution()
            learner = None
            if learn:
                db = self.open_db(self.settings, start)
                if db is None:
                    # state only; a failure not remembered cannot be learned from later
                    report = record_step_result(guard, None, **common)
                    return _state_lines(report, common["workflow"]) + [
                        "not remembered for learning from precedent: the embedded "
                        "PostgreSQL is not running and a failure does not start it (keep it "
                        "running with `heal engines start` or `heal up`, or set "
                        "HEAL_DATABASE_URL)"]
                learner = PrecedentLearner(self.store(db))
            report = record_step_result(guard, learner, **common)
            if learner is not None and not (common["ok"] and report.learning_paused):
                # paused: the failure stays remembered, a later success may still teach it
                self._mark(pending, not common["ok"])
            return _state_lines(report, common["workflow"]) + _learned_lines(report)
        except AccessRefused as exc:  # the server is up: say what to grant, not an outage
            return ["could not update the execution state or learn from this run: Redis "
                    f"refused it ({exc})"]
        except HealError as exc:
            return [f"could not update the execution state or learn from this run ({exc})"]
        except Exception as exc:  # noqa: BLE001 - learning must never change CMD's status
            if os.environ.get("HEAL_DEBUG"):
                traceback.print_exc()
            return [f"learning from this run failed ({type(exc).__name__}: {exc})"]
        finally:
            if db is not None:
                db.close()

    def _forget(self, common: dict[str, Any], step_key: str) -> list[str]:
        """Drop the remembered failures of this step without learning (heal fixed it)."""
        db = None
        try:
            db = self.open_db(self.settings, True)
            if db is not None:
                store = self.store(db)
                for failure in store.failures_for_step(common["workflow"], common["step"]):
                    store.forget_failure(failure)
            self._mark(step_key, False)
            return []
        except HealError as exc:
            return [f"could not forget the failure heal fixed ({exc})"]
        except Exception as exc:  # noqa: BLE001 - learning must never change CMD's status
            return [f"forgetting the failure heal fixed failed ({type(exc).__name__}: {exc})"]
        finally:
            if db is not None:
                db.close()

    def _pending(self, step_key: str) -> bool:
        try:
            return bool(self.client.exists(self._pending_key(step_key)))
        except redis.RedisError:
            return False  # unknown: do not open PostgreSQL for nothing

    def _mark(self, step_key: str, pending: bool) -> None:
        if not step_key:
            return
        try:
            if pending:
                self.client.set(self._pending_key(step_key), "1", ex=PENDING_TTL_S)
            else:
                self.client.delete(self._pending_key(step_key))
        except redis.RedisError:
            pass  # the marker only saves a PostgreSQL round trip; losing it loses one lesson


def heal_commit(repo: Repo) -> bool:
    """Whether the commit the step passed on is one of heal's own fixes (``Heal-Fix``
    trailer: applied by `heal run` or `heal apply`); learning it would duplicate that fix."""
    if not (repo.path and repo.commit):
        return False
    from pipeline.gitops import GitRepo

    try:
        out = GitRepo(repo.path).run("log", "-1", "--format=%(trailers:key=Heal-Fix,valueonly)",
                                     repo.commit).stdout
    except HealError:
        return False
    return bool(out.strip())


def _state_lines(report: StepReport, workflow: str) -> list[str]:
    if report.before is report.after:
        return []
    why = f" ({report.reason})" if report.reason else ""
    return [f"workflow {workflow} is now {report.after.value}{why}"]


def _learned_lines(report: StepReport) -> list[str]:
    return [f"learned DRAFT fix {d['id']} from {d['from_commit'][:10]}..{d['to_commit'][:10]} "
            "(offered, after verification, when this error comes back)" for d in report.learned]
