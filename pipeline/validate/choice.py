"""The package manager a repository installs with, as the validate stage chose it
(pipeline.validate.manager for Node and Bun, pipeline.validate.pymanager for Python)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Choice:
    """The manager the repository names, the file that named it (relative to the root, ''
    for the ecosystem's default), the lockfile the install restores ('' without one), the
    install's argv (heal's own words: the repository only chooses among them), what it
    restores (for the fix's explanation) and why the default was taken (no ``source``)."""

    manager: str
    source: str
    lockfile: str
    command: tuple[str, ...]
    restores: str
    default_why: str = ""

    @property
    def argv(self) -> list[str]:
        return list(self.command)

    @property
    def program(self) -> str:
        return self.command[0]

    def why(self) -> str:
        return f"chosen by {self.source}" if self.source else self.default_why

    def said(self) -> str:
        """``pnpm install --frozen-lockfile (chosen by pnpm-lock.yaml)``."""
        return f"{' '.join(self.argv)} ({self.why()})"


def rel(path: Path, root: Path) -> str:
    """``path`` relative to the repository root, as heal names files to a person."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
