"""Where heal keeps its local state when ``HEAL_HOME`` is unset: one state per repository.

Inside a git work tree the state is ``<root>/.heal`` for the root that
``git rev-parse --show-toplevel`` names, so every subdirectory shares one memory; the entry
``.heal/`` is added to the repository's own ``info/exclude`` (never to the user's
``.gitignore``), so ``git status`` stays clean and ``git add -A`` never picks up database
files. Outside a repository the state is ``$XDG_STATE_HOME/heal`` (default
``~/.local/state/heal``).

| source       | when                            | home                          |
| ``HEAL_HOME``  | the variable is set             | its value                     |
| ``repository`` | the working directory is in git | ``<root>/.heal``              |
| ``xdg``        | anywhere else                   | ``$XDG_STATE_HOME/heal``      |
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.gitops import run_git

STATE_DIR = ".heal"
EXCLUDE_LINE = "/.heal/"
#: as root, the embedded PostgreSQL's data lives beside the state (pipeline/homedir.py)
EXCLUDE_PG_LINE = "/.heal.pg/"
GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StateHome:
    path: Path
    #: "HEAL_HOME" | "repository" | "xdg"
    source: str
    #: the repository root when ``source`` is "repository"
    root: Path | None = None

    def describe(self) -> str:
        """One line for ``heal status``."""
        if self.source == "repository":
            return f"{self.path} (repository {self.root}; excluded from git)"
        if self.source == "xdg":
            return f"{self.path} (outside any git repository: XDG state directory)"
        return f"{self.path} (from HEAL_HOME)"


def resolve(env: Mapping[str, str], cwd: str | None = None) -> StateHome:
    """The state home for this environment and working directory (no side effects)."""
    explicit = env.get("HEAL_HOME")
    if explicit:
        return StateHome(Path(explicit).expanduser().resolve(), "HEAL_HOME")
    root = repository_root(os.path.realpath(cwd or os.getcwd()))
    if root is not None:
        return StateHome(root / STATE_DIR, "repository", root)
    xdg = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return StateHome(Path(xdg).expanduser().resolve() / "heal", "xdg")


def repository_root(cwd: str) -> Path | None:
    """The top of the git work tree containing ``cwd``, or None (no git, not a repository)."""
    out = _git(cwd, "rev-parse", "--show-toplevel")
    return Path(out).resolve() if out else None


def exclude_from_git(home: StateHome) -> bool:
    """Add ``/.heal/`` (and ``/.heal.pg/``, where the embedded PostgreSQL keeps its data when
    heal runs as root) to the repository's ``info/exclude`` once; True when one was added.

    Failing to write (read-only checkout, odd layout) is not an error worth stopping for:
    the state still works, it merely shows in ``git status``.
    """
    if home.source != "repository" or home.root is None:
        return False
    rel = _git(str(home.root), "rev-parse", "--git-path", "info/exclude")
    if not rel:
        return False
    path = Path(rel) if os.path.isabs(rel) else home.root / rel
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        entries = {line.strip() for line in existing.splitlines()}
        missing = [line for line, spellings in (
            (EXCLUDE_LINE, {EXCLUDE_LINE, ".heal/", ".heal", "/.heal"}),
            (EXCLUDE_PG_LINE, {EXCLUDE_PG_LINE, ".heal.pg/", ".heal.pg", "/.heal.pg"}),
        ) if not entries & spellings]
        if not missing:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        sep = "" if not existing or existing.endswith("\n") else "\n"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{sep}# heal's local state (added by heal)\n" + "\n".join(missing) + "\n")
    except OSError:
        return False
    return True


def _git(cwd: str, *args: str) -> str:
    try:
        # paths: a byte that is not UTF-8 comes back as the OS's own path (surrogate escape)
        done = run_git(args, cwd, capture_output=True, encoding="utf-8",
                       errors="surrogateescape", timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
