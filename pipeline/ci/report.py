"""What one ``heal run`` decided, gathered for CI providers and ``heal run --json``.

:func:`collect` reads back the lookup's candidate and the validator's verdict for one error id
(from the streams, bounded) and the diff of the fix (``git show`` of the commit verification or
application produced), and returns a :class:`RunReport`. :meth:`RunReport.to_json` is the
decision JSON: the same object ``heal run --json`` prints and ``decision.json`` holds.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config import STREAM_CANDIDATES, STREAM_VERDICTS, Settings
from pipeline.errors import HealError
from pipeline.events import CandidateEvent, ErrorEvent, OutcomeEvent, VerdictEvent
from pipeline.gitops import run_git
from pipeline.headline import headline, locate
from pipeline.operator.streams import newest_first_everywhere

if TYPE_CHECKING:
    from pipeline.fingerprint.model import Extraction, Fingerprint

#: stream entries read back (newest first) to find this error's candidate and verdict
SCAN_LIMIT = 5_000
#: the diff is cut beyond this many characters (the patch file keeps it whole)
DIFF_LIMIT = 200_000
GIT_TIMEOUT_S = 20.0


@dataclass
class RunReport:
    """One failed ``heal run`` and what the pipeline did about it."""

    event: ErrorEvent
    #: the command's final exit status (after a re-run, when there was one)
    exit_status: int
    outcome: OutcomeEvent | None = None
    candidate: CandidateEvent | None = None
    verdict: VerdictEvent | None = None
    diff: str = ""
    #: why there is no outcome ("waited 120s (--timeout)...", a dead-letter reason, the
    #: pipeline's failure); a report says "no decision: " before it
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: the error in one line, when the fingerprint's extraction found a type and a message
    summary_line: str = ""
    #: the fine fingerprint computed here (the stage's own, ``fingerprint_event``): the
    #: error's grouping identity when no outcome names one (a run not reported or undecided)
    local_fine: str = ""
    #: the decision when there is no outcome: "none" (not decided, see ``note``),
    #: "not reported" (heal could not publish the error; ``note`` says why) or "interrupted"
    #: (Ctrl-C or a cancelled job stopped the command; nothing was published)
    undecided: str = "none"

    @property
    def decision(self) -> str:
        """applied | suggested | rolled_back | failed | escalated | observed | skipped | flaky
        | deferred | none | not reported | interrupted"""
        return self.outcome.status if self.outcome is not None else self.undecided

    @property
    def resolved(self) -> bool:
        return self.exit_status == 0

    @property
    def fix(self) -> dict[str, Any] | None:
        if self.candidate is not None and self.candidate.fix:
            fix = self.candidate.fix
            return {k: fix[k] for k in ("id", "kind", "category", "title", "pattern_id")
                    if k in fix}
        if self.outcome is not None and self.outcome.fix_id:
            return {"id": self.outcome.fix_id}
        return None

    @property
    def match(self) -> dict[str, Any]:
        return dict(self.candidate.match) if self.candidate is not None else {}

    @property
    def headline(self) -> str:
        return self.summary_line or headline(self.event.text, self.exit_status)

    def location(self) -> tuple[str, int | None]:
        """(file relative to the repository, line) of the error's innermost project frame."""
        file = str(self.params.get("file") or "")
        line = self.params.get("line")
        return file, int(line) if isinstance(line, int) else None

    @property
    def verified(self) -> bool:
        """True when the fix was re-run in a worktree and the failing step passed there (the
        applier's own test: commands and playbooks are only checked step by step when
        applied, so a suggestion of one is not verified)."""
        return self.verdict is not None and any(
            r.get("phase") == "after" for r in self.verdict.verification)

    def checkout_location(self) -> tuple[str, int | None]:
        """:meth:`location` when its file lies inside the repository, as a path relative to
        its root (what a CI annotation or a Code Quality entry needs), else ("", None): a
        frame in ``/usr/lib/...`` or a name holding control characters names no file of the
        checkout."""
        file, line = self.location()
        inside = _inside(file, self.event.repo.path)
        return (inside, line) if inside else ("", None)

    def one_handle(self, text: str) -> str:
        """``text`` with each ``heal apply FIX_ID`` of a suggestion written ``heal apply
        ERROR_ID`` (:func:`one_handle`)."""
        if self.decision != "suggested":
            return text
        return one_handle(text, str((self.fix or {}).get("id") or ""), self.event.id)

    @property
    def detail(self) -> str:
        """The outcome's detail, or why there is none, naming the error id in each ``heal
        apply`` (:meth:`one_handle`)."""
        return self.one_handle(self.outcome.detail if self.outcome is not None else self.note)

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict
        file, line = self.location()
        return {
            "error_id": self.event.id,
            "command": list(self.event.command),
            "exit_code": self.event.exit_code,
            "exit_status": self.exit_status,
            "resolved": self.resolved,
            "decision": self.decision,
            "detail": self.detail,
            "fingerprint": self.outcome.fine if self.outcome is not None else "",
            "error": {"headline": self.headline, "file": file or None, "line": line},
            "match": {"pattern_id": self.match.get("pattern_id"), "tier": self.match.get("tier"),
                      "score": self.match.get("score")},
            "fix": self.fix,
            "verification": None if verdict is None else {
                "decision": verdict.decision, "reason": verdict.reason,
                "runs": [{k: r.get(k) for k in ("phase", "name", "exit_code", "duration_s")}
                         for r in verdict.verification],
            },
            "branch": (self.outcome.branch if self.outcome is not None else "")
            or (verdict.branch if verdict is not None else ""),
            "commit": (self.outcome.commit if self.outcome is not None else "")
            or (verdict.commit if verdict is not None else ""),
            "has_diff": bool(self.diff),
        }


