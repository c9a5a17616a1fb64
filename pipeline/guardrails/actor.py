"""Who made a change by hand: the person behind an override, for the audit log.

``heal learn`` records who taught a fix (``who``: ``HEAL_USER``, else the login name). The
other overrides a person makes (``heal breaker reset|open``, ``heal unquarantine``, ``heal
ignore``, a ``heal apply`` by hand) run inside :func:`acting`, and every audit record appended
meanwhile in this thread carries the same ``who``, the command (``via``) and the override
flags given (``force``), so a post-mortem can answer "who re-armed the fix that took prod
down?" (QA s19b, defect 3). Records a worker makes on its own carry none.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_ACTOR: ContextVar[dict[str, Any] | None] = ContextVar("heal_actor", default=None)


def who_am_i() -> str:
    """The person running this command: ``HEAL_USER`` when set (a shared service account
    names the person behind it), else the login name; ``unknown`` when neither is known."""
    try:
        return os.environ.get("HEAL_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextlib.contextmanager
def acting(command: str, **flags: Any) -> Iterator[dict[str, Any]]:
    """Within the block, audit records say a person did it: ``who``, ``via`` (the command)
    and each flag given a true value (e.g. ``force=True``)."""
    actor = {"who": who_am_i(), "via": command, **{k: v for k, v in flags.items() if v}}
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


def current() -> dict[str, Any] | None:
    """The person acting in this thread, or None (a worker deciding on its own)."""
    return _ACTOR.get()


def stamped(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the acting person's fields added (those it does not hold already)."""
    actor = _ACTOR.get()
    if not actor:
        return data
    return {**{k: v for k, v in actor.items() if k not in data}, **data}


def by_whom(reason: str) -> str:
    """``reason`` followed by who acts (``heal unquarantine, by alice``), for the reason
    texts kept outside the audit log (lifecycle transitions, breaker state) that ``heal
    explain`` and ``heal breaker status`` show."""
    actor = _ACTOR.get()
    return f"{reason}, by {actor['who']}" if actor else reason
