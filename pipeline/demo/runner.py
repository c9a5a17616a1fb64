"""``heal demo``: real breakages in a sample repository go through the real pipeline.

Each breakage is introduced as a real change, its command is run and fails, the failure is
published to the errors stream, and the stages run in this process (``drain_inline``) on the
embedded engines: fingerprint -> lookup -> validate -> apply -> lifecycle. The demo then reads
the outcome from the outcomes stream and, for a verified suggestion, applies it the way
``heal apply`` does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import (
    STREAM_CANDIDATES,
    STREAM_ERRORS,
    STREAM_OUTCOMES,
    STREAM_VERDICTS,
    Settings,
)
from pipeline.demo.sample import BREAKAGES, TESTS_ARGV, Breakage, create_repo, git
from pipeline.events import (
    CandidateEvent,
    ErrorEvent,
    OutcomeEvent,
    Repo,
    Source,
    VerdictEvent,
    Workflow,
)
from pipeline.trust.attest import attest
from pipeline.trust.operator import operator_overlay
from pipeline.validate.runner import run_argv

COMMAND_TIMEOUT_S = 120.0


@dataclass
class Row:
    breakage: Breakage
    failed: bool = False
    exit_code: int = 0
    error_id: str = ""
    pattern: str = ""
    fix_id: str = ""
    decision: str = ""
    status: str = ""
    detail: str = ""
    verified: bool = False
    passes_now: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    detection: str = ""
    category: str = ""


def describe_match(cand: CandidateEvent) -> str:
    m = cand.match or {}
    if not m.get("pattern_id"):
        return f"fingerprint {cand.fine[:12]}: no known pattern ({m.get('reason', 'unmatched')})"
    score = m.get("score")
    scored = f", score {float(score):.2f}" if isinstance(score, int | float) else ""
    return (f"fingerprint {cand.fine[:12]} -> pattern {m.get('pattern_id')} "
            f"(tier {m.get('tier')}{scored})")


def evidence_lines(verdict: VerdictEvent) -> list[str]:
    """Verification runs (before/after exit codes) and the judges' votes, one line each."""
    by: dict[str, dict[str, Any]] = {}
    for run in verdict.verification:
        by.setdefault(str(run.get("name")), {})[str(run.get("phase"))] = run.get("exit_code")
    lines = [f"verify {name}: exit {codes.get('before', '-')} before, "
             f"{codes.get('after', '-')} with the fix" for name, codes in by.items()]
    lines += [f"judge {v.get('judge')}: {'approve' if v.get('approve') else 'reject'} "
              f"({str(v.get('reason', ''))[:90]})" for v in verdict.votes]
    failed = [c for c in verdict.preflight if not c.get("ok")]
    lines += [f"pre-flight {c.get('name')}: {c.get('reason')}" for c in failed]
    return lines


def find_event(client: Any, stream: str, error_id: str, kind: type[Any]) -> Any:
    """The newest event of ``kind`` for ``error_id`` on ``stream`` (None when absent)."""
    for _id, fields in client.xrevrange(stream, count=200):
        raw = fields.get(b"event") or fields.get("event")
        if raw is None:
            continue
        try:
            ev = kind.decode(raw)
        except Exception:  # noqa: BLE001 - other kinds of entries are skipped
            continue
        if ev.error_id == error_id:
            return ev
    return None


