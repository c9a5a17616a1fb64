"""Path safety: every path a fix touches stays inside the repository and off protected paths."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from pipeline.console import visible
from pipeline.policy import Policy

_DIFF_PATH = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(?P<path>[^\t\n]+)", re.MULTILINE)
_RENAME = re.compile(r"^(?:rename|copy) (?:from|to) (?P<path>.+)$", re.MULTILINE)


def diff_paths(diff: str) -> list[str]:
    """Every path a unified diff names (``/dev/null`` excluded), in order, no duplicates."""
    found = [m.group("path").strip() for m in _DIFF_PATH.finditer(diff)]
    found += [m.group("path").strip() for m in _RENAME.finditer(diff)]
    out: list[str] = []
    for path in found:
        if path != "/dev/null" and path not in out:
            out.append(path)
    return out


def path_problem(root: Path, rel: str, policy: Policy, cwd: Path | None = None) -> str | None:
    """Why ``rel`` may not be touched (None when it may).

    Refused: ``..`` components, absolute paths outside the repository, symlinks (at any
    level, found with ``lstat``) that lead outside it, and paths matching a protected glob.
    A relative path is checked from the repository root and from ``cwd``, the directory
    the fix actually runs in (a symlink there once let ``chmod +x`` escape the tree).
    """
    if not rel:
        return "empty path"
    pure = PurePosixPath(rel)
    if ".." in pure.parts:
        return f"path {rel!r} contains '..' (paths must stay inside the repository)"
    real_root = Path(os.path.realpath(root))
    bases = [root] if cwd is None or cwd == root else [root, cwd]
    for base in bases:
        problem = _escape(real_root, base, rel)
        if problem:
            return problem
    target = Path(rel) if pure.is_absolute() else root / rel
    resolved = Path(os.path.realpath(target))
    inside = resolved.relative_to(real_root).as_posix() if resolved != real_root else "."
    for candidate in {inside, pure.as_posix().removeprefix("./")}:
        glob = policy.is_protected(candidate)
        if glob:
            return f"path {rel!r} is protected by policy glob {glob!r}"
    return None


def _outside(real_root: Path, resolved: Path) -> bool:
    return resolved != real_root and real_root not in resolved.parents


def within(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` is ``root`` or inside it, both with their symlinks resolved."""
    return not _outside(Path(os.path.realpath(root)), Path(os.path.realpath(path)))


def _escape(real_root: Path, base: Path, rel: str) -> str | None:
    """Walk ``rel`` from ``base`` one component at a time with ``lstat``: the first symlink
    that leads outside ``real_root`` is named, and so is a final target outside it."""
    pure = PurePosixPath(rel)
    target = Path(rel) if pure.is_absolute() else base / rel
    where = "" if base == real_root or pure.is_absolute() else f" (from {visible(str(base))})"
    if _outside(real_root, Path(os.path.realpath(base))) and not pure.is_absolute():
        return f"the working directory {visible(str(base))} is outside the repository"
    walked = Path(target.anchor) if pure.is_absolute() else base
    for part in (target.parts[1:] if pure.is_absolute() else pure.parts):
        walked = walked / part
        try:
            is_link = stat.S_ISLNK(os.lstat(walked).st_mode)
        except OSError:
            break  # does not exist (yet): what follows cannot be a symlink
        if is_link:
            dest = Path(os.path.realpath(walked))
            if _outside(real_root, dest):
                return (f"path {rel!r}{where}: {visible(walked.name)} is a symlink to "
                        f"{visible(str(dest))}, outside the repository; heal does not "
                        "follow it")
    resolved = Path(os.path.realpath(target))
    if _outside(real_root, resolved):
        why = "resolves" if not pure.is_absolute() else "is"
        return (f"path {rel!r}{where} {why} outside the repository "
                f"({visible(str(resolved))})")
    return None


def escaping_links(tree: Path, links: list[str]) -> list[tuple[str, Path]]:
    """The symlinks among ``links`` (paths relative to ``tree``, e.g. the ones git tracks)
    whose target resolves outside ``tree``, dangling ones included: (path, target)."""
    real_tree = Path(os.path.realpath(tree))
    out: list[tuple[str, Path]] = []
    for rel in links:
        dest = Path(os.path.realpath(tree / rel))
        if _outside(real_tree, dest):
            out.append((rel, dest))
    return out


def param_paths(root: Path, values: list[str], cwd: Path | None = None) -> list[str]:
    """The values among command arguments / parameters that denote paths in the repository
    (or in ``cwd``; a dangling symlink counts), the value of an ``--option=value`` included."""
    out: list[str] = []
    for value in values:
        if isinstance(value, str) and value.startswith("-"):
            # an option: ``--output=/etc/x`` names the path after its ``=``; a bare flag none
            value = value.partition("=")[2]
        if not isinstance(value, str) or not value:
            continue
        looks_like_path = ("/" in value or ".." in value or os.path.lexists(root / value)
                           or (cwd is not None and os.path.lexists(cwd / value)))
        if looks_like_path and value not in out:
            out.append(value)
    return out


def fix_escape(root: Path, cwd: Path, values: list[str]) -> str | None:
    """The first path among ``values`` (arguments and parameters of a fix) that leaves the
    repository from ``cwd`` (``..``, a symlink out, an absolute path elsewhere), with why;
    None when none does. The apply stage's last check: protected globs and playbook
    exceptions were judged by the validate stage's pre-flight."""
    real_root = Path(os.path.realpath(root))
    for path in param_paths(root, values, cwd):
        if ".." in PurePosixPath(path).parts:
            return f"path {path!r} contains '..' (paths must stay inside the repository)"
        for base in (root, cwd):
            problem = _escape(real_root, base, path)
            if problem:
                return problem
    return None