def one_handle(text: str, fix_id: str, error_id: str) -> str:
    """``text`` with ``heal apply FIX_ID`` written ``heal apply ERROR_ID``: the validator names
    the error, the applier the fix; the error id is the handle that always names exactly this
    suggestion (a fix id does only while no other suggestion of it waits), so the summary,
    the annotation, ``decision.json`` and the decision line tell the reader one command."""
    if not fix_id or not error_id:
        return text
    # (a literal and a one-character look-ahead: linear in the text)
    return re.sub(r"heal apply " + re.escape(fix_id) + r"(?![\w./:-])",
                  lambda _m: f"heal apply {error_id}", text)


def _inside(file: str, root: str) -> str:
    """``file`` relative to ``root`` when it names a path inside it (lexically: a report
    never touches the file system), else ""."""
    if not file or not file.isprintable():
        return ""
    if os.path.isabs(file):
        if not root or not os.path.isabs(root):
            return ""
        file = os.path.relpath(os.path.normpath(file), os.path.normpath(root))
    rel = os.path.normpath(file)
    if rel in (".", "..") or rel.startswith(("../", "/")):
        return ""
    return rel


def collect(client: Any, settings: Settings, event: ErrorEvent, exit_status: int,
            outcome: OutcomeEvent | None, note: str = "") -> RunReport:
    """The report for ``event``. Never raises: what cannot be read back is left empty."""
    report = RunReport(event, exit_status, outcome, note=note)
    report.candidate = _find(client, settings, STREAM_CANDIDATES, CandidateEvent.decode,
                             event.id)
    report.verdict = _find(client, settings, STREAM_VERDICTS, VerdictEvent.decode, event.id)
    report.params = dict(report.candidate.params) if report.candidate is not None else {}
    describe(report)
    commit = (outcome.commit if outcome is not None else "") or (
        report.verdict.commit if report.verdict is not None else "")
    if commit and event.repo.path:
        report.diff = git_show(event.repo.path, commit)
    return report


def _find(client: Any, settings: Settings, suffix: str, decode: Any, error_id: str) -> Any:
    """The newest event of ``error_id`` in stream ``suffix``, every partition of it
    (HEAL_PARTITIONS: the caller's settings need not be the error's partition view)."""
    try:
        for ev in newest_first_everywhere(client, settings, suffix, decode, SCAN_LIMIT):
            if ev.error_id == error_id:
                return ev
    except HealError:
        return None
    return None


