"""The teaching answers of ``heal issues review`` (command, commit, playbook, escalate): each
goes through :class:`pipeline.learn.teach.Teacher`, exactly like ``heal learn``, with the
issue's sample as the error it is taught from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.learn import fixes
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Teacher

TeachAnswer = Callable[[dict[str, Any], str, str], tuple[str, str]]


def fix_for_answer(answer: str, value: str, root: Path | None) -> fixes.FixDraft:
    """The fix an answer teaches, with the checks ``heal learn`` makes on the same value: a
    command's or playbook's arguments must stay inside the review's repository ``root``
    (:func:`pipeline.learn.fixes.check_stays_inside`; without one, no absolute path and no
    ``..``), so ``rm -rf /`` is refused here as it is there, before anything is stored.

    Raises UsageError for a bad value (said, then asked again)."""
    if answer == "c":
        draft = fixes.command_fix(value)
        fixes.check_stays_inside(draft, root, f"the command {value}")
        return draft
    if answer == "m":
        if root is None:
            raise UsageError("a commit needs the repository: run the review inside it "
                             "(or with --repo PATH)")
        return fixes.commit_fix(root, value)
    if answer == "p":
        draft = fixes.playbook_fix(value)
        fixes.check_stays_inside(draft, root, f"the playbook {value}")
        return draft
    if answer == "e":
        return fixes.escalate_fix(value)
    raise UsageError(f"unknown answer {answer!r}")


def review_teacher(teacher: Teacher, root: Path | None) -> TeachAnswer:
    def teach(issue: dict[str, Any], answer: str, value: str) -> tuple[str, str]:
        lesson = Lesson(TaughtError.of_issue(issue), fix_for_answer(answer, value, root),
                        source="heal issues review")
        taught = teacher.teach(lesson)
        return taught.pattern_id, taught.fix_id

    return teach