class Demo:
    def __init__(self, settings: Settings, client: Any, resources: dict[str, Any],
                 drain: Callable[[], int], log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.client = client
        self.resources = resources
        self.drain = drain
        self.log = log

    def event_for(self, root: Path, b: Breakage, run: dict[str, Any],
                  workflow: Workflow | None = None) -> ErrorEvent:
        # the demo ran the command itself, like heal run: it signs what it saw (pipeline.trust)
        return attest(self._event(root, b, run, workflow), self.settings)

    def _event(self, root: Path, b: Breakage, run: dict[str, Any],
               workflow: Workflow | None = None) -> ErrorEvent:
        return ErrorEvent(
            id=f"demo-{uuid.uuid4().hex[:12]}",
            text=run["tail"] or f"exit {run['exit_code']}",
            source=Source(kind="subprocess", name="heal demo", host="demo"),
            workflow=workflow or Workflow(id="demo", run_id="1", phase="ci", step=b.name),
            repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD"), branch="main"),
            command=b.command, exit_code=run["exit_code"],
            tags={"mode": "auto-safe", "cwd": str(root), "demo": True},
        )

    def run_one(self, root: Path, b: Breakage, workflow: Workflow | None = None) -> Row:
        row = Row(b)
        started = time.monotonic()
        run = run_argv(list(b.command), str(root), COMMAND_TIMEOUT_S)
        row.exit_code = run["exit_code"]
        row.failed = run["exit_code"] != 0
        if not row.failed:
            row.notes.append("the command did not fail: nothing to heal")
            return row
        event = self.event_for(root, b, run, workflow)
        row.error_id = event.id
        self.client.xadd(self.settings.stream(STREAM_ERRORS), {"event": event.encode()})
        self.drain()
        verdict = find_event(self.client, self.settings.stream(STREAM_VERDICTS), event.id,
                             VerdictEvent)
        outcome = find_event(self.client, self.settings.stream(STREAM_OUTCOMES), event.id,
                             OutcomeEvent)
        cand = find_event(self.client, self.settings.stream(STREAM_CANDIDATES), event.id,
                          CandidateEvent)
        if cand is not None:
            row.detection = describe_match(cand)
        if verdict is not None:
            row.decision = verdict.decision
            row.fix_id = str((verdict.fix or {}).get("id", ""))
            row.pattern = str((verdict.fix or {}).get("pattern_id", ""))
            row.category = str((verdict.fix or {}).get("category", ""))
            row.verified = verdict.decision in ("apply", "suggest")
            row.evidence = evidence_lines(verdict)
        if outcome is not None:
            row.status, row.detail = outcome.status, outcome.detail
            if outcome.status == "suggested" and verdict is not None:
                self._apply_on_request(verdict, row)
        else:
            row.notes.append("no outcome reached the outcomes stream (see heal status)")
        row.passes_now = run_argv(list(b.command), str(root), COMMAND_TIMEOUT_S)[
            "exit_code"] == 0
        row.seconds = round(time.monotonic() - started, 2)
        return row

    def _apply_on_request(self, verdict: VerdictEvent, row: Row) -> None:
        """What a user does with a suggestion: ``heal apply FIX_ID``."""
        from pipeline.apply.applier import Applier
        from storage.attempts import store_for

        applier = Applier(self.settings, self.client, store_for(self.resources, self.settings))
        outcome = applier.apply_suggested(replace(verdict, decision="apply"))
        row.notes.append(f"suggested, then `heal apply {row.fix_id}` -> {outcome.status}")
        row.status, row.detail = f"suggested -> {outcome.status}", outcome.detail

    def run(self, root: Path) -> list[Row]:
        create_repo(root)
        self.log(f"sample repository: {root}")
        # the demo is the operator: it registers its sample repository and allows the check
        # its heal.toml declares, for this process only
        with operator_overlay(self.settings, repos=[str(root.resolve())],
                              commands=[TESTS_ARGV]):
            return self._run_all(root)

    def _run_all(self, root: Path) -> list[Row]:
        rows: list[Row] = []
        for breakage, introduce in BREAKAGES:
            lock = root / ".git/index.lock"
            if lock.exists() and breakage.name != "stale index.lock":
                lock.unlink()  # a leftover from a lock step heal did not fix: keep going
                rows[-1].notes.append("demo removed the leftover index.lock by hand")
            introduce(root)  # type: ignore[operator]
            self.log(f"- {breakage.name}: {breakage.what}; running {' '.join(breakage.command)}")
            row = self.run_one(root, breakage)
            self.log(f"  -> {row.status or 'no outcome'} ({row.seconds:.1f}s)")
            rows.append(row)
        return rows
