"""How heal writes for people and for programs (one convention, see README "Output").

* JSON: a command prints ONE JSON object; pretty-printed (2-space indent, sorted keys) when
  the stream is a terminal, compact on one line otherwise. Streams of records (``heal watch``
  style, ``--json`` listings meant for pipes) are JSON lines: one compact object per line.
* Colour: only on a terminal, never with ``NO_COLOR`` set (any value) or ``TERM=dumb``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def colour_enabled(stream: IO[str] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Colour only for a terminal, and never with NO_COLOR (https://no-color.org) or
    TERM=dumb."""
    env = os.environ if env is None else env
    if "NO_COLOR" in env or env.get("TERM", "") == "dumb":
        return False
    return is_terminal(stream)


def format_json(data: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str,
                      ensure_ascii=False)


def dump_json(data: Any, stream: IO[str] | None = None) -> None:
    """One JSON value: pretty on a terminal, compact otherwise."""
    stream = stream or sys.stdout
    print(format_json(data, is_terminal(stream)), file=stream, flush=True)


def dump_json_lines(records: Iterable[Any], stream: IO[str] | None = None) -> None:
    """A stream of records: one compact JSON object per line."""
    stream = stream or sys.stdout
    for record in records:
        print(format_json(record, False), file=stream)
    stream.flush()


def amount(value: Any) -> str:
    """A figure for people: whole numbers as such, others with 2 decimals (or 2 significant
    digits below 1), never ``0.00108333``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"


def clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters; a cut is marked with ``…`` so it is never
    mistaken for the whole text."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
