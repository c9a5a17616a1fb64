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


def carried(value: str) -> str:
    """``value`` as an event can carry it (JSON text is UTF-8): a byte that is not UTF-8
    (an argument, path or variable the OS gave as surrogate escapes, PEP 383) shown as
    ``\\xNN``; any other text unchanged."""
    if is_exact(value):
        return value
    return value.encode("utf-8", "surrogateescape" if _escapes_only(value) else "surrogatepass"
                        ).decode("utf-8", "backslashreplace")


def is_exact(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no surrogate): carried as it is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escapes_only(value: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in value)


def _env_workflow(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workflow's fields exactly as the environment gives them (not for an event)."""
    env = os.environ if environ is None else environ
    return {name: next((env[k] for k in keys if env.get(k)), "")
            for name, keys in _WORKFLOW_ENV.items()}


def workflow_from_env(
    environ: Mapping[str, str] | None = None, step: str = ""
) -> Workflow:
    found = {name: carried(value) for name, value in _env_workflow(environ).items()}
    if step:
        found["step"] = step
    return Workflow(**found)


def inexact_workflow(environ: Mapping[str, str] | None = None, **given: str) -> list[str]:
    """The workflow fields (``workflow.id`` ...) an event cannot carry exactly (a byte that
    is not UTF-8, shown ``\\xNN`` by :func:`carried`): from the environment, or ``given``
    (a non-empty value wins, as ``--workflow``/``--step`` win over the environment)."""
    found = _env_workflow(environ)
    found.update({name: value for name, value in given.items() if value})
    return [f"workflow.{name}" for name in _WORKFLOW_ENV if not is_exact(found[name])]


def _git(cwd: Path, *args: str) -> str:
    try:
        # a checkout path that is not UTF-8 (surrogate escapes, as os.getcwd() gives it)
        done = run_git(args, cwd, capture_output=True, text=True, errors="surrogateescape",
                       timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""  # no git, or it hung: the event is still useful without repo info
    return done.stdout.strip() if done.returncode == 0 else ""


def repo_info(cwd: Path | str | None = None) -> Repo:
    """Repository root, commit and branch of ``cwd`` (empty fields when it is not a git repo),
    as an event carries them: a byte of the path or branch that is not UTF-8 shown as
    ``\\xNN`` (:func:`carried`; the OS's own path is :func:`exact_repo_info`'s)."""
    return carried_repo(exact_repo_info(cwd))


def carried_repo(repo: Repo) -> Repo:
    """``repo`` with its path and branch as an event can carry them (:func:`carried`)."""
    if is_exact(repo.path) and is_exact(repo.branch):
        return repo
    return Repo(path=carried(repo.path), commit=repo.commit, branch=carried(repo.branch))


def exact_repo_info(cwd: Path | str | None = None) -> Repo:
    """:func:`repo_info` with the path and branch exactly as the OS and git give them (a byte
    that is not UTF-8 as a surrogate escape, PEP 383): not for an event."""
    path = Path(cwd or os.getcwd())
    root = _git(path, "rev-parse", "--show-toplevel")
    if not root:
        return Repo(path=str(path))
    commit = _git(path, "rev-parse", "HEAD")
    branch = _git(path, "rev-parse", "--abbrev-ref", "HEAD")
    return Repo(path=root, commit=commit, branch="" if branch == "HEAD" else branch)
