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
import unicodedata
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pipeline.console import clip, visible
from pipeline.errors import UsageError

_ACTOR: ContextVar[dict[str, Any] | None] = ContextVar("heal_actor", default=None)

#: the longest name recorded as ``who``: a person's name or login, not a paragraph (the audit
#: log, ``heal breaker status`` and ``heal explain`` print it on one line)
MAX_WHO = 64


def _unsafe(name: str) -> str | None:
    """What makes ``name`` unfit to record and print as a person's name, or None: a control
    character (an escape sequence, a newline forging a line), a format character (a
    bidirectional override, a zero-width one) or a length over :data:`MAX_WHO`."""
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"it holds the control or format character U+{ord(ch):04X}"
    if len(name) > MAX_WHO:
        return f"it is {len(name)} characters long (at most {MAX_WHO})"
    return None


def who_am_i() -> str:
    """The person running this command: ``HEAL_USER`` when set (a shared service account
    names the person behind it), else the login name; ``unknown`` when neither is known.

    ``HEAL_USER`` is recorded in the audit log and printed by ``heal breaker status`` and
    ``heal explain``, so one holding a control or format character, or over :data:`MAX_WHO`
    characters, is refused (UsageError, exit 2) rather than recorded. A login name the OS
    gives is never refused: any such character in it is written visible and it is clipped.
    """
    given = os.environ.get("HEAL_USER")
    if given:
        why = _unsafe(given)
        if why:
            raise UsageError(f"HEAL_USER {visible(clip(given, 40))!r} cannot name the person "
                             f"acting: {why}; set HEAL_USER to a plain name (letters, digits, "
                             f"spaces, '.', '-', '@'; at most {MAX_WHO} characters), or unset "
                             "it to use the login name")
        return given
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
    if not login:
        return "unknown"
    safe = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cf", "Zl", "Zp")
                   else ch for ch in visible(login))
    return clip(safe, MAX_WHO)


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
