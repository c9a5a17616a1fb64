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
symlink, existing. Options of the failing command are never carried over, so the scope is
told only when every word after the tool is a plain path or an option of a short allow-list
(:data:`_OUTPUT_ONLY`, per tool) that changes neither the files checked, nor the rules, nor
the configuration read: output, verbosity and cache (``-q``, ``--no-cache``,
``--output-format=github``, ``--diff``, ``--check`` of a formatter). Any other option, as
``--opt=value``, ``--opt value``, a short option or combined short flags (``-qn``), leaves the
scope untold (``--exclude=gen``, ``--extend-exclude``, ``--select``, ``--ignore=F401``,
``--config``, ``--isolated``, ``--preview``, ``--stdin-filename``: what the failing step
checked differs from what the fix without them would change, and re-running the failing
command could not notice). So does ``-`` (standard input). With no operand, ruff's own
default, the working directory, is what was checked (under the same configuration, since no
option changed the file set), and the fix gets ``-- .``; black and isort check nothing without
an operand, so for them the scope is untold. When the scope cannot be told (no trusted
command, another command such as ``make lint``, an option outside the allow-list, an operand
that is not a plain path inside the repository), the fix keeps its ``.`` (the working
directory) but is *held*: verified in a worktree and suggested, applied only when a person
names it (``heal apply``).
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
#: per tool (its words): the options that change only output, verbosity or the cache, never
#: the files checked, the rules, the fixes or the configuration read; any other option leaves
#: the scope untold. A name ending in ``=`` takes a value (``--output-format=github`` or
#: ``--output-format github``). Not here on purpose: ``--preview`` (selects preview rules),
#: ``--isolated`` (ignores the configuration), ``--force-exclude``/``--respect-gitignore``
#: (the file set), ``--fixable``/``--unfixable``, ``--target-version``/``--line-length``
#: (what a rule reports), ``--exit-zero``, ``-o``/``--output-file`` and ``--stdin-filename``;
#: black's ``-c`` is ``--code`` and isort's ``-V`` is ``--version``.
_RUFF_OUTPUT = ("-q", "--quiet", "-s", "--silent", "-v", "--verbose", "-n", "--no-cache",
                "--diff", "--output-format=", "--color=")
_OUTPUT_ONLY: dict[tuple[str, ...], frozenset[str]] = {
    ("ruff", "check"): frozenset((*_RUFF_OUTPUT, "--show-fixes", "--statistics")),
    ("ruff", "format"): frozenset((*_RUFF_OUTPUT, "--check")),
    ("black",): frozenset(("--check", "--diff", "--color", "--no-color", "-q", "--quiet",
                           "-v", "--verbose")),
    ("isort",): frozenset(("--check-only", "--check", "-c", "--diff", "--df", "-q",
                           "--quiet", "-v", "--verbose")),
}
#: tools whose own default with no path operand is the working directory
_DOT_BY_DEFAULT = frozenset((("ruff", "check"), ("ruff", "format")))
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
    found = _operands(list(command), [[str(w) for w in t] for t in tools],
                      _options_of(argv[:-1]))
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
    return {**rendered, "argv": [*argv[:-1], "--", *paths]}, ""


def _held(whole: str, why: str) -> str:
    return (f"{why}; the fix `{whole}` acts on the whole working directory, beyond what "
            "re-running the failing command verifies, so it is not applied by itself (run the "
            "tool itself with its paths under heal run to have it applied)")


def _options_of(argv: list[str]) -> frozenset[str]:
    """The fix's own options, each as ``--opt`` and, with the word after it, ``--opt=value``
    (``--select I`` gives ``--select`` and ``--select=I``)."""
    out: set[str] = set()
    for i, word in enumerate(argv):
        if word.startswith("-") and word != "-":
            out.add(word)
            if "=" not in word and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                out.add(f"{word}={argv[i + 1]}")
    return frozenset(out)


def _operands(command: list[str], tools: list[list[str]], same: frozenset[str] = frozenset()
              ) -> tuple[list[str], str] | None:
    """The failing command's operands after the tool's words and what makes them ambiguous
    (see :func:`_positional`; ``same``: the fix's own options, see :func:`_options_of`); None
    when it is another command."""
    words = _unwrapped(command)
    if words and "/" in words[0] and not words[0].startswith("/"):
        return None  # ./ruff, tools/ruff: a program of the repository's, maybe a wrapper
    for tool in tools:
        n = len(tool)
        if len(words) >= n and Path(words[0]).name == tool[0] and words[1:n] == tool[1:]:
            return _positional(tuple(tool), words[n:], same)
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


def _positional(tool: tuple[str, ...], args: list[str],
                same: frozenset[str] = frozenset()) -> tuple[list[str], str]:
    """(the words that are operands, why the scope cannot be told or ''): after ``--`` all,
    before it those that are no option; every option must be one of the tool's
    :data:`_OUTPUT_ONLY` (with its value when it takes one), or one the fix itself passes with
    the same value (``same``: ``ruff check --select I .`` failing, the import fix's own
    ``--select I`` checks the very rules it checked), else nothing is taken. No operand is
    ``.`` for a tool whose default is the working directory."""
    allowed = _OUTPUT_ONLY.get(tool, frozenset())
    out: list[str] = []
    n = 0
    while n < len(args):
        word = args[n]
        n += 1
        if word == "--":
            out += args[n:]
            break
        if not word.startswith("-") or word == "-":
            out.append(word)
            continue
        taken = _option_words(word, args[n:], allowed, same)
        if taken is not None:
            n += taken
            continue
        return [], (f"the option {word[:_SHOWN]!r}, which may change the files or rules it "
                    "checked or the configuration it read (only plain paths, the options "
                    f"{', '.join(sorted(o.rstrip('=') for o in allowed)) or 'none'} and the "
                    "fix's own options with the same value are read)")
    if not out:
        if tool not in _DOT_BY_DEFAULT:
            return [], "no path"
        out = ["."]
    return out, ""


def _option_words(word: str, rest: list[str], allowed: frozenset[str],
                  same: frozenset[str]) -> int | None:
    """How many of the words ``rest`` after the option ``word`` are its value (0 or 1), or
    None when the option may change what the failing step checked: it must be one of the
    tool's output-only options (with its value when it takes one), or one the fix passes
    itself with the same value (``--select=I`` or ``--select I``; a bare flag only when no
    word after it could be its value)."""
    name, eq, value = word.partition("=")
    nxt = rest[0] if rest else ""
    if name + "=" in allowed:  # takes a value: in this word or the next
        value, taken = (value, 0) if eq else (nxt, 1)
        return taken if value and not value.startswith("-") else None
    if eq:
        return 0 if word in same else None
    if word in allowed:
        return 0
    if nxt and f"{word}={nxt}" in same:
        return 1
    if word in same and (not nxt or nxt.startswith("-")):
        return 0
    return None


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
