"""Built-in playbook actions (``{"name", "action": NAME, "args": {...}}`` steps).

Each action takes the repository root and its args, acts or checks, and returns
(ok, detail). Paths are checked to stay inside the repository before anything is touched.
Actions never run a shell.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import FixError

ActionResult = tuple[bool, str]


def _inside(root: Path, rel: Any) -> Path:
    if not isinstance(rel, str) or not rel:
        raise FixError(f"action argument 'path' must be a non-empty string, got {rel!r}")
    if ".." in Path(rel).parts:
        raise FixError(f"path {rel!r} contains '..'")
    target = Path(os.path.realpath(root / rel))
    real_root = Path(os.path.realpath(root))
    if real_root not in target.parents and target != real_root:
        raise FixError(f"path {rel!r} resolves outside the repository")
    return root / rel


def remove_stale_lock(root: Path, args: dict[str, Any]) -> ActionResult:
    """Remove a ``*.lock`` file older than ``min_age_s`` (a live git holds it for < 1 s)."""
    path = _inside(root, args.get("path"))
    if path.suffix != ".lock":
        raise FixError(f"remove_stale_lock only removes *.lock files, not {path.name}")
    if not path.exists():
        return True, f"{args['path']} already gone"
    age = time.time() - path.stat().st_mtime
    min_age = float(args.get("min_age_s", 2))
    if age < min_age:
        return False, f"{args['path']} is {age:.1f}s old (< {min_age:g}s): may be live"
    path.unlink()
    return True, f"removed {args['path']} ({age:.0f}s old)"


def chmod_exec(root: Path, args: dict[str, Any]) -> ActionResult:
    path = _inside(root, args.get("path"))
    if not path.is_file():
        return False, f"{args['path']} is not a file"
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return True, f"chmod +x {args['path']}"


def file_absent(root: Path, args: dict[str, Any]) -> ActionResult:
    path = _inside(root, args.get("path"))
    return (not path.exists()), f"{args['path']} {'still exists' if path.exists() else 'absent'}"


def file_exists(root: Path, args: dict[str, Any]) -> ActionResult:
    path = _inside(root, args.get("path"))
    return path.exists(), f"{args['path']} {'exists' if path.exists() else 'missing'}"


def sleep(root: Path, args: dict[str, Any]) -> ActionResult:
    seconds = float(args.get("seconds", 1))
    if not 0 <= seconds <= 60:
        raise FixError(f"sleep seconds must be within 0..60, got {seconds}")
    time.sleep(seconds)
    return True, f"waited {seconds:g}s"


ACTIONS: dict[str, Callable[[Path, dict[str, Any]], ActionResult]] = {
    "remove_stale_lock": remove_stale_lock,
    "remove_lock": remove_stale_lock,
    "chmod_exec": chmod_exec,
    "file_absent": file_absent,
    "file_exists": file_exists,
    "sleep": sleep,
    "wait": sleep,
}


def run_action(root: Path, name: str, args: dict[str, Any]) -> ActionResult:
    """Raises FixError for an unknown action or bad arguments."""
    fn = ACTIONS.get(name)
    if fn is None:
        raise FixError(f"playbook action {name!r} is not built yet (known: "
                       f"{', '.join(sorted(ACTIONS))})")
    return fn(root, args if isinstance(args, dict) else {})
