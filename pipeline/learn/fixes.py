"""The fix a person teaches, from ``--command``, ``--commit``, ``--playbook`` or ``--escalate``,
as the seeds' fix mapping (kind, title, explanation and the kind's template).

Every input is checked before anything is stored: a command is an argv run without a shell
(so shell syntax in it is refused, not silently taken literally); a commit must change
something and only regular files inside the repository; a playbook must be the seeds'
playbook format. Taught commands and diffs are ``literal``: braces in them are the program's
own text, never template placeholders.

Raises (every builder): UsageError, with what to change.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.console import visible
from pipeline.errors import ConfigError, GitError, UsageError
from pipeline.fixes.render import STEP_PHASES, check_steps
from pipeline.safefile import load_yaml_file
from pipeline.spelling import spelled

#: characters a shell would interpret; heal runs argv without one, so they are refused
SHELL_META = frozenset(";&|<>$`\\\n\r*?(){}!")
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh"})
MAX_DIFF_BYTES = 1_000_000
_REV = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/~^-]{0,199}$")


@dataclass(frozen=True)
class FixDraft:
    kind: str
    title: str
    explanation: str
    template: dict[str, Any] = field(default_factory=dict)
    #: what the provenance records about the fix (the commit taught, the playbook file)
    origin: dict[str, str] = field(default_factory=dict)

    def as_fix(self, fix_id: str, category: str) -> dict[str, Any]:
        return {"id": fix_id, "kind": self.kind, "category": category, "state": "DRAFT",
                "title": self.title, "explanation": self.explanation, **self.template}


def check_argv(argv: list[str], what: str = "--command") -> list[str]:
    """Refuse an empty argv, shell syntax, and a shell asked to run a string."""
    if not argv or not argv[0].strip():
        raise UsageError(f"{what}: give the command to run, e.g. --command 'npm ci'")
    for word in argv:
        bad = sorted(set(word) & SHELL_META)
        if bad or word.startswith("~"):
            shown = "".join(bad) or "~"
            raise UsageError(
                f"{what}: {word!r} holds shell syntax ({shown}); heal runs the command as an "
                "argv without a shell, so pipes, redirections, variables, globs and ~ would not "
                "mean what they say. Give plain words, or put the steps in a script in the "
                "repository and teach that script, or use --playbook FILE")
    if PurePosixPath(argv[0]).name in SHELLS and any(a.startswith("-") and "c" in a
                                                       for a in argv[1:]):
        raise UsageError(f"{what}: {argv[0]} -c runs a shell string; give the command itself "
                         "as words, or put it in a script in the repository")
    return argv


def fix_words(fix: FixDraft) -> list[str]:
    """The arguments a command or playbook fix passes to its programs (each argv but its
    first word), the values the validate pre-flight and the apply stage check as paths."""
    if fix.kind == "command":
        return [str(a) for a in (fix.template.get("argv") or [])[1:]]
    if fix.kind != "playbook":
        return []
    steps = fix.template.get("steps") or {}
    return [str(a) for phase in steps.values() if isinstance(phase, list)
            for step in phase if isinstance(step, dict)
            for a in (step.get("argv") or [])[1:]]


def check_stays_inside(fix: FixDraft, root: Path | None, what: str = "--command") -> None:
    """Refuse a command or playbook whose arguments leave the repository ``root``: an
    absolute path outside it, ``..``, a symlink out. The same check as the validate
    pre-flight and the apply stage (:func:`pipeline.validate.paths.fix_escape`), made when
    the lesson is taught, so such a fix is never stored, let alone run in a verification.
    Without a repository (an error known only by its fingerprint, outside any checkout),
    any absolute path and any ``..`` is refused.

    Raises:
        UsageError: naming the argument and why.
    """
    from pipeline.validate.paths import fix_escape

    words = fix_words(fix)
    if root is None:
        # (an option's value after its '=' too: ``--output=/etc/x``)
        values = [w.partition("=")[2] if w.startswith("-") else w for w in words]
        problem = next((f"path {spelled(w)} is absolute or contains '..'" for w in values
                        if w.startswith("/") or ".." in PurePosixPath(w).parts), None)
        where = "the repository it fixes"
    else:
        problem = fix_escape(root, root, words)
        where = str(root)
    if problem:
        raise UsageError(f"{what}: {problem}. A taught fix acts only inside the repository "
                         f"({where}): heal refuses it before storing it, as it would refuse "
                         "to verify or apply it; give paths relative to the repository root")


def command_fix(text: str) -> FixDraft:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--command {text!r}: {exc}; quote it as words, e.g. "
                         "--command 'npm ci --no-audit'") from exc
    check_argv(argv)
    return FixDraft("command", f"Run {shlex.join(argv)[:80]}",
                    "Taught by a person: this command resolved the error.",
                    {"argv": argv, "literal": True, "timeout_s": 600,
                     "verify_in_worktree": True})


def escalate_fix(message: str) -> FixDraft:
    if not message.strip():
        raise UsageError("--escalate: say what a person should do, e.g. --escalate 'ask infra "
                         "to rotate the token'")
    return FixDraft("escalate", "Escalate to a human", message.strip(),
                    {"message": message.strip()})


def playbook_fix(path: str) -> FixDraft:
    file = Path(path)
    doc = load_yaml_file(file, f"--playbook {path}")
    if not isinstance(doc, dict):
        raise UsageError(f"--playbook {path}: expected a mapping with 'steps:' (phases "
                         f"{', '.join(STEP_PHASES)}), as in the seeds")
    steps = doc.get("steps", doc)
    if not isinstance(steps, dict) or not steps.get("primary"):
        raise UsageError(f"--playbook {path}: needs steps with at least one 'primary' step "
                         f"(phases {', '.join(STEP_PHASES)}), as in the seeds")
    try:
        check_steps(f"--playbook {path}", steps)
    except ConfigError as exc:
        raise UsageError(str(exc).removeprefix("fix ")) from exc
    for phase, items in steps.items():
        for index, step in enumerate(items):
            if "argv" in step:
                argv = step["argv"]
                if not isinstance(argv, list):
                    raise UsageError(f"--playbook {path}: steps.{phase}[{index}] argv must be "
                                     f"a list of words, got {spelled(argv)}")
                check_argv([str(a) for a in argv], f"--playbook {path}: steps.{phase}[{index}]")
    title = str(doc.get("title") or f"Playbook {file.name}")
    explanation = str(doc.get("explanation") or "Taught by a person: these steps resolved "
                      "the error.")
    return FixDraft("playbook", title, explanation, {"steps": steps},
                    {"playbook": file.name})


def commit_fix(root: Path, rev: str) -> FixDraft:
    """The diff of ``rev`` against its parent in the repository at ``root``."""
    from pipeline.gitops import GitRepo

    if not _REV.match(rev):
        raise UsageError(f"--commit {rev!r}: give a commit id or a ref name")
    try:
        repo = GitRepo(root)
        sha = repo.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}",
                       check=False).stdout.strip()
        if not sha:
            raise UsageError(f"--commit {rev}: no such commit in {repo.root}")
        parents = repo.run("rev-list", "--parents", "-n", "1", sha).stdout.split()[1:]
        if len(parents) != 1:
            raise UsageError(f"--commit {rev}: a {'root' if not parents else 'merge'} commit "
                             "has no single parent to diff against; teach the commit that "
                             "made the change")
        raw = repo.run("diff", "--raw", "--no-renames", "-z", parents[0], sha).stdout
        diff = repo.run("diff", "--no-color", "--no-ext-diff", "--no-renames", "--full-index",
                        "--binary", parents[0], sha).stdout
        subject = visible(repo.run("log", "-1", "--format=%s", sha).stdout.strip())
    except GitError as exc:
        raise UsageError(f"--commit {rev}: {exc}") from exc
    _check_paths(repo.root, rev, raw)
    if not diff.strip():
        raise UsageError(f"--commit {rev}: it touches nothing; teach a commit that changed "
                         "the files that fixed the error")
    try:
        size = len(diff.encode())
    except UnicodeEncodeError:  # a surrogate escape (see GitRepo.run): a byte not UTF-8
        raise UsageError(f"--commit {rev}: its diff holds bytes that are not UTF-8 (a file "
                         "in Latin-1, say); a taught fix is a diff of UTF-8 text: teach a "
                         "commit that changes UTF-8 files only") from None
    if size > MAX_DIFF_BYTES:
        raise UsageError(f"--commit {rev}: its diff is over {MAX_DIFF_BYTES} bytes; a fix to "
                         "teach is a focused change")
    return FixDraft("diff", f"Apply {sha[:10]}: {subject[:70]}",
                    f"Taught by a person: commit {sha[:10]} ({subject[:120]}) resolved the "
                    "error; its diff is verified before it is offered.",
                    {"diff": diff, "literal": True}, {"commit": sha})


def _check_paths(root: Path, rev: str, raw: str) -> None:
    """``git diff --raw -z`` records: refuse symlinks, submodules and paths leaving ``root``."""
    fields = [f for f in raw.split("\0") if f]
    paths: list[str] = []
    for i, item in enumerate(fields):
        if item.startswith(":"):
            modes = item[1:].split()[:2]
            if any(m in ("120000", "160000") for m in modes):
                raise UsageError(f"--commit {rev}: '{visible(fields[i + 1])}' is a symlink or "
                                 "submodule; a taught fix may only change regular files in "
                                 "the repository")
        else:
            paths.append(item)
    if not paths:
        raise UsageError(f"--commit {rev}: it touches nothing; teach a commit that changed the "
                         "files that fixed the error")
    for path in paths:
        pure = PurePosixPath(path)
        inside = (root / path).resolve().is_relative_to(root.resolve())
        if pure.is_absolute() or ".." in pure.parts or pure.parts[0] == ".git" or not inside:
            raise UsageError(f"--commit {rev}: '{visible(path)}' leaves the repository; a "
                             "taught fix may only change files inside it")