def describe(report: RunReport) -> None:
    """Fill the one-line summary and, when the extraction named none, the file and line:
    local (the fingerprint's extraction of the text), so a report built without the engines
    (not reported, interrupted) has them too. Never raises."""
    from pipeline.fingerprint import fingerprint_event

    event = report.event
    try:
        fp = fingerprint_event(event)
    except Exception:  # noqa: BLE001 - a report never fails the run
        fp = None
    if fp is not None:
        _take_location(report, fp)
        report.local_fine = fp.fine
        report.summary_line = summary_line(event.text, fp.extraction)
    if not report.params.get("file"):
        try:
            found = locate(event.text, event.repo.path)
        except Exception:  # noqa: BLE001 - a report never fails the run
            found = None
        if found is not None:
            report.params["file"], report.params["line"] = found


def _take_location(report: RunReport, fp: Fingerprint) -> None:
    """The extraction's file and line into ``report.params`` (when the lookup's gave none);
    for an error keyed on how its command ended, none: the key's "frame" is the program that
    ended (``sh -c``, ``sleep``), no file of the checkout, so never the annotation's
    ``file=`` nor the JSON's ``file`` (the lookup's params carry it too: dropped)."""
    from pipeline.fingerprint.status import EXIT_KIND

    ex = fp.extraction
    if ex is not None and ex.kind == EXIT_KIND:
        if report.params.get("file") in {f.file for f in ex.frames}:
            report.params.pop("file", None)
            report.params.pop("line", None)
        return
    for key in ("file", "line"):
        if key in fp.params and key not in report.params:
            report.params[key] = fp.params[key]


def summary_line(text: str, ex: Extraction | None) -> str:
    """The error in one line as the command wrote it, from the fingerprint's extraction
    ``ex``; "" when it found no type (the headline of the text is then the report's)."""
    from pipeline.fingerprint.status import EXIT_KIND

    if ex is None:
        return ""
    if ex.kind == EXIT_KIND:
        # no line said what failed: how the command ended does (``killed by SIGSEGV``), with
        # the last line as the command wrote it (``exit 3: start``), never the grouping
        # key's masked text (``exit 3: <idtoken>``)
        if ex.error_type.startswith("SIG"):
            return ex.message.strip()[:300]
        message = ex.message.strip()
        return f"{ex.error_type}: {message}"[:300] if message else ""
    if not ex.error_type:
        return ""
    return (own_line(text, ex.error_type, ex.message)
            or f"{ex.error_type}: {ex.message}".strip())[:300]


def own_line(text: str, error_type: str, message: str) -> str:
    """The line of ``text`` that says ``error_type: message`` as the program wrote it, from
    the word holding the type on (``Error: database connection failed``, ``error[E0425]:
    cannot find value``, ``ERROR [db] connection failed``: a timestamp before it dropped),
    never the extraction's respelling (``ERROR: ...``); "" when no line holds the message
    (a message of several lines, or a type that is no word of the line). Linear: plain
    substring searches over at most the last 2,000 lines / 64 KiB."""
    lines = message.strip().splitlines()
    if len(lines) != 1 or not error_type:
        return ""
    wanted, kind = lines[0].strip(), error_type.lower()
    for line in reversed(text[-65536:].splitlines()[-2000:]):
        at = line.find(wanted)
        if at < 0:
            continue
        start = line.lower().rfind(kind, 0, at)
        if start < 0:
            continue
        # (from the start of the word holding the type: ``error[E0425]``, ``java.lang.X``)
        while start > 0 and not line[start - 1].isspace():
            start -= 1
        return line[start:].strip()
    return ""


def git_show(repo: str, commit: str) -> str:
    """The patch of ``commit`` (``git format-patch`` style body), or "" when git cannot say."""
    try:
        # shown to a person: a byte of the content that is not UTF-8 (a Latin-1 file) is
        # U+FFFD, never a decoding error that loses the report (names are C-quoted ASCII)
        done = run_git(["show", "--format=", "--patch", commit], repo or ".", capture_output=True,
                       encoding="utf-8", errors="replace", timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout[:DIFF_LIMIT] if done.returncode == 0 else ""
