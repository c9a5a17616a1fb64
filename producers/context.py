"""What a producer knows about where an error happened: host, workflow, repository."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from pipeline.events import Repo, Workflow
from pipeline.gitops import run_git

#: environment variables an orchestrator may set; the first one present wins
_WORKFLOW_ENV = {
    "id": ("HEAL_WORKFLOW", "GITHUB_WORKFLOW", "CI_PROJECT_PATH"),
    "run_id": ("HEAL_RUN_ID", "GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILD_ID"),
    "phase": ("HEAL_PHASE", "GITHUB_JOB", "CI_JOB_STAGE"),
    "step": ("HEAL_STEP", "CI_JOB_NAME"),
}


def hostname() -> str:
    return socket.gethostname()


def new_id(kind: str) -> str:
    """A unique event id such as ``run-3f2a...`` (uuid4 hex)."""
    return f"{kind}-{uuid.uuid4().hex}"


def stable_id(kind: str, *parts: str) -> str:
    """A deterministic event id from ``parts`` (same input, same id: a second pass dedupes)."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()[:32]
    return f"{kind}-{digest}"


def workflow_from_env(
    environ: Mapping[str, str] | None = None, step: str = ""
) -> Workflow:
    env = os.environ if environ is None else environ
    found = {
        name: next((env[k] for k in keys if env.get(k)), "") for name, keys in _WORKFLOW_ENV.items()
    }
    if step:
        found["step"] = step
    return Workflow(**found)


def _git(cwd: Path, *args: str) -> str:
    try:
        done = run_git(args, cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""  # no git, or it hung: the event is still useful without repo info
    return done.stdout.strip() if done.returncode == 0 else ""


def repo_info(cwd: Path | str | None = None) -> Repo:
    """Repository root, commit and branch of ``cwd`` (empty fields when it is not a git repo)."""
    path = Path(cwd or os.getcwd())
    root = _git(path, "rev-parse", "--show-toplevel")
    if not root:
        return Repo(path=str(path))
    commit = _git(path, "rev-parse", "HEAD")
    branch = _git(path, "rev-parse", "--abbrev-ref", "HEAD")
    return Repo(path=root, commit=commit, branch="" if branch == "HEAD" else branch)
