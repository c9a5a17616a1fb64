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
