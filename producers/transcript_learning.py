"""Learning from agent transcripts: a failing tool call, then the agent's edits, then the same
command passing yields a precedent: the diff of those edits, taught as a DRAFT RISKY diff fix
(``pipeline.learn.teach``), verified in a worktree before it is ever offered.

The diff is rebuilt from the transcript itself: the edited files' content at the repository's
HEAD, with the agent's ``Write`` (whole content) and ``Edit``/``MultiEdit`` (``old_string`` ->
``new_string``) calls replayed in order. A sequence that cannot be replayed exactly (an
``old_string`` that is not there, a file outside the repository, a binary file) teaches
nothing and says why.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import GitError
from pipeline.events import ErrorEvent
from producers.context import is_exact
from producers.transcript import TranscriptReader, TranscriptStats, content_text

EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "write", "edit", "str_replace_editor"})
RUN_TOOLS = frozenset({"Bash", "bash", "shell", "run", "execute"})
MAX_EDITS = 200


@dataclass
class Precedent:
    """One fail -> edits -> pass sequence."""

    command: str
    error_text: str
    error_id: str
    cwd: str
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Attempt:
    """What the learner found: a diff to teach, or why not."""

    precedent: Precedent
    diff: str = ""
    files: list[str] = field(default_factory=list)
    skipped: str = ""


def _replay(text: str, tool: str, args: dict[str, Any]) -> str:
    """One edit applied to ``text``; ValueError when it cannot be replayed exactly."""
    if tool in ("Write", "write") or (tool == "str_replace_editor"
                                      and args.get("command") == "create"):
        content = args.get("content", args.get("file_text"))
        if not isinstance(content, str):
            raise ValueError("a write without its content")
        return content
    edits = args.get("edits") if tool == "MultiEdit" else [args]
    for edit in edits or []:
        old, new = edit.get("old_string", edit.get("old_str")), edit.get(
            "new_string", edit.get("new_str", ""))
        if not isinstance(old, str) or not isinstance(new, str) or old not in text:
            raise ValueError("an edit whose old text is not in the file")
        text = text.replace(old, new) if edit.get("replace_all") else text.replace(old, new, 1)
    return text


class TranscriptLearner:
    """Feeds on transcript lines (as :class:`producers.transcript.TranscriptReader` does) and
    collects the fail -> edits -> pass sequences as :class:`Precedent` objects."""

    def __init__(self, path: str = "") -> None:
        self.reader = TranscriptReader(path, lambda: path)
        self._calls: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        self._open: dict[str, Precedent] = {}  # failing command -> its open precedent
        self.done: list[Precedent] = []

    def feed(self, line: str) -> list[Precedent]:
        """Returns the precedents this line completed."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(obj, dict):
            return []
        finished: list[Precedent] = []
        for block in TranscriptReader._blocks(obj):
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                args = block.get("input") if isinstance(block.get("input"), dict) else {}
                self._calls[block["id"]] = (str(block.get("name", "")), args or {}, obj)
                self._edit(str(block.get("name", "")), args or {})
            elif block.get("type") == "tool_result":
                done = self._result(block, obj)
                if done is not None:
                    finished.append(done)
        self.done += finished
        return finished

    def _edit(self, tool: str, args: dict[str, Any]) -> None:
        if tool not in EDIT_TOOLS:
            return
        path = args.get("file_path", args.get("path"))
        if not isinstance(path, str):
            return
        for precedent in self._open.values():
            if len(precedent.edits) < MAX_EDITS:
                precedent.edits.append((tool, {**args, "file_path": path}))

    def _result(self, block: dict[str, Any], obj: dict[str, Any]) -> Precedent | None:
        call = self._calls.get(str(block.get("tool_use_id", "")))
        if call is None or call[0] not in RUN_TOOLS:
            return None
        command = str(call[1].get("command", "")).strip()
        if not command:
            return None
        if block.get("is_error") is True:
            if command not in self._open:
                event = self.reader._result_event(call[2], block, 0, 0)
                if event is None:  # (the contract refuses it: never published either)
                    return None
                self._open[command] = Precedent(command, content_text(block.get("content")),
                                                event.id, str(call[2].get("cwd") or ""))
            return None
        precedent = self._open.pop(command, None)
        return precedent if precedent is not None and precedent.edits else None


