"""``heal fingerprint [FILE]``: print ``fine<TAB>coarse<TAB>template`` per message.

One message per input line, or with ``--multiline`` one message per record (records are
separated by blank lines, or start at a line with no leading whitespace that is not a
traceback continuation). Templates are mined over all messages of the input at once, so the
output does not depend on the order of the lines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import orjson

from pipeline.console import visible
from pipeline.errors import UsageError
from pipeline.fingerprint.batch import fingerprint_batch

_CONTINUATION = ("During handling", "The above exception", "Caused by:", "goroutine")
_CHAIN = ("During handling", "The above exception")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fingerprint",
        help="fingerprint messages: prints fine<TAB>coarse<TAB>template per message",
        description=__doc__,
    )
    parser.add_argument("file", nargs="?", default="-", help="input file (default: stdin)")
    parser.add_argument("--multiline", action="store_true",
                        help="one message per record (blank-line separated / tracebacks)")
    parser.add_argument("--repo", default="", help="repository root, for project-relative paths")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per message: fingerprints, template, normalized "
                        "text, params, extraction and what the rules masked (hints)")
    parser.set_defaults(func=run)


def _records(lines: Iterable[str]) -> Iterator[str]:
    """Split into records: a blank line, or an unindented line after a complete message,
    starts a new one; chained-exception markers and stack frames continue the current one."""
    record: list[str] = []
    blank = False
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            blank = True
            continue
        chained = line.startswith("Traceback") and bool(record) and record[-1].startswith(_CHAIN)
        continues = chained or line.startswith(_CONTINUATION) or line[0].isspace()
        if record and not continues and (blank or not _expects_more(record)):
            yield "\n".join(record)
            record = []
        record.append(line)
        blank = False
    if record:
        yield "\n".join(record)


def _expects_more(record: list[str]) -> bool:
    # a Python traceback ends with its unindented exception line, after the indented frames
    heads = [i for i, r in enumerate(record) if r.startswith("Traceback")]
    return bool(heads) and all(r[:1].isspace() for r in record[heads[-1] + 1:])


def _open(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by run
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}; give a readable file or '-'")\
            from exc


def run(args: argparse.Namespace) -> int:
    stream = _open(args.file)
    try:
        if args.multiline:
            messages = list(_records(stream))
        else:
            messages = [line.rstrip("\n") for line in stream if line.strip()]
    finally:
        if stream is not sys.stdin:
            stream.close()
    out = sys.stdout
    for fp in fingerprint_batch(messages, repo=args.repo):
        if args.json:
            out.write(orjson.dumps(fp.to_dict()).decode() + "\n")
        else:
            out.write(f"{fp.fine}\t{fp.coarse}\t{visible(fp.template)}\n")
    return 0
