"""The paths a formatter or linter fix acts on: those the failing step checked.

A seed fix such as ``ruff check --fix .`` declares ``scope_of: [[ruff, check]]``: when the
trusted failing command is that tool (``ruff check calc tests``, also through ``python -m``,
``uv run``/``poetry run``/``pdm run``/``pipenv run``, or as the one plain command of a
``bash -c`` string: the GitHub Action's ``run:``), the fix's trailing ``.`` is replaced by
``--`` and the command's path operands (``ruff check --fix -- calc tests``). Verification
re-runs only the failing command, so a fix that reached further would commit edits nothing
checked (removing an import from a module outside ``calc`` is a behaviour change).

Operands are taken only when every one is a plain path inside the repository: relative (or
absolute under the working directory, made relative), no ``..``, not leading out through a
symlink, existing. Options of the failing command are never carried over; a word right after
a bare option that names no file is read as that option's value (``--select F401``); one that
names a file after an option that may take a value (``--exclude gen``) leaves the scope
untold, and so does ``-`` (standard input). When the scope cannot be told (no trusted
command, another command such as ``make lint``, an operand that is not a plain path inside
the repository), the fix keeps its ``.`` (the working directory) but is *held*: verified in a
worktree and suggested, applied only when a person names it (``heal apply``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

#: launchers that run the tool named after them: (words before the tool)
_LAUNCHERS = (("uv", "run"), ("poetry", "run"), ("pdm", "run"), ("pipenv", "run"))
_SHOWN = 200
_SHELLS = ("sh", "bash", "dash", "zsh")
#: options of ruff, black and isort that take no value (a word after one is an operand)
_FLAGS = frozenset((
    "--check", "--diff", "--fix", "--no-fix", "--fix-only", "--unsafe-fixes",
    "--no-unsafe-fixes", "--show-fixes", "--no-show-fixes", "--statistics", "--exit-zero",
    "--exit-non-zero-on-fix", "--no-cache", "--preview", "--no-preview", "--isolated",
    "--force-exclude", "--no-force-exclude", "--respect-gitignore", "--no-respect-gitignore",
    "--quiet", "--silent", "--verbose", "--fast", "--safe", "--color", "--no-color",
    "--check-only", "--df", "--skip-string-normalization", "--skip-magic-trailing-comma",
    "-q", "-s", "-v", "-e", "-n", "-c", "-S", "-C"))
#: characters that make a shell string more than one plain command
_SHELL_SYNTAX = frozenset("\n;&|<>$`(){}[]*?~!#\\")


def scoped(rendered: dict[str, Any], command: Sequence[str], root: Path,
           cwd: Path) -> tuple[dict[str, Any], str]:
    """(the rendered fix to run, why it is held for a person or '').

    ``rendered`` is returned as is when it declares no ``scope_of``; otherwise with its argv's
    trailing ``.`` replaced by ``--`` and the failing command's paths, or kept with a reason
    to hold it when those paths cannot be told."""
    tools = rendered.get("scope_of")
    argv = [str(a) for a in rendered.get("argv") or []]
    if not tools or not argv or argv[-1] != ".":
        return rendered, ""
    whole = " ".join(argv)
    if not command:
        return rendered, _held(whole, "the failing command is not trusted (not from heal run "
                               "here, not in [trust] commands), so heal cannot tell which "
                               "paths it checked")
    found = _operands(list(command), [[str(w) for w in t] for t in tools], cwd)
    shown = " ".join(command)[:_SHOWN]
    if found is None:
        names = " or ".join(f"`{' '.join(t)} PATH...`" for t in tools)
        return rendered, _held(whole, f"the failing command `{shown}` is not {names}, so heal "
                               "cannot tell which paths it checked")
    operands, ambiguous = found
    if ambiguous:
        return rendered, _held(whole, f"the failing command `{shown}` names {ambiguous}")
    paths: list[str] = []
    for operand in operands:
        path, problem = _plain(operand, root, cwd)
        if problem:
            return rendered, _held(whole, f"the failing command `{shown}` names {problem}")
        paths.append(path)
    return {**rendered, "argv": [*argv[:-1], "--", *(paths or ["."])]}, ""


def _held(whole: str, why: str) -> str:
    return (f"{why}; the fix `{whole}` acts on the whole working directory, beyond what "
            "re-running the failing command verifies, so it is not applied by itself (run the "
            "tool itself with its paths under heal run to have it applied)")


def _operands(command: list[str], tools: list[list[str]],
              cwd: Path) -> tuple[list[str], str] | None:
    """The failing command's operands after the tool's words and what makes them ambiguous
    (see :func:`_positional`); None when it is another command."""
    words = _unwrapped(command)
    for tool in tools:
        n = len(tool)
        if len(words) >= n and Path(words[0]).name == tool[0] and words[1:n] == tool[1:]:
            return _positional(words[n:], cwd)
    return None


def _unwrapped(command: list[str]) -> list[str]:
    """``command`` without a launcher (``python -m``, ``uv run`` ...) in front of the tool,
    and a ``bash -c STRING`` (the GitHub Action's ``run:``) read as its words when the string
    is one plain command (no shell syntax: no expansion, glob, redirection or second
    command, whose effect on the paths heal could not tell)."""
    first = Path(command[0]).name if command else ""
    if first in _SHELLS and len(command) == 3 and command[1] == "-c":
        words = _plain_words(command[2])
        return _unwrapped(words) if words and Path(words[0]).name not in _SHELLS else []
    if first.startswith("python") and command[1:2] == ["-m"]:
        return command[2:]
    for launcher in _LAUNCHERS:
        if (first, *command[1:len(launcher)]) == launcher:
            return command[len(launcher):]
    return command


def _plain_words(text: str) -> list[str]:
    """The words of a shell string that is one plain command; [] for anything else."""
    if len(text) > 10_000 or any(c in _SHELL_SYNTAX for c in text):
        return []
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote
        return []


def _positional(args: list[str], cwd: Path) -> tuple[list[str], str]:
    """(the words that are operands, why they cannot be told or ''): after ``--`` all,
    before it those that are no option and no option's value. A word right after a bare
    option that is no known flag is that option's value when it names no file; when it names
    one (``--exclude gen``, ``--config ruff.toml``) it may be either, so nothing is taken."""
    out: list[str] = []
    option = ""
    for n, word in enumerate(args):
        if word == "--":
            return out + args[n + 1:], ""
        if word.startswith("-") and word != "-":
            option = "" if "=" in word or word in _FLAGS else word
            continue
        if not option:
            out.append(word)
        elif os.path.lexists(cwd / word):
            return [], (f"{word[:_SHOWN]!r} right after the option {option[:_SHOWN]!r}: a "
                        "path, or that option's value")
        option = ""
    return out, ""


def _plain(operand: str, root: Path, cwd: Path) -> tuple[str, str]:
    """(the operand relative to ``cwd``, '') or ('', what is wrong with it)."""
    what = f"{operand[:_SHOWN]!r}"
    if not operand or operand == "-" or "\0" in operand:
        return "", f"{what}, which is no file"
    pure = PurePosixPath(operand)
    if ".." in pure.parts:
        return "", f"{what}, which contains '..' (only paths inside the repository are used)"
    real_root = Path(os.path.realpath(root))
    real_cwd = Path(os.path.realpath(cwd))
    target = Path(os.path.realpath(cwd / operand))  # an absolute operand stays itself
    if pure.is_absolute():
        # in a verification worktree an absolute path would still name the user's tree
        if not _inside(target, real_cwd):
            return "", f"{what}, an absolute path outside the working directory {cwd}"
        operand = target.relative_to(real_cwd).as_posix() or "."
    if not _inside(target, real_root):
        return "", f"{what}, which leads outside the repository (through a symbolic link)"
    if not os.path.lexists(cwd / operand):
        return "", f"{what}, which does not exist in {cwd}"
    return operand, ""


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
