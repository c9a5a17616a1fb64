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
from collections.abc import Mapping, Sequence
from typing import IO, Any

import orjson


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
    """Sorted keys; datetimes as ISO 8601; anything else unknown as its ``str``."""
    option = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    if pretty:
        option |= orjson.OPT_INDENT_2
    try:
        return orjson.dumps(data, default=str, option=option).decode()
    except TypeError:  # e.g. an int beyond 64 bits
        return json.dumps(data, indent=2 if pretty else None, sort_keys=True, default=str,
                          ensure_ascii=False, separators=None if pretty else (",", ":"))


def dump_json(data: Any, stream: IO[str] | None = None) -> None:
    """One JSON value: pretty on a terminal, compact otherwise."""
    stream = stream or sys.stdout
    print(format_json(data, is_terminal(stream)), file=stream, flush=True)



def amount(value: Any) -> str:
    """A figure for people: whole numbers as such, others with 2 decimals (or 2 significant
    digits below 1), never ``0.00108333``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"


#: control characters (C0, DEL, C1) as visible escapes: event text is hostile, and an escape
#: sequence printed raw drives the reader's terminal (``ESC ] 0 ; title BEL`` retitles it);
#: so are the bidirectional controls, which make a terminal show text in another order than
#: it is ("Trojan Source": ``invoice U+202E txt.exe`` reads as ``invoiceexe.txt``), and the
#: line and paragraph separators, which break a line where none is; a byte that is not UTF-8
#: (a file name git or the OS gave as a surrogate escape, PEP 383) is shown as ``\\xNN`` too
#: (printed raw, it could not even be written to a UTF-8 terminal or event)
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))} | {
    c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x2028, 0x202F),
                                *range(0x2066, 0x206A))} | {
    0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)}


def visible(text: str) -> str:
    """``text`` with every control character (newlines and tabs too: a cell or a column is
    one line) and every byte that is not UTF-8 (a surrogate escape) written as ``\\xNN``,
    and every bidirectional control as ``\\uNNNN``, for printing on a terminal."""
    return text if text.isprintable() else text.translate(_VISIBLE)


def shell_quote(text: str) -> str:
    """``text`` as one shell word to copy into a command, and safe to print: quoted as
    :func:`shlex.quote` does when every character of it is printable; otherwise in bash's
    ANSI-C quoting, ``$'wf\\x1b]0;T\\x07\\u202e'``, where each character :func:`visible`
    would escape (or any other one that is not printable) is written as an escape the shell
    turns back into it, so the command names the real id, not its visible form."""
    import shlex

    if text.isprintable():
        return shlex.quote(text)
    out = []
    for ch in text:
        code = ord(ch)
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "$'" + "".join(out) + "'"


def clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters; a cut is marked with ``…`` so it is never
    mistaken for the whole text."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                right: Sequence[int] = ()) -> str:
    """Aligned text columns (what non-terminals, NO_COLOR and TERM=dumb get)."""
    cells = [[str(h) for h in headers]] + [[visible(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                right: Sequence[int] = (), title: str = "",
                stream: IO[str] | None = None, markup: bool = False) -> None:
    """A table: rich (box, colour) on a colour terminal, :func:`plain_table` otherwise.
    Cells are text unless ``markup`` (rich markup, only ever passed on a colour terminal)."""
    stream = stream or sys.stdout
    if not colour_enabled(stream):
        if title:
            print(title, file=stream)
        print(plain_table(headers, rows, right), file=stream, flush=True)
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD,
                  header_style="bold cyan", title_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in right else "left")
    for row in rows:
        table.add_row(*(str(c) if markup else escape(visible(str(c))) for c in row))
    rich_console(stream).print(table)


def rich_console(stream: IO[str] | None = None) -> Any:
    """A rich Console on ``stream`` that follows :func:`colour_enabled`."""
    from rich.console import Console

    stream = stream or sys.stdout
    colour = colour_enabled(stream)
    return Console(file=stream, highlight=False, soft_wrap=True, no_color=not colour,
                   force_terminal=colour, color_system="auto" if colour else None)

