"""``heal run -- CMD``: run a command; on failure publish the error and wait for the decision.

Flow: run (output passed through live) → success: record it for the step (see
:mod:`producers.steps`) and exit 0 → failure: publish an ErrorEvent (source ``subprocess``,
the tail of stdout+stderr as text, exit code, signal, git commit/branch of the working
directory), wait up to ``timeout`` seconds for the OutcomeEvent (running the stages in this
process when no workers serve them), print the decision; when a fix was applied and verified
(status ``applied``) run the command again and exit with its status, otherwise exit with the
original status. Redis being unreachable (or an engine heal cannot start, or a state home
it cannot create) never changes the command's exit status: heal says so on stderr and gets out
of the way. With ``--json``/``--json-file`` a decision JSON is written whatever happened after
the command ran, always with the same keys (``"decision": "not reported"`` when the error
could not be published, ``"interrupted"`` when Ctrl-C stopped the command); under a CI
provider those failures get their CI report too (:meth:`RunSession._report_plain`). A file
that cannot be written is a warning, never a change of the status. A command argument or
checkout path that is not UTF-8 is run as given and carried in the event as ``\\xNN``
(``tags.not_utf8``), unsigned (:meth:`RunSession._attested`); a workflow field (``--workflow``,
``--step``, the environment's) is carried the same way, and signed (no signature covers it).
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pipeline import stopsignals
from pipeline.config import Settings
from pipeline.errors import AccessRefused, ConfigError, EngineError, HealError, StateHomeFull
from pipeline.events import ErrorEvent, Repo, Source, Workflow, carried_fields, redacted_fields
from pipeline.redact import redact, redact_argv
from pipeline.treestate import TAG as TREE_TAG
from pipeline.treestate import tree_digest
from producers.context import (
    carried,
    carried_repo,
    exact_repo_info,
    hostname,
    inexact_workflow,
    is_exact,
    new_id,
    repo_info,
    workflow_from_env,
)
from producers.decision import Decision, DecisionWaiter
from producers.interceptor import RunResult, Stopped, run_command, stop_signals
from producers.learning import StepLearning
from producers.progress import Progress
from producers.publisher import Publisher, connect, partition_of
from producers.steps import StepRecorder, step_key

if TYPE_CHECKING:
    from pipeline.ci.report import RunReport

DEFAULT_TIMEOUT_S = 120.0
#: what, after the command ran, keeps heal from reporting but never changes the exit status:
#: an engine that cannot be reached or started, a state home or engine URL heal cannot use,
#: a full or unwritable HEAL_HOME (said, and the command's own status kept)
_CANNOT_REPORT = (EngineError, ConfigError, StateHomeFull, OSError)


@dataclass
class RunOptions:
    argv: list[str]
    mode: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    step: str = ""
    wait: bool = True
    cwd: str | None = None
    workflow: str = ""  # --workflow; else HEAL_WORKFLOW (or the CI's id); else the repository
    #: write the decision JSON to stderr ("-") or to this file; "" = not asked for
    json_to: str = ""


#: the longest step name heal run derives from the command line
STEP_CHARS = 200


def run_step(opts: RunOptions) -> str:
    """The step's name: ``--step``, else the command line cut to ``STEP_CHARS``, secrets
    redacted (before the cut: a cut could split one). The same on the failure and the
    success path, so the step key matches; and a fixed point of the event's own redaction,
    so the event's ``workflow.step`` is this name: neither the step record, its key,
    notifications nor a CI summary ever hold the ``--password=...`` of the command."""
    if opts.step:
        return redact(carried(opts.step))
    return redact(redact(shlex.join(redact_argv(carried_argv(opts.argv))))[:STEP_CHARS])


def carried_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` as an event can carry it: a byte that is not UTF-8 (the OS gives it as a
    surrogate escape) shown as ``\\xNN`` (:func:`producers.context.carried`)."""
    return [carried(arg) for arg in argv]


