"""A log format's per-line columns: the prefix every line of a record repeats.

A program's multi-line output copied out of a log carries the log's columns on each line:
Android's logcat (``11-12 19:56:48.313 37053 37053 E AndroidRuntime: \\tat com.x.Y.m(Y.kt:60)``,
or ``E/AndroidRuntime( 3735): ...``), ``docker compose logs`` (``api-1  | ...``), ``kubectl
logs --timestamps``. A parser that reads a stack trace line by line sees no trace there:
:func:`strip_columns` gives the lines without them.

The columns are found by shape, not by a list of formats: a run of consecutive lines whose
beginnings agree token by token (digit runs agree with digit runs, blank runs with blank
runs, a log's level letter or tag with another level letter or tag, any other text only with
the same text) up to a blank, with at least one number among
the tokens (a time, a pid: a bare ``at `` shared by frame lines is the trace's own text).
The longest token run shared by the whole line run is its prefix. Linear in the text.
"""

from __future__ import annotations

import re

#: a token of a line's beginning: a digit run, a blank run, or a run of anything else
_TOKEN = re.compile(r"\d+|[ \t]+|[^\d \t]+")
#: the characters of a line read for its columns
_PREFIX_CHARS = 200
#: a column that names a line's source or level, not its text: logcat's level letter (``E``,
#: ``W``), its tag (``AndroidRuntime:``, ``ActivityManager:``) or brief format's
#: ``E/AndroidRuntime(``. A dump holds other tags' lines before, inside and after a crash's:
#: they are of the log, and the crash's lines keep their columns with them around
_LABEL = re.compile(r"[A-Z]|[A-Za-z][\w.$-]{0,99}:|[A-Z]/[^\s(]{1,100}\(")
#: lines a run needs for its common beginning to be a log's columns (one line has no peer)
_MIN_RUN = 3


def _tokens(line: str) -> list[str]:
    return _TOKEN.findall(line[:_PREFIX_CHARS])


def _same(a: str, b: str) -> bool:
    if a[0].isdigit():
        return b[0].isdigit()
    if a[0] in " \t":
        return b[0] in " \t"
    return a == b or (_LABEL.fullmatch(a) is not None and _LABEL.fullmatch(b) is not None)


def _common(prefix: list[str], tokens: list[str]) -> int:
    """How many leading tokens ``prefix`` and ``tokens`` share (by :func:`_same`)."""
    count = 0
    for a, b in zip(prefix, tokens, strict=False):
        if not _same(a, b):
            break
        count += 1
    return count


def _columns(tokens: list[str], shared: int) -> int:
    """The tokens of a run's shared beginning that are columns: up to and with its last
    blank, when a number is among them (0: none)."""
    cut = shared
    while cut and tokens[cut - 1][0] not in " \t":
        cut -= 1
    if cut < 2 or not any(t[0].isdigit() for t in tokens[:cut]):
        return 0
    return cut


def _strip_run(lines: list[str], run: list[int], token_lists: list[list[str]],
               shared: int) -> None:
    if len(run) < _MIN_RUN:
        return
    cut = _columns(token_lists[run[0]], shared)
    if not cut:
        return
    # the last blank is the separator: only as many of its characters as every line has
    # (``tag: `` then ``\tat ...``: the tab is the frame's own indentation)
    blank = min(len(token_lists[i][cut - 1]) for i in run)
    for i in run:
        width = sum(len(t) for t in token_lists[i][:cut - 1]) + blank
        lines[i] = lines[i][width:]


def strip_columns(text: str) -> str | None:
    """``text`` without the per-line columns of its runs of log lines, or None when it has
    none. A line outside such a run (a CI runner's line around it, a record's continuation
    printed without columns) is kept as it is."""
    lines = text.splitlines()
    token_lists = [_tokens(line) for line in lines]
    out = list(lines)
    run: list[int] = []
    shared = 0
    for index, tokens in enumerate(token_lists):
        if not tokens or tokens[0][0] in " \t":
            _strip_run(out, run, token_lists, shared)
            run, shared = [], 0
            continue
        if run:
            common = _common(token_lists[run[0]][:shared], tokens)
            if _columns(token_lists[run[0]], common):
                run.append(index)
                shared = common
                continue
            _strip_run(out, run, token_lists, shared)
        run, shared = [index], len(tokens)
    _strip_run(out, run, token_lists, shared)
    return "\n".join(out) if out != lines else None
