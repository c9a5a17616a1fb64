"""Path safety: every path a fix touches stays inside the repository and off protected paths."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

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


def path_problem(root: Path, rel: str, policy: Policy) -> str | None:
    """Why ``rel`` may not be touched (None when it may).

    Refused: ``..`` components, absolute paths outside the repository, symlinks (at any
    level) that resolve outside it, and paths matching a protected glob.
    """
    if not rel:
        return "empty path"
    pure = PurePosixPath(rel)
    if ".." in pure.parts:
        return f"path {rel!r} contains '..' (paths must stay inside the repository)"
    real_root = Path(os.path.realpath(root))
    target = Path(rel) if pure.is_absolute() else root / rel
    resolved = Path(os.path.realpath(target))
    if resolved != real_root and real_root not in resolved.parents:
        why = "resolves" if not pure.is_absolute() else "is"
        return f"path {rel!r} {why} outside the repository ({resolved})"
    inside = resolved.relative_to(real_root).as_posix() if resolved != real_root else "."
    for candidate in {inside, pure.as_posix().removeprefix("./")}:
        glob = policy.is_protected(candidate)
        if glob:
            return f"path {rel!r} is protected by policy glob {glob!r}"
    return None


def param_paths(root: Path, values: list[str]) -> list[str]:
    """The values among command arguments / parameters that denote paths in the repository."""
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value or value.startswith("-"):
            continue
        looks_like_path = "/" in value or ".." in value or (root / value).exists()
        if looks_like_path and value not in out:
            out.append(value)
    return out
