"""The issue-queue review: unmatched error groups one at a time, asking how each was resolved
(c = a command, m = a commit, p = a playbook, e = escalate with a message: each taught through
the same path as ``heal learn``; y = a DRAFT placeholder pattern with an escalate fix,
n = ignore the fingerprint, s = skip, q = quit), or in batches.

The logic is independent of the terminal: :class:`Reviewer` takes an ``ask`` callable, so the
CLI reads answers from a TTY and tests can drive it with a pseudo-terminal.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.console import clip, visible
from pipeline.errors import UsageError
from pipeline.events import FingerprintEvent
from pipeline.guardrails.audit import AuditLog
from pipeline.operator.streams import SCAN_LIMIT, newest_first_everywhere
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore, review_pattern_id

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: the longest age ``parse_age`` accepts (100 years): ages are subtracted from now, and a
#: larger one would leave the range of a date (OverflowError) or mean nothing anyway
MAX_AGE = dt.timedelta(days=36_500)


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` -> a timedelta of at most :data:`MAX_AGE` (100 years:
    36500d, 5214w, 876000h, 52560000m). Raises UsageError otherwise."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([mhdw])\s*", text or "")
    if not m:
        raise UsageError(f"age {text!r}: write a number and a unit m/h/d/w, e.g. 7d or 24h")
    digits, unit = m.group(1).lstrip("0") or "0", m.group(2)
    longest = int(MAX_AGE.total_seconds()) // _UNITS[unit]
    # the length first: int() of thousands of digits is refused (ValueError) or slow
    if len(digits) > len(str(longest)) or int(digits) > longest:
        raise UsageError(f"age {text.strip()[:40]!r} is over the maximum of 100 years "
                         "(36500d, 5214w, 876000h or 52560000m)")
    return dt.timedelta(seconds=int(digits) * _UNITS[unit])


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = (text or "").partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--tag {text!r}: write KEY=VALUE, e.g. --tag team=infra")
    return key.strip(), value.strip()


def tags_by_fine(client: redis.Redis, settings: Settings, fines: Iterable[str],
                 limit: int = SCAN_LIMIT) -> dict[str, list[dict[str, Any]]]:
    """Tags of the errors still held in the fingerprints stream, per fine fingerprint (the
    issue queue itself keeps no tags). Reads newest first, at most ``limit`` entries.
    Raises StreamUnavailable when Redis cannot be reached."""
    wanted = set(fines)
    found: dict[str, list[dict[str, Any]]] = {}
    for ev in newest_first_everywhere(client, settings, "fingerprints",
                                      FingerprintEvent.decode, limit):
        if ev.fine in wanted:
            found.setdefault(ev.fine, []).append(dict(ev.error.tags))
    return found


def pattern_id_for(fine: str) -> str:
    return review_pattern_id(fine)


@dataclass
class ReviewResult:
    created: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    taught: list[dict[str, str]] = field(default_factory=list)
    quit: bool = False
    #: why a ``y`` stored nothing (its group is among ``skipped``): said on stderr, exit 1
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "ignored": self.ignored, "skipped": self.skipped,
                "taught": self.taught, "quit": self.quit}


#: answers that teach a fix: (letter, what the follow-up question asks for)
TEACH = {"c": "the command that fixed it (an argv, no shell)",
         "m": "the commit that fixed it (SHA)",
         "p": "the playbook file (the seeds' playbook YAML)",
         "e": "the message for the human who has to act"}
PROMPT = ("resolved by a command [c], commit [m], playbook [p], escalate [e]; "
          "draft pattern [y], ignore [n], skip [s], quit [q]? ")


class Reviewer:
    """Applies review decisions through the repositories and records them in the audit log.

    ``teach(issue, answer, value)`` (when given) stores a taught fix the way ``heal learn``
    does and returns (pattern id, fix id); it raises UsageError for a bad value, which is
    shown and asked again."""

    def __init__(self, reports: ReportStore, lifecycle: LifecycleStore, audit: AuditLog,
                 teach: Callable[[dict[str, Any], str, str], tuple[str, str]] | None = None,
                 ) -> None:
        self.reports = reports
        self.lifecycle = lifecycle
        self.audit = audit
        self.teach = teach

    def create_pattern(self, issue: dict[str, Any]) -> str:
        pid = pattern_id_for(issue["fine"])
        message = (f"Unmatched error seen {issue['count']} time(s) "
                   f"(fingerprint {issue['fine']}); investigate and write a real fix")
        # audited first: no change without its record (a full HEAL_HOME stops it here)
        self.audit.append("issue.pattern", issue["fine"], {"pattern_id": pid})
        self.reports.create_draft_pattern(issue, pid, message)
        return pid

    def ignore(self, issue: dict[str, Any]) -> None:
        # audited first: no change without its record (a full HEAL_HOME stops it here)
        self.audit.append("fingerprint.ignore", issue["fine"],
                          {"ignored": True, "reason": "heal issues review"})
        self.lifecycle.set_ignored(issue["fine"], True, "heal issues review")

    def batch(self, issues: list[dict[str, Any]], action: str) -> ReviewResult:
        result = ReviewResult()
        for issue in issues:
            if action == "ignore":
                self.ignore(issue)
                result.ignored.append(issue["fine"])
            else:
                try:
                    self.create_pattern(issue)
                except UsageError as exc:  # a row under its ids it did not create
                    result.skipped.append(issue["fine"])
                    result.refused.append(str(exc))
                    continue
                result.created.append(issue["fine"])
        return result

    def interactive(self, issues: list[dict[str, Any]], ask: Callable[[str], str | None],
                    show: Callable[[str], None]) -> ReviewResult:
        """One group at a time; ``ask`` returns the answer or None at end of input (quit)."""
        result = ReviewResult()
        for n, issue in enumerate(issues, 1):
            show(describe(issue, n, len(issues)))
            answer = _answer(ask, teaching=self.teach is not None)
            if answer in TEACH:
                taught = self._teach(issue, answer, ask, show)
                if taught == "q":
                    result.quit = True
                    break
                if isinstance(taught, dict):
                    result.taught.append(taught)
                else:  # "s"
                    show("  skipped")
                    result.skipped.append(issue["fine"])
                continue
            if answer == "q":
                result.quit = True
                break
            if answer == "y":
                try:
                    show(f"  created DRAFT pattern {self.create_pattern(issue)}")
                except UsageError as exc:  # a row under its ids it did not create
                    show(f"  {exc}")
                    result.skipped.append(issue["fine"])
                    result.refused.append(str(exc))
                    continue
                result.created.append(issue["fine"])
            elif answer == "n":
                self.ignore(issue)
                show("  ignored")
                result.ignored.append(issue["fine"])
            else:
                result.skipped.append(issue["fine"])
        return result


    def _teach(self, issue: dict[str, Any], answer: str, ask: Callable[[str], str | None],
               show: Callable[[str], None]) -> dict[str, str] | str:
        """Ask for the value until it teaches: the taught ids, or ``"s"`` (an empty answer,
        ``s`` or ``skip``: this group is skipped) or ``"q"`` (``q``, ``quit`` or end of
        input). A refused value is said and asked again with the same way out, so a refusal
        never traps the reviewer, and a control answer is never taught as a command."""
        assert self.teach is not None
        while True:
            value = ask(f"  {_asking(answer)}: ")
            if value is None:
                return "q"
            word = value.strip()
            if word.lower() in _SKIP:
                return "s"
            if word.lower() in _QUIT:
                return "q"
            try:
                pattern_id, fix_id = self.teach(issue, answer, word)
            except UsageError as exc:
                show(f"  {exc}")
                continue
            show(f"  taught DRAFT pattern {pattern_id} with fix {fix_id} (verified before it "
                 "is offered)")
            return {"fine": issue["fine"], "pattern_id": pattern_id, "fix_id": fix_id}


#: the way out of a teaching question (said in its prompt): these answers are never taught
_WAY_OUT = "Enter or s = skip this error, q = quit"
_SKIP = ("", "s", "skip")
_QUIT = ("q", "quit")


def _asking(answer: str) -> str:
    """The teaching question with its way out, inside its parentheses:
    ``the commit that fixed it (SHA; Enter or s = skip this error, q = quit)``."""
    what = TEACH[answer]
    if what.endswith(")"):
        return f"{what[:-1]}; {_WAY_OUT})"
    return f"{what} ({_WAY_OUT})"


#: a teaching answer is the letter or the word, never a word that merely starts with it
_WORDS = {"c": "command", "m": "commit", "p": "playbook", "e": "escalate"}


def _answer(ask: Callable[[str], str | None], teaching: bool = False) -> str:
    prompt = PROMPT if teaching else "create pattern [y], ignore [n], skip [s], quit [q]? "
    while True:
        raw = ask(prompt)
        if raw is None:
            return "q"
        word = raw.strip().lower()
        if teaching:
            taught = next((k for k, w in _WORDS.items() if word in (k, w)), None)
            if taught is not None:
                return taught
        if word[:1] in ("y", "n", "s", "q"):
            return word[:1]


def describe(issue: dict[str, Any], n: int, total: int) -> str:
    """The group as the review shows it; the sample's lines :func:`visible` (event text: an
    escape sequence printed raw would drive the reviewer's terminal)."""
    sample = [ln for ln in str(issue.get("sample", "")).rstrip().splitlines()][-6:]
    lines = [f"[{n}/{total}] {visible(str(issue['fine']))}  seen {issue['count']}x  "
             f"first {issue['first_seen']}  last {issue['last_seen']}"]
    lines += [f"    {clip(visible(ln), 110)}" for ln in sample]
    return "\n".join(lines)
