"""Small helpers for the tests that build git repositories of their own."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a throwaway identity; its stdout, stripped.

    Raises: subprocess.CalledProcessError when git fails."""
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t",
                           *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def committed_repo(root: Path, files: dict[str, str]) -> Path:
    """A new git repository at ``root`` holding ``files`` (name -> text) in one commit."""
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root
