"""The fix of a lesson an orchestrator or agent reports (``on_learn_phase_complete``):
``{"error": text, "fix": text, "fix_kind": "command"|"escalate"|"playbook"|"commit"}``.

Without ``fix_kind``, a ``fix`` whose first word is a program (on PATH, or a file in the
repository) is a command; anything else ("ask infra to rotate the token") is a message for a
human. Either way it is taught like ``heal learn``: DRAFT, verified before it is offered.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.learn import fixes
from pipeline.spelling import spelled

KINDS = ("command", "escalate", "playbook", "commit")


def _is_program(word: str, repo: str) -> bool:
    if shutil.which(word) is not None:
        return True
    return bool(repo) and "/" in word and (Path(repo) / word).is_file()


def lesson_fix(lesson: Mapping[str, Any], repo: str = "") -> fixes.FixDraft | None:
    """The fix draft of one lesson (None when it names no fix).

    Raises:
        UsageError: a fix_kind that is not known, or a fix that cannot be taught as given.
    """
    text = lesson.get("fix")
    if not isinstance(text, str) or not text.strip():
        return None
    kind = str(lesson.get("fix_kind") or "")
    if kind and kind not in KINDS:
        raise UsageError(f"lesson fix_kind {spelled(lesson.get('fix_kind'))}: one of "
                         f"{', '.join(KINDS)}")
    if not kind:
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        kind = "command" if words and _is_program(words[0], repo) else "escalate"
    if kind == "command":
        return fixes.command_fix(text)
    if kind == "playbook":
        return fixes.playbook_fix(text)
    if kind == "commit":
        if not repo:
            raise UsageError("a lesson with fix_kind commit needs the hooks' repo_path")
        return fixes.commit_fix(Path(repo), text.strip())
    return fixes.escalate_fix(text)
