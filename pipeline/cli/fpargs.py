"""A fingerprint given on the command line: the one place that says which text names one, for
every command that takes it (``heal ignore``, ``heal unquarantine``, ``heal explain``, ``heal
learn``).

A fingerprint is ``fp-vN:`` (a version of :data:`pipeline.fingerprint.hashing.VERSIONS`) and
16 hex digits; a reader takes a prefix of one (``fp-v6:3f2a``) or its hex digits alone. A text
that starts with ``fp-`` but has no such form (``fp-v6:doesnotexist``, ``fp-v9:zzz``) is a typo,
never a name: it exits 2 saying what to change, its control characters shown, never sent.
"""

from __future__ import annotations

import re

from pipeline.errors import UsageError

#: ``fp-vN:`` and up to 16 hex digits (a prefix of a fingerprint, or a whole one)
_FORM = re.compile(r"fp-v([0-9]{1,4})(?::([0-9a-fA-F]{0,16}))?")
_HEX = re.compile(r"[0-9a-fA-F]{1,16}")
_WHOLE_HEX = re.compile(r"[0-9a-fA-F]{16}")


def _versions() -> tuple[str, list[str]]:
    from pipeline.fingerprint.hashing import ALGORITHM_VERSION, VERSIONS

    return ALGORITHM_VERSION, list(VERSIONS)


def _quoted(text: str) -> str:
    """``text`` for a message: repr (control characters escaped), cut to 80 characters."""
    return repr(text) if len(text) <= 80 else f"{text[:80]!r}... (cut: {len(text)} characters)"


def _problem(command: str, text: str, why: str) -> UsageError:
    current, _ = _versions()
    return UsageError(f"{command}: {_quoted(text)} is no fingerprint: {why}; a fingerprint is "
                      f"{current}:<16 hex digits 0-9a-f> (or a unique prefix of one, or the hex "
                      "digits alone), as heal run, heal issues list and heal fingerprint FILE "
                      "print it")


def read(text: str, command: str, *, or_id: bool = False) -> str:
    """``text`` (stripped) as a fingerprint or a prefix of one, its hex digits in lower case.

    ``or_id``: the command also takes another name (an error id, a fix id), so only a text
    that starts with ``fp-`` must have a fingerprint's form; else every text must be printable
    too (hex digits alone are a fingerprint without its ``fp-vN:``; any other text is looked
    up and refused by :func:`in_advance`). An empty text is returned as is (each command says
    what to give).

    Raises:
        UsageError: the text claims to be a fingerprint (``fp-...``, or any text when not
            ``or_id``) and is none: an unknown version, other than 16 hex digits after it,
            control characters.
    """
    text = text.strip()
    if not text:
        return text
    if not text.startswith("fp-"):
        if or_id:
            return text
        if _HEX.fullmatch(text):
            return text.lower()
        _check_printable(command, text)
        return text  # (no fingerprint heal has seen starts so: in_advance refuses it)
    _check_printable(command, text)
    current, versions = _versions()
    if text in ("fp-", "fp-v"):  # the start of every fingerprint
        return text
    form = _FORM.fullmatch(text)
    if form is None:
        head, colon, after = text.partition(":")
        if colon and _FORM.fullmatch(head):
            raise _problem(command, text, f"after {head}: come up to 16 hex digits (0-9, a-f), "
                           f"not {_quoted(after)}")
        raise _problem(command, text, "it does not start with fp-vN: (N a version)")
    version = f"fp-v{form.group(1)}"
    if form.group(2) is None:  # fp-v1: the start of fp-v1 and of fp-v10, ...
        if any(v.startswith(version) for v in versions):
            return text
    elif version in versions:
        return f"{version}:{form.group(2).lower()}"
    raise _problem(command, text, f"heal knows the versions {', '.join(versions)} "
                   f"({current} is the one it computes now), not {version}")


def in_advance(text: str, command: str) -> str:
    """The fingerprint ``text`` (already :func:`read`) names when no known one does: a whole
    fingerprint of the version heal computes now (hex digits alone get its ``fp-vN:``).

    An older version's fingerprint is refused: no event will carry it again (its errors now
    get the current version's), so ignoring it in advance would silence nothing.

    Raises:
        UsageError: anything else (a prefix, an older version, a typo), saying what to give.
    """
    current, versions = _versions()
    if _WHOLE_HEX.fullmatch(text):
        return f"{current}:{text.lower()}"
    form = _FORM.fullmatch(text)
    if form is not None and form.group(2) is not None and len(form.group(2)) == 16:
        version = f"fp-v{form.group(1)}"
        if version == current:
            return text
        raise UsageError(
            f"{command}: {text} is a fingerprint of the older algorithm version {version} "
            f"that heal has not seen here; heal now computes {current} fingerprints, so no "
            f"event will carry it: give its {current} form (heal issues list shows it)")
    raise UsageError(
        f"{command}: {_quoted(text)} is no fingerprint heal has seen, nor a whole one to act "
        f"on in advance ({current}:<16 hex digits>, or the 16 digits alone); find it with "
        "heal issues list, heal explain or heal fingerprint FILE")


def _check_printable(command: str, text: str) -> None:
    """Raises UsageError unless ``text`` is printable (no fingerprint has a control
    character)."""
    if not text.isprintable():
        raise _problem(command, text, "it holds control characters (shown escaped here)")