def build_diff(precedent: Precedent, root: Path) -> Attempt:
    """The unified diff of the precedent's edits against the files at HEAD of ``root``."""
    from pipeline.gitops import GitRepo

    try:
        repo = GitRepo(root)
    except GitError as exc:
        return Attempt(precedent, skipped=f"no repository: {exc}")
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for tool, args in precedent.edits:
        path = Path(args["file_path"])
        full = path if path.is_absolute() else Path(precedent.cwd or root) / path
        try:
            rel = full.resolve().relative_to(repo.root).as_posix()
        except ValueError:
            return Attempt(precedent, skipped=f"{args['file_path']} is outside the repository")
        if rel.split("/")[0] == ".git":
            return Attempt(precedent, skipped=f"{rel} is inside .git")
        if rel not in after:
            shown = repo.run("show", f"HEAD:{rel}", check=False)
            before[rel] = shown.stdout if shown.returncode == 0 else ""
            after[rel] = before[rel]
        try:
            after[rel] = _replay(after[rel], tool, args)
        except ValueError as exc:
            return Attempt(precedent, skipped=f"{rel}: {exc}")
    chunks: list[str] = []
    for rel in sorted(after):
        if after[rel] == before[rel]:
            continue
        chunks += difflib.unified_diff(
            before[rel].splitlines(keepends=True), after[rel].splitlines(keepends=True),
            "/dev/null" if not before[rel] else f"a/{rel}", f"b/{rel}")
    diff = "".join(c if c.endswith("\n") else c + "\n\\ No newline at end of file\n"
                   for c in chunks)
    if not diff:
        return Attempt(precedent, skipped="the edits changed nothing")
    if not is_exact(diff):  # git gave a byte that is not UTF-8 as a surrogate escape
        return Attempt(precedent, skipped="a file it edits is not UTF-8 text (Latin-1, say); "
                       "a taught fix is a diff of UTF-8 text")
    return Attempt(precedent, diff, sorted(r for r in after if after[r] != before[r]))


def teach_precedent(teacher: Any, precedent: Precedent, root: Path | None,
                    origin: str) -> tuple[Any, Attempt]:
    """Teach one precedent as a DRAFT RISKY diff fix (None when it cannot be taught; the
    Attempt says why). Raises DatabaseUnavailable / QueryError."""
    from pipeline.errors import UsageError
    from pipeline.gitops import find_root
    from pipeline.learn.fixes import FixDraft
    from pipeline.learn.source import TaughtError
    from pipeline.learn.teach import Lesson
    from producers.transcript import command_argv

    if root is None:
        try:
            root = find_root(precedent.cwd or ".")
        except GitError as exc:
            return None, Attempt(precedent, skipped=f"no repository for {precedent.cwd!r}: {exc}")
    attempt = build_diff(precedent, root)
    if not attempt.diff:
        return None, attempt
    draft = FixDraft(
        "diff", f"Agent precedent: edits to {', '.join(attempt.files)[:70]}",
        f"An agent's edits made `{precedent.command[:120]}` pass after it failed; the diff is "
        "verified in a worktree before it is offered.",
        {"diff": attempt.diff, "literal": True},
        {"transcript": origin, "command": precedent.command[:500]})
    error = TaughtError(precedent.error_id, precedent.error_text, "", repo=str(root),
                        command=tuple(command_argv(precedent.command)), why="agent precedent")
    try:
        taught = teacher.teach(Lesson(error, draft, category="RISKY", source="transcript"))
    except UsageError as exc:
        return None, Attempt(precedent, skipped=str(exc))
    return taught, attempt


class LearningTranscriptReader(TranscriptReader):
    """The transcript reader of ``heal watch --transcript``, which also learns: every
    fail -> edits -> pass sequence it reads is handed to ``learn`` as it completes."""

    def __init__(self, path: str, identity: Callable[[], str],
                 learn: Callable[[Precedent], None],
                 stats: TranscriptStats | None = None) -> None:
        super().__init__(path, identity, stats)
        self.learner = TranscriptLearner(path)
        self.learn = learn

    def feed(self, line: str, start: int, end: int, number: int, cut: int = 0
             ) -> list[ErrorEvent]:
        events = super().feed(line, start, end, number, cut)
        if cut:
            return events  # (a cut line is not JSON: nothing to learn)
        for precedent in self.learner.feed(line):
            self.learn(precedent)
        return events


class WatchTeacher:
    """Teaches what ``heal watch --transcript`` reads, opening PostgreSQL at the first lesson;
    a lesson that cannot be stored is reported and the watch goes on."""

    def __init__(self, settings: Any, report: Callable[[str], None]) -> None:
        self.settings = settings
        self.report = report
        self._db: Any = None
        self.taught = 0

    def __call__(self, precedent: Precedent) -> None:
        from pipeline.errors import HealError
        from pipeline.guardrails.audit import AuditLog
        from pipeline.learn.teach import Teacher
        from storage.engines import open_database

        try:
            if self._db is None:
                self._db = open_database(self.settings)
            teacher = Teacher(self._db, AuditLog(self.settings, db=self._db))
            taught, attempt = teach_precedent(teacher, precedent, None, "heal watch")
        except HealError as exc:
            self.report(f"could not learn from `{precedent.command[:80]}`: {exc}")
            return
        if taught is None:
            self.report(f"nothing learned from `{precedent.command[:80]}`: {attempt.skipped}")
            return
        self.taught += 1
        self.report(f"learned DRAFT precedent {taught.fix_id} (diff, RISKY) for "
                    f"`{precedent.command[:80]}`")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
