"""Which repository files may choose a Python install, and which requirements files heal
installs (``pip install -r FILE``) without a person.

An event's ``tags.cwd`` says where the failing command ran, so it picks the nearest folder's
files; only files git tracks count there (:func:`tracked`): an ignored or untracked folder
(``.venv``'s site-packages, a build tree) is not the project's, whatever it holds.

A requirements file is pip's own language, and some of its lines fetch from somewhere else
than the index pip is configured with (the operator's ``pip.conf`` / ``PIP_INDEX_URL``): index
and find-links options (``--index-url``, ``--extra-index-url``, ``--find-links``,
``--trusted-host``...), editable and VCS requirements (``-e``, ``git+https://...``), URL and
path requirements (``name @ https://...``, ``./pkg``, ``pkg-1.0.whl``), environment variables
(``${VAR}``, which pip expands) and includes (``-r``/``-c``) of files that are not themselves
checked this way. :func:`review` finds the first such line, so the fix escalates naming the
file and line instead of running it unattended. Only a few options that change no source are
kept (``--pre``, ``--prefer-binary``, ``--only-binary``, ``--no-binary``,
``--require-hashes``, and ``--hash`` after a requirement).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.gitops import run_git
from pipeline.trust.packages import normalize, read_text

_COMMENT = re.compile(r"(?:^|\s)#.*")
_OPTIONS = re.compile(r"\s--")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: what may follow a name (version specifiers only: no ``@``, ``/``, ``:``, ``$``)
_SPEC_CHARS = frozenset("<>=!~,.*+ \t_-0123456789abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_EXTRA_CHARS = frozenset("._-, \t0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar")
#: options that change no source (line-start; ``--hash`` after a requirement)
_HARMLESS = frozenset({"--pre", "--prefer-binary", "--require-hashes", "--only-binary",
                       "--no-binary"})
_INCLUDES = {"-r": True, "--requirement": True, "-c": False, "--constraint": False}
MAX_LINE = 2000
MAX_DEPTH = 5


def tracked(root: Path, paths: Iterable[Path]) -> set[str]:
    """The ``paths`` (as paths relative to ``root``, POSIX) that git tracks in the repository
    at ``root``; none when git cannot tell (not a repository, a repository another user owns):
    not knowing is never read as tracked."""
    rels = sorted({r for p in paths if (r := _rel(p, root))})
    if not rels:
        return set()
    try:
        done = run_git(["ls-files", "-z", "--", *(f":(literal){r}" for r in rels)], root,
                       capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode != 0:
        return set()
    listed = {os.fsdecode(p) for p in done.stdout.split(b"\0") if p}
    return listed & set(rels)


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (lexically, normalized), '' when outside it."""
    rel = os.path.normpath(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return ""
    return Path(rel).as_posix()


@dataclass
class Review:
    """What one requirements file (and what it includes) declares, and the first line that
    means a person approves (``''`` when none)."""

    names: set[str] = field(default_factory=set)
    problem: str = ""


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, logical line): pip's ``\\`` continuations joined, comments cut."""
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        if raw.endswith("\\"):
            parts.append(raw[:-1])
            continue
        parts.append(raw)
        yield start, _COMMENT.sub("", " ".join(parts)).strip()
        parts = []
    if parts:
        yield start, _COMMENT.sub("", " ".join(parts)).strip()


def _requirement(line: str) -> tuple[str, str]:
    """(the normalized name, '') or ('', why the line fetches from elsewhere)."""
    spec, *options = _OPTIONS.split(line, maxsplit=1)
    for option in f"--{options[0]}".split() if options else []:
        if not option.startswith(("--hash", "sha256:", "sha384:", "sha512:")):
            return "", f"the option {option[:60]!r} after a requirement"
    requirement, _, _marker = spec.partition(";")
    requirement = requirement.strip()
    match = _NAME.match(requirement)
    if match is None:
        return "", "a path or URL requirement, which pip fetches from there"
    name, rest = match[0], requirement[match.end():].lstrip()
    if name.lower().endswith(_ARCHIVES):
        return "", "an archive file requirement, which pip installs from that file"
    if rest.startswith("["):
        extras, bracket, rest = rest[1:].partition("]")
        if not bracket or not set(extras) <= _EXTRA_CHARS:
            return "", "a requirement heal cannot read"
    if "://" in line or not set(rest) <= _SPEC_CHARS:
        return "", "a URL, VCS or path requirement, which pip fetches from there"
    return normalize(name), ""


def review(path: Path, root: Path, is_tracked: Callable[[Path], bool],
           depth: int = 0, seen: frozenset[str] = frozenset()) -> Review:
    """The names ``path`` declares (with what it includes by ``-r``) and the first line that
    may fetch from elsewhere than the configured index (``'FILE line N (...) is ...'``)."""
    out = Review()
    where = _rel(path, root) or path.as_posix()
    for number, line in _lines(read_text(path)):
        if not line:
            continue
        said = f"{where} line {number} ({line[:120]!r})"
        if len(line) > MAX_LINE or "$" in line:
            out.problem = out.problem or (
                f"{said} is longer than {MAX_LINE} characters" if len(line) > MAX_LINE else
                f"{said} names an environment variable, which pip expands")
            continue
        if not line.startswith("-"):
            name, why = _requirement(line)
            out.problem = out.problem or (f"{said} is {why}" if why else "")
            out.names |= {name} if name else set()
            continue
        option, _, value = line.replace("=", " ", 1).partition(" ")
        if option.startswith("-r") and option != "-r" or option.startswith("-c") and \
                option != "-c":  # -rfile.txt
            option, value = option[:2], option[2:] + value
        value = value.strip()
        if option in _HARMLESS:
            continue
        if option not in _INCLUDES:
            out.problem = out.problem or (
                f"{said} is the pip option {option[:60]!r}, which can make pip fetch from "
                "elsewhere than the configured index")
            continue
        target = Path(os.path.normpath(path.parent / value))
        key = _rel(target, root)
        if (not key or key in seen or depth >= MAX_DEPTH or target.is_symlink()
                or not target.is_file() or not is_tracked(target)):
            out.problem = out.problem or (
                f"{said} includes a file heal does not check (outside the repository, not "
                "tracked by git, a symlink, or nested too deep)")
            continue
        inner = review(target, root, is_tracked, depth + 1, seen | {where})
        out.problem = out.problem or inner.problem
        if _INCLUDES[option]:
            out.names |= inner.names
    return out
