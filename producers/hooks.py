"""Workflow hooks for an orchestrator: call them at the end of each unit of work.

    hooks = WorkflowHooks(workflow_id="nightly", run_id="1234", repo_path="/srv/checkout")
    hooks.on_subprocess_complete(["pytest", "-q"], 1, stdout=out, stderr=err, phase="test")
    hooks.on_phase_complete("test", "failure", error_text=log_tail)
    hooks.on_learn_phase_complete([{"error": "No module named yaml", "fix": "pip install PyYAML"}])
    hooks.on_workflow_complete("failure", summary="2 of 5 phases failed")

What each hook publishes or records (``<prefix>`` = ``HEAL_STREAM_PREFIX``):

- ``on_subprocess_complete(argv, exit_code, stdout=, stderr=)``: exit code != 0 publishes an
  ErrorEvent (source ``hook``; argv, exit code, the tail of stderr+stdout as text) and records
  the step as failed; exit code 0 records a success, which resolves an earlier failure of the
  same step (see :mod:`producers.steps`).
- ``on_phase_complete(phase, status, error_text=)``: the same for a whole phase (the phase is
  the step; the text is ``error_text`` or a sentence naming the phase).
- ``on_workflow_complete(status, summary=, error_text=)``: records the run in the hash
  ``<prefix>:workflow:<id>:<run_id>`` (status, summary, events published, ts; 30-day TTL; the
  ids as the event carries them, a cut one followed by ``#`` and a hash of the whole id); it
  publishes an event only when the run failed and ``error_text`` says why (the phases already
  reported their own failures).
- ``on_learn_phase_complete(lessons)``: each lesson ``{"error": text, "fix": text, ...}`` is
  published in observe mode (``tags.mode = "observe"``, ``tags.learned`` = the lesson): it is
  fingerprinted and reaches the issue queue with its known resolution, but never triggers a fix.
  Its fix is also taught like ``heal learn`` (see :mod:`pipeline.learn.lessons`): a DRAFT
  pattern and fix in PostgreSQL, verified before it is ever offered.

Every step result (success or failure) also updates the workflow's execution state
(:mod:`pipeline.guardrails.execution`, thresholds from the repository's ``heal.toml``
``[execution]``): the failure's kind is its coarse fingerprint, so 3 failures of one kind
make the workflow DEGRADED and 10 within 10 minutes QUARANTINED (no automatic fix is then
applied for it). ``execution_decision(step)`` tells the orchestrator what heal allows now
(``execute`` False: QUARANTINED, stop running the step until `heal unquarantine --workflow`).

Step records and resolutions are described in :mod:`producers.steps`. Every hook returns the
id of the event it published (or None) and raises :class:`StreamUnavailable` when Redis cannot
be reached, so the orchestrator decides whether that matters.

Events are built through the contract's validation, as :func:`producers.emit` builds them
(:func:`pipeline.events.fit_to_contract`, then :meth:`ErrorEvent.from_dict`): a field longer
than the contract allows is cut (an argv over 256 arguments or 16 KiB is shown in
``tags.command_head`` instead, listed in ``tags.cut_fields``), and a value of the wrong type (a
string or boolean where argv or an exit code goes, a set in ``tags``) raises
:class:`EventValidationError` saying what to pass, before anything is recorded.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import EventValidationError, StreamUnavailable, UsageError
from pipeline.events import (
    SCHEMA_VERSION,
    ErrorEvent,
    Repo,
    Source,
    carried_field,
    carried_key,
    fit_to_contract,
    json_kind,
    utc_now,
)
from pipeline.guardrails.execution import StepDecision, WorkflowState, published_workflow_name
from pipeline.guardrails.gate import guard_at
from pipeline.lifecycle.steps import record_step_result
from pipeline.redact import redacted_tail
from producers.context import hostname, new_id, repo_info
from producers.interceptor import TAIL_BYTES
from producers.publisher import Publisher, connect
from producers.steps import STEP_TTL_S, StepRecorder, step_key

FAILED = frozenset({"failure", "failed", "error", "errored", "timeout", "cancelled"})
SUCCEEDED = frozenset({"success", "succeeded", "ok", "passed", "done"})


def _failed(status: str) -> bool:
    """Raises: UsageError for a status that is neither a success nor a failure word."""
    word = status.strip().lower()
    if word in FAILED:
        return True
    if word in SUCCEEDED:
        return False
    raise UsageError(
        f"status {status!r}: use one of {', '.join(sorted(SUCCEEDED | FAILED))}"
    )


def _tail(*texts: str, limit: int = TAIL_BYTES) -> str:
    """The end of the texts within ``limit`` bytes, redacted before the cut (a cut could
    split a secret, whose rest no rule would see)."""
    joined = "\n".join(t for t in texts if t)
    return redacted_tail(joined, limit)


def _refuse(reason: str) -> EventValidationError:
    return EventValidationError(reason, reason.encode())


def _argv(argv: Any) -> list[str]:
    """``argv`` as a list of strings. Raises: EventValidationError for anything else (a
    command line given as one string was once published split into its characters)."""
    if isinstance(argv, str | bytes):
        raise _refuse(f"argv must be a list of strings such as ['pytest', '-q'], got "
                      f"{json_kind(argv)}; split a command line with shlex.split")
    try:
        items = list(argv)
    except TypeError:
        raise _refuse(f"argv must be a list of strings, got {json_kind(argv)}") from None
    wrong = next((a for a in items if not isinstance(a, str)), None)
    if wrong is not None:
        raise _refuse(f"argv must be a list of strings, but holds {json_kind(wrong)}")
    return items


def _lesson_argv(lesson: Mapping[str, Any]) -> list[str]:
    """A lesson's failing ``command``: a list of strings, or a command line split as a
    transcript's is (none when it uses shell syntax: it stays in ``tags.learned``)."""
    from producers.transcript import command_argv

    command = lesson.get("command")
    if isinstance(command, str):
        return command_argv(command)
    return _argv(command or ())