#: the tag naming what an event carries with ``\xNN`` in place of bytes that are not UTF-8
NOT_UTF8_TAG = "not_utf8"
#: the fields of it the attestation signs (a stand-in among them leaves the event unsigned)
_NOT_UTF8_SAID = {"command": "command line", "repo.path": "repository path",
                  "tags.cwd": "working directory"}


def decision_json(argv: Sequence[str], exit_status: int, decision: str, detail: str = "",
                  *, exit_code: int | None = None, headline: str | None = None
                  ) -> dict[str, Any]:
    """The decision JSON of a run that published nothing (it passed, was interrupted or
    refused): every key of :meth:`pipeline.ci.report.RunReport.to_json` (README "Output"),
    null (or empty) where unknown, the command with its secrets redacted as in every event."""
    return {
        "error_id": None, "command": redact_argv(carried_argv(argv)), "exit_code": exit_code,
        "exit_status": exit_status, "resolved": exit_status == 0, "decision": decision,
        "detail": redact(carried(detail)), "fingerprint": "",
        "error": {"headline": None if headline is None else redact(carried(headline)),
                  "file": None, "line": None},
        "match": {"pattern_id": None, "tier": None, "score": None}, "fix": None,
        "verification": None, "branch": "", "commit": "", "has_diff": False,
    }


def run_workflow(opts: RunOptions, step: str) -> Workflow:
    """The workflow as given: ``--workflow`` wins over the environment; redacted as the
    event's constructor redacts it (the success path builds no event), not cut (the step
    record's key: see :meth:`RunSession._where`)."""
    found = workflow_from_env(step=step)
    # (a byte that is not UTF-8 shown \xNN, as the environment's are: the event, the step
    # record's key and the learning all take it as text)
    return redacted_fields(replace(found, id=carried(opts.workflow)) if opts.workflow
                           else found)


def event_where(workflow: Workflow, repo: Repo) -> tuple[Workflow, Repo, list[str]]:
    """The workflow and repository as the event carries them (each field over 1 KiB cut,
    redacted: :func:`pipeline.events.carried_fields`), and the fields cut. The execution
    state is kept under these (the stages look it up under them); a ``--workflow`` over
    1 KiB was published whole, and every stage refused the event."""
    carried_workflow, cut = carried_fields(workflow)
    carried_repo, cut_repo = carried_fields(repo)
    return carried_workflow, carried_repo, cut + cut_repo


def build_event(opts: RunOptions, result: RunResult, extra_tags: dict[str, Any] | None = None,
                home: Path | None = None) -> ErrorEvent:
    """The ErrorEvent describing a failed run (``home``: HEAL_HOME, left out of the working
    tree's digest)."""
    step = run_step(opts)
    tags: dict[str, Any] = {
        "duration_s": round(result.duration_s, 3),
        "stdout_bytes": result.stdout_bytes,
        "stderr_bytes": result.stderr_bytes,
    }
    if result.signal:
        tags["signal"] = result.signal
    if result.truncated:
        tags["tail_truncated"] = True
    if opts.mode:
        tags["mode"] = opts.mode
    tags.update(extra_tags or {})
    exact = exact_repo_info(opts.cwd)
    # what the event cannot carry exactly (a byte that is not UTF-8), named, and shown \xNN
    not_utf8 = ([] if all(is_exact(arg) for arg in opts.argv) else ["command"]) + (
        [] if is_exact(exact.path) else ["repo.path"]) + inexact_workflow(
        id=opts.workflow, step=opts.step)
    where = str(opts.cwd or os.getcwd())
    if os.path.realpath(where) != os.path.realpath(exact.path):
        # run in a subdirectory: verification re-runs the command, and a fix acts, there
        # (pipeline.validate.verify.rel_cwd), not at the root; signed with the command
        tags["cwd"] = carried(where)
        if not is_exact(where):
            not_utf8.append("tags.cwd")
    if not_utf8:
        tags[NOT_UTF8_TAG] = not_utf8
    if exact.commit:
        # the working tree as the error saw it: the apply stage tells a pass after a change by
        # hand (not committed) from a flaky one (pipeline.treestate); no tag outside git
        state = tree_digest(exact.path, home)
        if state:
            tags[TREE_TAG] = state
    workflow, repo, cut = event_where(run_workflow(opts, step), carried_repo(exact))
    if cut:
        tags["cut_fields"] = cut
    text = result.tail or f"command exited with status {result.status} and printed nothing"
    return ErrorEvent(
        id=new_id("run"),
        text=text,
        source=Source(kind="subprocess", name="heal run", host=hostname()),
        workflow=workflow,
        repo=repo,
        command=tuple(carried_argv(opts.argv)),
        exit_code=result.status,
        tags=tags,
    )


