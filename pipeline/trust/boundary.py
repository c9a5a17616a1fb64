"""The trust boundary: what one ErrorEvent may make heal do.

Event fields are data. An event may name a repository and a command, but heal acts on the
repository only when the operator registered it (``[trust] repos`` in operator configuration)
or the event is attested by heal itself (``heal run`` on this machine); it re-runs the
command only when it is attested or allowed by ``[trust] commands``; and ``tags.mode`` may
lower the mode, never raise it above the policy (an attested ``heal run --mode`` is the
operator's own choice, capped by ``trust.max_mode``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import GitError
from pipeline.events import ErrorEvent
from pipeline.gitops import find_root
from pipeline.model import Mode
from pipeline.trust.attest import is_attested
from pipeline.trust.operator import OperatorConfig, lower_mode, operator_config

log = logging.getLogger("heal.trust")


@dataclass(frozen=True)
class Trust:
    """What the operator's side vouches for in one event."""

    root: Path | None
    attested: bool
    repo_trusted: bool
    #: the command heal may re-run (empty: none, or not trusted)
    command: tuple[str, ...]
    #: why the repository or the command is not trusted ('' when both are)
    reason: str
    operator: OperatorConfig

    def mode(self, policy_mode: Mode, tag: object, ceiling: Mode | None = None) -> Mode:
        """The mode for this event: ``tags.mode`` lowers the policy's; only an attested event
        (the operator's ``heal run --mode``) may raise it, up to ``ceiling`` (default the
        operator's ``trust.max_mode``)."""
        ceiling = ceiling or self.operator.max_mode
        try:
            wanted = Mode(tag) if isinstance(tag, str) and tag else None
        except ValueError:
            wanted = None
        if wanted is None:
            return policy_mode
        if self.attested:
            return lower_mode(wanted, ceiling)
        return lower_mode(wanted, policy_mode)


def event_root(error: ErrorEvent) -> Path | None:
    """The git work tree the error names (``tags.cwd`` or ``repo.path``), or None."""
    where = error.tags.get("cwd") if isinstance(error.tags, dict) else None
    where = where if isinstance(where, str) and where else error.repo.path
    if not where or "\0" in where:
        return None
    try:
        return find_root(where)
    except GitError:
        return None


def _named_place(error: ErrorEvent) -> tuple[str, str]:
    """(the field that names where the error happened, its value): ``tags.cwd`` before
    ``repo.path``, as :func:`event_root` reads them; ("", "") when neither is set."""
    cwd = error.tags.get("cwd") if isinstance(error.tags, dict) else None
    if isinstance(cwd, str) and cwd:
        return "tags.cwd", cwd
    return ("repo.path", error.repo.path) if error.repo.path else ("", "")


def no_root_reason(error: ErrorEvent) -> str:
    """Why :func:`event_root` found no git work tree for ``error``: which field named what,
    what is wrong with it, and what to change."""
    field, value = _named_place(error)
    if not field:
        return ("the error names no git repository: neither repo.path nor tags.cwd is set "
                "(publish it with repo.path = the folder of the checkout; heal run sets it)")
    if "\0" in value:
        return f"{field} {value!r} holds a NUL byte, which no folder name has"
    shown = repr(value) if not value.isprintable() else value
    where = Path(value)
    try:
        exists, is_dir = where.exists(), where.is_dir()
    except OSError as exc:
        return (f"{field} {shown} cannot be read on this machine ({exc.strerror or exc}); "
                f"set {field} to a git checkout the worker can read")
    if not exists:
        return (f"{field} {shown} does not exist on this machine (where the worker runs); set "
                f"{field} to the folder of a git checkout as the worker sees it")
    if not is_dir:
        return f"{field} {shown} is not a folder; set {field} to the folder of a git checkout"
    try:
        find_root(value)
    except GitError as exc:
        detail = str(exc)
        if detail.endswith("is not inside a git repository"):
            return (f"{field} {shown} is not inside a git repository (no .git in it or in a "
                    f"folder above it); set {field} to a git checkout (with heal run: run it "
                    "inside one), or run `git init` there")
        return f"{field} {shown}: {detail}"
    return f"{field} {shown} names a git repository heal could not open"


def assess(error: ErrorEvent, settings: Settings) -> Trust:
    """Decide what the event may make heal do (never raises for the event's sake)."""
    operator = operator_config(settings)
    root = event_root(error)
    attested = is_attested(error, settings)
    reasons: list[str] = []
    repo_trusted = root is not None and (attested or operator.repo_allowed(root))
    if root is not None and not repo_trusted:
        reasons.append(f"repository {root} is not registered with heal (not a heal run on "
                       "this machine, not in [trust] repos of the operator configuration)")
    command: tuple[str, ...] = ()
    if error.command and repo_trusted:
        if attested or operator.command_allowed(error.command):
            command = tuple(error.command)
        else:
            reasons.append(f"the event's command {list(error.command)[:8]!r} is not trusted "
                           "(not run by heal run here, not in [trust] commands)")
    trust = Trust(root, attested, repo_trusted, command, "; ".join(reasons), operator)
    if reasons:
        log.warning("trust: event %s: %s", error.id[:80], trust.reason)
    return trust