def _exit_code(exit_code: Any) -> int:
    """Raises: EventValidationError for an exit code that is not an integer of at most 64
    bits (``True`` once published ``"exit_code": true``, which every stage refuses)."""
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        raise _refuse(f"exit_code must be an integer, got {json_kind(exit_code)}")
    if exit_code.bit_length() > 63:
        raise _refuse("exit_code is out of range: an exit status is an integer of at most 64 "
                      "bits (a process exits with 0-255)")
    return exit_code


class WorkflowHooks:
    """Hooks bound to one workflow run (see the module docstring)."""

    def __init__(self, workflow_id: str = "", run_id: str = "", repo_path: str | None = None,
                 client: Any = None, settings: Settings | None = None,
                 source_name: str = "") -> None:
        self.settings = settings or Settings.from_env()
        self._client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.repo = repo_info(repo_path) if repo_path else Repo()
        self.source = Source(kind="hook", name=source_name or workflow_id, host=hostname())
        self.published = 0
        #: what ``on_learn_phase_complete`` taught (pipeline.learn.teach.Taught)
        self.taught: list[Any] = []
        #: the workflow's execution state after the last recorded step
        self.state = WorkflowState.RUNNING

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    # -- hooks -------------------------------------------------------------------------------

    def on_subprocess_complete(self, argv: Sequence[str], exit_code: int, *, stdout: str = "",
                               stderr: str = "", phase: str = "", step: str = "",
                               tags: Mapping[str, Any] | None = None) -> str | None:
        """Publish a failed subprocess (exit code != 0); record the step either way.

        Raises: EventValidationError (argv not a list of strings, exit code not an integer,
        tags that are not JSON), StreamUnavailable.
        """
        argv = _argv(argv)
        exit_code = _exit_code(exit_code)
        name = step or shlex.join(argv)[:200]
        if exit_code == 0:
            self._success(name)
            return None
        text = _tail(stderr, stdout) or f"{shlex.join(argv)} exited with status {exit_code}"
        return self._failure(name, phase, text, argv, exit_code, tags)

    def on_phase_complete(self, phase: str, status: str, *, error_text: str = "",
                          step: str = "", tags: Mapping[str, Any] | None = None) -> str | None:
        """Publish a failed phase; record the phase as a step either way.

        Raises: UsageError (unknown status word), StreamUnavailable.
        """
        name = step or phase
        if not _failed(status):
            self._success(name)
            return None
        text = error_text or f"phase {phase!r} of workflow {self.workflow_id!r} failed ({status})"
        return self._failure(name, phase, text, (), None, tags)

    def on_workflow_complete(self, status: str, *, summary: str = "",
                             error_text: str = "") -> str | None:
        """Record the run's end; publish only when it failed and ``error_text`` says why.

        Raises: UsageError (unknown status word), StreamUnavailable.
        """
        failed = _failed(status)
        event_id = None
        if failed and error_text:
            event_id = self._failure("workflow", "", error_text, (), None, None)
        # (the ids as the event carries them: a secret or a 10 MB id in a key name otherwise)
        # (a cut id with a hash of the whole: two ids sharing their first 1 KiB, two records)
        key = self.settings.key("workflow", carried_key(self.workflow_id, "#") or "-",
                                carried_key(self.run_id, "#") or "-")
        fields = {"status": "failure" if failed else "success", "summary": summary,
                  "ts": utc_now(), "events": str(self.published)}
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, STEP_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot record the workflow run: {exc}") from exc
        return event_id

    def on_learn_phase_complete(self, lessons: Sequence[Mapping[str, Any]]) -> list[str]:
        """Publish each lesson ``{"error": text, "fix": text, ...}`` in observe mode.

        Raises: UsageError (a lesson without "error" text), EventValidationError (a
        "command" that is neither a command line nor a list of strings), StreamUnavailable.
        """
        from pipeline.learn.lessons import lesson_fix

        events, drafts = [], []
        for index, lesson in enumerate(lessons):
            text = lesson.get("error")
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"lesson {index}: needs an 'error' text (and usually a 'fix')")
            try:  # checked before anything is published
                drafts.append(lesson_fix(lesson, self.repo.path))
            except UsageError as exc:
                raise UsageError(f"lesson {index}: {exc}") from exc
            learned = {k: v for k, v in lesson.items() if k != "error"}
            events.append(self._event("learn", "learn", text, _lesson_argv(lesson), None,
                                      {"mode": "observe", "learned": learned, "hook": "learn"}))
        Publisher(self.client, self.settings).publish_many(events)
        self.published += len(events)
        self._teach(events, drafts)
        return [e.id for e in events]

    def _teach(self, events: list[ErrorEvent], drafts: list[Any]) -> None:
        """Store each lesson's fix through the path of ``heal learn`` (``self.taught``).
        Raises DatabaseUnavailable when PostgreSQL cannot be reached (the lessons are
        published already; teach them again later with ``heal learn``)."""
        pairs = [(e, d) for e, d in zip(events, drafts, strict=True) if d is not None]
        if not pairs:
            return
        from pipeline.guardrails.audit import AuditLog
        from pipeline.learn.source import TaughtError
        from pipeline.learn.teach import Lesson, Teacher
        from storage.engines import open_database

        db = open_database(self.settings)
        try:
            teacher = Teacher(db, AuditLog(self.settings, db=db))
            for event, draft in pairs:
                error = TaughtError(event.id, event.text, "", repo=event.repo.path,
                                    command=event.command, why="lesson")
                self.taught.append(teacher.teach(Lesson(
                    error, draft, source="hook on_learn_phase_complete")))
        finally:
            db.close()

    # -- shared ------------------------------------------------------------------------------

    def _event(self, step: str, phase: str, text: str, argv: Sequence[str],
               exit_code: int | None, tags: Mapping[str, Any] | None) -> ErrorEvent:
        """The event, validated as ``producers.emit`` validates (see the module docstring).

        Raises: EventValidationError saying what to change.
        """
        if tags is not None and not isinstance(tags, Mapping):
            raise _refuse(f"tags must be a mapping of string keys, got {json_kind(tags)}")
        return ErrorEvent.from_dict(fit_to_contract({
            "v": SCHEMA_VERSION, "id": new_id("hook"), "text": text, "ts": utc_now(),
            "source": dict(vars(self.source)),
            "workflow": {"id": self.workflow_id, "run_id": self.run_id, "phase": phase,
                         "step": step},
            "repo": dict(vars(self.repo)), "command": _argv(argv), "exit_code": exit_code,
            "tags": dict(tags or {}),
        }))

    def _failure(self, step: str, phase: str, text: str, argv: Sequence[str],
                 exit_code: int | None, tags: Mapping[str, Any] | None) -> str:
        event = self._event(step, phase, text, argv, exit_code, tags)
        full, step = step, event.workflow.step  # as published (cut, redacted)
        Publisher(self.client, self.settings).publish(event)
        StepRecorder(self.client, self.settings).record_failure(self._key(full), step,
                                                                event.id)
        self.published += 1
        # the published text: cut to 64 KiB (and redacted) already, so fingerprinting it costs
        # milliseconds (the whole 10 MB error_text once cost the caller 6.5 s of CPU)
        self._record_state(step, False, event)
        return event.id

    def _success(self, step: str) -> None:
        # the name a failure of this step was published with: cut to 1 KiB, then redacted
        # as the event's constructor redacts it (a secret never reaches the record)
        full, step = step, carried_field(step)
        StepRecorder(self.client, self.settings).record_success(self._key(full), step)
        self._record_state(step, True)

    # -- execution state ---------------------------------------------------------------------

    @property
    def workflow(self) -> str:
        """The workflow name the execution state is kept under: the one the published event
        names (its id and repository path cut and redacted as the event carries them), the
        only one the validate and apply stages can look up."""
        return published_workflow_name(self.workflow_id, self.repo.path)

    def _record_state(self, step: str, ok: bool, event: ErrorEvent | None = None) -> None:
        from pipeline.fingerprint import fingerprint_event

        # the kind as the fingerprint stage keys the published event (exit code included)
        kind = fingerprint_event(event).coarse if event is not None and event.text else ""
        event_id = event.id if event is not None else ""
        report = record_step_result(guard_at(self.client, self.settings, self.repo.path), None,
                                    workflow=self.workflow, step=step, ok=ok, kind=kind,
                                    event_id=event_id)
        self.state = report.after

    def execution_decision(self, step: str = "") -> StepDecision:
        """What heal allows for the next run of ``step`` (see the module docstring).

        Raises: StreamUnavailable.
        """
        guard = guard_at(self.client, self.settings, self.repo.path)
        return guard.should_execute_step(self.workflow, carried_field(step))

    def _key(self, full: str) -> str:
        """The step record's key: the name the event carries and, when that is a cut of the
        caller's name ``full`` (over 1 KiB, or holding a NUL), a short hash of the whole name
        (:func:`carried_key`), so two hostile names sharing their first 1 KiB are two steps (a
        success of one never resolves the other's failure). A hash either way: bounded
        whatever the name's size; a name that is not cut keys as before (and as ``heal run``
        keys it)."""
        return step_key(self.repo.path, self.workflow_id, carried_key(full))