class RunSession:
    """One ``heal run``: owns the command runs, publishing, step records and the wait."""

    def __init__(self, opts: RunOptions, settings: Settings, client: Any = None,
                 out: IO[str] | None = None) -> None:
        self.opts = opts
        self.settings = settings
        self._client = client
        self.out = out or sys.stderr
        #: one stderr line per phase while the operator waits (terminal or CI only)
        self.progress = Progress()
        #: how the decision is awaited (tests and embedders swap in their own)
        self.waiter_factory: Callable[[Any, Settings], DecisionWaiter] = (
            lambda client, settings: DecisionWaiter(client, settings, progress=self.progress))
        #: the failure's event once built, and whether it reached the error stream
        self._event: ErrorEvent | None = None
        self._published = False
        #: why the wait ended without a decision, when the pipeline failed while deciding
        self._why_undecided = ""
        #: what stopped the wait ("Ctrl-C", "SIGTERM", "SIGHUP"), once one did
        self._stopped_by = ""

    @property
    def client(self) -> Any:
        """Connected on first use: a command that succeeds quickly never waits for an engine.

        Raises: StreamUnavailable.
        """
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    def say(self, message: str) -> None:
        print(f"heal: {message}", file=self.out, flush=True)

    def execute(self) -> int:
        """Raises: UsageError (no command / command not found).

        SIGTERM/SIGHUP are a stop as Ctrl-C is, in every phase (:func:`stop_signals`): while
        the command runs they are forwarded to it and the run is ``interrupted``; afterwards
        (publishing, waiting, the inline stages) heal stops at once, writes what it knows
        (the decision JSON, the CI report) and exits with the command's status."""
        # until the command runs, and once heal has stopped, a SIGTERM/SIGHUP is noted, not
        # a death (pipeline.stopsignals; `heal run`'s entry point defers them already): one
        # before the command started means it is not started; one while heal releases its
        # engines changes nothing the decision JSON says
        deferred = stopsignals.defer()
        try:
            return self._execute()
        finally:
            stopsignals.restore(deferred)

    def _execute(self) -> int:
        result = self._run()
        with stop_signals():
            try:
                late = stopsignals.take()  # noted between the command's end and now
                if late and not result.interrupted:
                    raise Stopped(late)
                return self._after(result)
            except KeyboardInterrupt as exc:  # Ctrl-C, or Stopped by SIGTERM/SIGHUP
                how = exc.signame if isinstance(exc, Stopped) else "Ctrl-C"
                if result.status == 0:
                    return 0
                where = f"; the error stays queued as {self._event.id}" if (
                    self._published and self._event is not None) else ""
                self.say(f"stopped ({how}) before a decision{where}; exit status kept")
                self._report_plain(result, "none" if self._published else "not reported",
                                   f"stopped waiting ({_stop_note(how)})")
                return result.status

    def _after(self, result: RunResult) -> int:
        """What follows the command's run: its success recorded, or its failure reported."""
        if result.status == 0:
            self._record_success()
            from pipeline.ci.github import report_passed

            report_passed()
            self._unpublished_json(0)
            return 0
        if result.interrupted:
            # a person pressed Ctrl-C, or a runner sent SIGTERM (a cancelled CI job, docker
            # stop, systemd): a stop, not an error
            how = result.stop_said()
            by = "" if how == "Ctrl-C" else f" by {how}"
            if not result.started:  # the stop came before heal started the command
                self.say(f"interrupted{by} before the command started (status "
                         f"{result.status}): not run, nothing reported")
                self._report_plain(result, "interrupted",
                                   f"interrupted ({how}) before the command started: not run")
                return result.status
            self.say(f"interrupted{by} (status {result.status}): not reported as an error")
            self._report_plain(result, "interrupted", f"interrupted ({how}): not reported")
            return result.status
        try:
            return self._handle_failure(result)
        except _CANNOT_REPORT as exc:
            self.say(f"could not report the failure ({exc}); exit status kept")
            # published before the trouble: no decision yet; else nothing reached heal
            self._report_plain(result, "none" if self._published else "not reported", str(exc))
            return result.status
        except Exception as exc:  # noqa: BLE001 - nothing heal meets changes CMD's status
            # (a bug heal did not foresee: it was an "internal error", exit 1, no --json-file)
            if os.environ.get("HEAL_DEBUG"):
                traceback.print_exc()
            why = f"internal error: {type(exc).__name__}: {exc}"
            self.say(f"could not report the failure ({why}; rerun with HEAL_DEBUG=1 for the "
                     "traceback and report it); exit status kept")
            self._report_plain(result, "none" if self._published else "not reported", why)
            return result.status

    def _run(self) -> RunResult:
        # a stream replaced by one without bytes (or None, when embedded in a program started
        # with it closed) is not passed through; the tail is still kept
        return run_command(self.opts.argv, cwd=self.opts.cwd,
                           stdout=getattr(sys.stdout, "buffer", None),
                           stderr=getattr(sys.stderr, "buffer", None))

    def _step(self) -> tuple[str, str]:
        key, step, _, _ = self._where()
        return key, step

    def _where(self) -> tuple[str, str, Workflow, Repo]:
        """The step record's key (of the whole workflow id and path: two ids sharing their
        first 1 KiB are two steps), the step, and the workflow and repository as the event
        carries them (the execution state's name)."""
        event_step = run_step(self.opts)
        workflow = run_workflow(self.opts, event_step)
        repo = repo_info(self.opts.cwd)
        key = step_key(repo.path, workflow.id, event_step)
        carried_workflow, carried_repo, _ = event_where(workflow, repo)
        return key, event_step, carried_workflow, carried_repo

    def _learning(self) -> StepLearning:
        return StepLearning(self.client, self.settings)

    def _record_success(self, healed: bool = False) -> None:
        try:
            key, step, workflow, repo = self._where()
            resolved = StepRecorder(self.client, self.settings).record_success(key, step)
        except _CANNOT_REPORT as exc:
            self.say(f"could not record the success ({exc})")
            return
        if resolved:
            self.say(f"step succeeded; earlier failure {resolved} marked resolved")
        for line in self._learning().succeeded(workflow, repo, key, resolved, healed=healed):
            self.say(line)

    def _attested(self, event: ErrorEvent) -> ErrorEvent:
        """heal run ran the command itself: sign what it saw, so the pipeline may re-run the
        command and act on this repository (pipeline.trust).

        Raises:
            ConfigError, StateHomeFull: the signing keys cannot be used (nothing may be
                published: the stages seal their work with the same keys).
        """
        from pipeline.trust.attest import attest
        from pipeline.trust.keys import keys_for

        signed = [f for f in event.tags.get(NOT_UTF8_TAG) or () if f in _NOT_UTF8_SAID]
        try:
            if not signed:
                return attest(event, self.settings)
            keys_for(self.settings)  # unsigned, but the stages still need the keys
        except (ConfigError, StateHomeFull) as exc:
            # every stage seals its work with the same key: published, the event was retried
            # and dead-lettered by the inline stages (a traceback each time), where `heal up`
            # and `heal worker` refuse to start on such a key; nothing is published
            kind = ConfigError if isinstance(exc, ConfigError) else StateHomeFull
            raise kind(f"cannot sign the event: {exc}; the pipeline's stages need the same "
                       "key, so nothing was published") from exc
        # the event shows those bytes as \xNN: signing it would let the pipeline re-run a
        # command, or act on a path, that is not the one run here (a workflow field is
        # not signed: its stand-in names the execution state on both sides alike)
        what = " and ".join(_NOT_UTF8_SAID[f] for f in signed)
        self.say(f"not signing the event: its {what} "
                 "holds bytes that are not UTF-8, which an event cannot carry exactly; "
                 "heal will only diagnose it")
        return event

    def _handle_failure(self, result: RunResult) -> int:
        event = self._event = self._attested(build_event(self.opts, result,
                                                         home=self.settings.home))
        if self._client is None and self.settings.redis_url is None:
            self.progress.phase("starting engines…")
        if self.opts.wait:
            if self.settings.redis_url:
                # an external Redis answers or refuses at once: if it cannot be reached,
                # nothing is published, so PostgreSQL must not be started for nothing
                self.client  # noqa: B018 - connects (raises StreamUnavailable)
            # the lookup needs PostgreSQL: start it while Redis starts and the stages load
            from storage.engines import start_database_soon

            start_database_soon(self.settings)
        # the decision comes back on the outcomes stream of the event's partition
        waiter = self.waiter_factory(self.client, partition_of(self.settings, event))
        waiter.mark()
        if self.opts.wait:
            self._head_start(event)
        Publisher(self.client, self.settings).publish(event)
        self._published = True
        key, step = self._step()
        StepRecorder(self.client, self.settings).record_failure(key, step, event.id)
        self.say(f"command failed with status {result.status}"
                 f"{' (' + result.signal + ')' if result.signal else ''}; published {event.id}")
        if self.opts.wait:
            self.progress.phase("waiting for the pipeline's decision…")
        decision, interrupted = self._await(waiter, event.id) if self.opts.wait else (None, False)
        if interrupted:  # leave at once, with what is known without reading the engines
            self._report_plain(result, "none", f"stopped waiting ({_stop_note(self._stopped_by)})")
            return result.status
        # after the decision: an inline drain has started the engines the learner needs
        for line in self._learning().failed(event, key):
            self.say(line)
        status = result.status
        if decision is not None and decision.flaky:
            # the step passed on heal's plain re-run: run it once more (the retry), but credit
            # no fix and learn no precedent from a success that was luck
            self.say("the failure did not reproduce (flaky); running the command again")
            status = self._rerun(event.id, healed=False)
        elif decision is not None and decision.applied:
            self.say("a verified fix was applied; running the command again")
            status = self._rerun(event.id)
        self._report_decision(event, decision, status)
        return status

    def _head_start(self, event: ErrorEvent) -> None:
        """When this process will run the lookup itself (no lookup worker is live), load
        the model meanwhile if the error will most likely need it."""
        from producers.decision import live_stages

        try:
            if "lookup" in live_stages(self.client, self.settings):
                return
        except EngineError:
            return
        from pipeline.lookup.prefetch import model_soon

        model_soon(self.settings, event.text)

    def _report_decision(self, event: ErrorEvent, decision: Decision | None,
                         status: int) -> None:
        """CI providers' files and annotations, and ``--json``; never changes the status."""
        from pipeline import ci

        if not (self.opts.json_to or ci.providers()):
            return
        outcome = decision.outcome if decision is not None else None
        if not self.opts.wait:
            note = "not waited for (--no-wait)"
        elif decision is None:
            # (the decision cell reads "no decision: <note>": the note says why, once)
            note = self._why_undecided or "the pipeline failed while deciding"
        else:
            note = decision.dead_reason or ("" if outcome else (
                f"waited {self.opts.timeout_s:g}s (--timeout); the error stays queued"))
        try:
            report = ci.collect(self.client, self.settings, event, status, outcome, note)
            ci.report_ci(report)
        except Exception as exc:  # noqa: BLE001 - reporting must not change CMD's status
            if os.environ.get("HEAL_DEBUG"):
                traceback.print_exc()
            self.say(f"could not write the decision report ({type(exc).__name__}: {exc})")
            # the JSON asked for is written all the same, with what is known without engines
            self._write_json(self._plain_report(event, status, "none", note).to_json())
            return
        self._write_json(report.to_json())

    def _unpublished_json(self, status: int) -> None:
        """The decision JSON of a run that passed, when one was asked for: every key of the
        decision object, no error id, no decision."""
        if self.opts.json_to:
            self._write_json(decision_json(self.opts.argv, status, "none", exit_code=status))

    def _plain_report(self, event: ErrorEvent, status: int, decision: str, note: str
                      ) -> RunReport:
        """A decision report built without reading anything back from the engines; for an
        event that was not published, no error id (there is none to look up)."""
        from pipeline.ci.report import RunReport, describe
        from producers.unpublished import UnpublishedReport

        if self._published:
            report = RunReport(event, status, note=note, undecided=decision)
        else:
            report = UnpublishedReport(replace(event, id=""), status, note=note,
                                       undecided=decision)
        describe(report)  # the error's file, line and summary: known without the engines
        return report

    def _report_plain(self, result: RunResult, decision: str, note: str) -> None:
        """The decision JSON and the CI providers' report of a failure heal did not follow
        to a decision: ``decision`` is "not reported" (it could not be published: ``note``
        says why), "interrupted" (Ctrl-C stopped the command) or "none" (published, then
        the wait stopped or the engines failed). Built without the engines. Never raises."""
        from pipeline import ci

        if not (self.opts.json_to or ci.providers()):
            return
        try:
            event = self._event or build_event(self.opts, result, home=self.settings.home)
            report = self._plain_report(event, result.status, decision, note)
            ci.report_ci(report)
            data = report.to_json()
        except Exception as exc:  # noqa: BLE001 - reporting must not change CMD's status
            if os.environ.get("HEAL_DEBUG"):
                traceback.print_exc()
            self.say(f"could not write the decision report ({type(exc).__name__}: {exc})")
            data = decision_json(self.opts.argv, result.status, decision, note,
                                 exit_code=result.status)
        self._write_json(data)

    def _write_json(self, data: dict[str, Any]) -> None:
        """Write the decision JSON where asked; a file that cannot be written is a warning
        (the command's status stays the exit status)."""
        from pipeline.console import dump_json

        if self.opts.json_to == "-":
            dump_json(data, sys.stderr)
        elif self.opts.json_to:
            try:
                with open(self.opts.json_to, "w", encoding="utf-8") as fh:
                    dump_json(data, fh)
            except OSError as exc:
                self.say(f"could not write the decision to --json-file {self.opts.json_to} "
                         f"({exc.strerror or exc}); exit status kept")

    def _await(self, waiter: DecisionWaiter, error_id: str) -> tuple[Decision | None, bool]:
        """(the decision, printed, or None when there is none; whether Ctrl-C interrupted)."""
        try:
            decision = waiter.wait(error_id, self.opts.timeout_s)
        except KeyboardInterrupt as exc:  # Ctrl-C, or Stopped by SIGTERM/SIGHUP
            how = exc.signame if isinstance(exc, Stopped) else "Ctrl-C"
            self._stopped_by = how
            by = "" if how == "Ctrl-C" else f" ({how})"
            self.say(f"stopped waiting{by}; the error stays queued as {error_id}")
            return None, True
        except Exception as exc:  # noqa: BLE001 - a failing stage must not change CMD's status
            if os.environ.get("HEAL_DEBUG"):
                traceback.print_exc()
            if isinstance(exc, AccessRefused):  # the server is up: what to grant, no outage
                why = f"Redis refused the pipeline a command it needs ({exc})"
            else:
                kind = "" if isinstance(exc, HealError) else f"{type(exc).__name__}: "
                why = f"the pipeline failed while deciding ({kind}{exc})"
            self._why_undecided = redact(carried(why))
            self.say(f"no decision: {why}")
            return None, False
        self._report(decision, error_id)
        return decision, False

    def _rerun(self, error_id: str, healed: bool = True) -> int:
        again = self._run()
        if again.status == 0:
            self._record_success(healed=healed)
            return 0
        try:
            event = self._attested(build_event(self.opts, again, {"rerun_of": error_id},
                                                      home=self.settings.home))
            Publisher(self.client, self.settings).publish(event)
        except _CANNOT_REPORT as exc:  # (as the first failure's: its status is kept)
            self.say(f"could not report the second failure ({exc})")
            return again.status
        self.say(f"the command still fails (status {again.status}); published {event.id}")
        return again.status

    def _report(self, decision: Decision, error_id: str = "") -> None:
        outcome = decision.outcome
        if decision.dead_reason:
            how = f" (`heal explain {error_id}` tells more)" if error_id else ""
            self.say(f"the pipeline could not process the error: {decision.dead_reason}{how}")
            return
        if outcome is None:
            self.say(f"no decision within {self.opts.timeout_s:g}s; the error stays queued "
                     "(see `heal status`)")
            return
        said = outcome.detail
        if outcome.status == "suggested" and error_id:
            from pipeline.ci.report import one_handle

            # the handle the summary, annotation and decision.json name: the error id
            said = one_handle(said, outcome.fix_id, error_id)
        detail = f": {said}" if said else ""
        fix = f" fix {outcome.fix_id}" if outcome.fix_id else ""
        messages = {
            "applied": f"applied and verified{fix}{detail}",
            "suggested": f"suggested{fix}{detail}"
                         + ("" if "heal apply" in detail
                            else f" (apply it with `heal apply {error_id or outcome.fix_id}`)"),
            "escalated": f"escalated to a human{detail}",
            "deferred": f"deferred{fix}{detail}",
            # (the detail says why: the mode, an ignored fingerprint, an untrusted repository)
            "observed": f"observed only{detail}" if detail else "observed only (mode observe)",
            "flaky": f"not reproducible, recorded as flaky{detail}",
            # it passed verification in a clean worktree and failed only once applied here
            "rolled_back": f"{fix.strip() or 'fix'} passed verification and was applied, but "
                           f"the step still failed here, so it was rolled back{detail}",
        }
        # the fingerprint (short: a unique prefix), so a CI log leads to `heal explain`
        short = outcome.fine.split(":", 1)[-1][:FINGERPRINT_SHOWN]
        named = f" [fingerprint {short}: `heal explain {short}`]" if short else ""
        self.say(messages.get(outcome.status, f"{outcome.status}{fix}{detail}") + named)


def _stop_note(how: str) -> str:
    """The decision JSON's ``detail`` word for a stop: "interrupted" for Ctrl-C (as before),
    else the signal's name."""
    return "interrupted" if how in ("", "Ctrl-C") else how


#: hex digits of the fingerprint named on the decision line (heal explain takes a prefix)
FINGERPRINT_SHOWN = 12


def heal_run(argv: Sequence[str], settings: Settings, client: Any = None, **options: Any
             ) -> int:
    """Run ``argv`` under heal (see the module docstring); returns the exit status.

    Raises:
        UsageError: no command, or the command cannot be found/executed.
    """
    return RunSession(RunOptions(list(argv), **options), settings, client).execute()
