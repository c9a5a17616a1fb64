"""The issue-queue review: unmatched error groups one at a time (y = make a DRAFT pattern with
an escalate fix, n = ignore the fingerprint, s = skip, q = quit), or in batches.

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
from pipeline.errors import UsageError
from pipeline.events import FingerprintEvent
from pipeline.guardrails.audit import AuditLog
from pipeline.operator.streams import SCAN_LIMIT, newest_first_everywhere
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` -> a timedelta. Raises UsageError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text or "")
    if not m:
        raise UsageError(f"age {text!r}: write a number and a unit m/h/d/w, e.g. 7d or 24h")
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


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
    return f"review.{fine.split(':', 1)[-1]}"


@dataclass
class ReviewResult:
    created: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quit: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "ignored": self.ignored, "skipped": self.skipped,
                "quit": self.quit}


class Reviewer:
    """Applies review decisions through the repositories and records them in the audit log."""

    def __init__(self, reports: ReportStore, lifecycle: LifecycleStore, audit: AuditLog) -> None:
        self.reports = reports
        self.lifecycle = lifecycle
        self.audit = audit

    def create_pattern(self, issue: dict[str, Any]) -> str:
        pid = pattern_id_for(issue["fine"])
        message = (f"Unmatched error seen {issue['count']} time(s) "
                   f"(fingerprint {issue['fine']}); investigate and write a real fix")
        self.reports.create_draft_pattern(issue, pid, message)
        self.audit.append("issue.pattern", issue["fine"], {"pattern_id": pid})
        return pid

    def ignore(self, issue: dict[str, Any]) -> None:
        self.lifecycle.set_ignored(issue["fine"], True, "heal issues review")
        self.reports.set_issue_status(issue["fine"], "ignored")
        self.audit.append("fingerprint.ignore", issue["fine"],
                          {"ignored": True, "reason": "heal issues review"})

    def batch(self, issues: list[dict[str, Any]], action: str) -> ReviewResult:
        result = ReviewResult()
        for issue in issues:
            if action == "ignore":
                self.ignore(issue)
                result.ignored.append(issue["fine"])
            else:
                self.create_pattern(issue)
                result.created.append(issue["fine"])
        return result

    def interactive(self, issues: list[dict[str, Any]], ask: Callable[[str], str | None],
                    show: Callable[[str], None]) -> ReviewResult:
        """One group at a time; ``ask`` returns the answer or None at end of input (quit)."""
        result = ReviewResult()
        for n, issue in enumerate(issues, 1):
            show(describe(issue, n, len(issues)))
            answer = _answer(ask)
            if answer == "q":
                result.quit = True
                break
            if answer == "y":
                show(f"  created DRAFT pattern {self.create_pattern(issue)}")
                result.created.append(issue["fine"])
            elif answer == "n":
                self.ignore(issue)
                show("  ignored")
                result.ignored.append(issue["fine"])
            else:
                result.skipped.append(issue["fine"])
        return result


def _answer(ask: Callable[[str], str | None]) -> str:
    while True:
        raw = ask("create pattern [y], ignore [n], skip [s], quit [q]? ")
        if raw is None:
            return "q"
        choice = raw.strip().lower()[:1]
        if choice in ("y", "n", "s", "q"):
            return choice


def describe(issue: dict[str, Any], n: int, total: int) -> str:
    sample = [ln for ln in str(issue.get("sample", "")).rstrip().splitlines()][-6:]
    lines = [f"[{n}/{total}] {issue['fine']}  seen {issue['count']}x  "
             f"first {issue['first_seen']}  last {issue['last_seen']}"]
    lines += [f"    {ln[:110]}" for ln in sample]
    return "\n".join(lines)
