"""``heal fingerprint [FILE]``: print ``fine<TAB>coarse<TAB>template`` per message.

One message per input line, or with ``--multiline`` one message per record, split as
``heal watch`` and ``heal backfill`` split a log: one record per line, except multi-line
reports (Python tracebacks with their chained causes, Java traces, Go panics and Node crash
reports across their blank lines, pytest failure sections), indented continuation
lines and the report shapes any tool shares (frames, gutters, carets, notes, boxes,
``:`` headings, titled sections); a blank line ends any other record. Templates are
mined over all messages of the input at once, so the output does not depend on the order
of the lines. Each message is read as the fingerprint stage reads a published event's text
(secrets redacted, cut to the contract's size), so both give it one fingerprint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import orjson

from pipeline.console import visible
from pipeline.errors import UsageError
from pipeline.events import truncate_text
from pipeline.fingerprint.batch import fingerprint_batch
from pipeline.redact import redact
from pipeline.runnerlines import unstamped


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fingerprint",
        help="fingerprint messages: prints fine<TAB>coarse<TAB>template per message",
        description=__doc__,
    )
    parser.add_argument("file", nargs="?", default="-", help="input file (default: stdin)")
    parser.add_argument("--multiline", action="store_true",
                        help="one message per record, split as heal watch splits a log "
                        "(tracebacks, panics and crash reports kept whole)")
    parser.add_argument("--repo", default="", help="repository root, for project-relative paths")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per message: fingerprints, template, normalized "
                        "text, params, extraction and what the rules masked (hints)")
    parser.set_defaults(func=run)


def _records(lines: Iterable[str]) -> Iterator[str]:
    """Split into records as ``heal watch`` and ``heal backfill`` do (one mechanism,
    :class:`producers.records.RecordAssembler`): one record per line, except reports that
    span lines (Python tracebacks with their chained causes, Java traces, Go panics and Node
    crash reports across their blank lines, pytest sections), indented continuations and
    the report shapes of any tool (see the README's ``heal watch``); a blank line ends any
    other record. The CI runner's per-line timestamps are removed
    first (the stage removes them too), so a downloaded job log splits like the output."""
    from producers.records import RecordAssembler

    assembler = RecordAssembler()
    for number, raw in enumerate(lines, 1):
        for record in assembler.feed(unstamped(raw), 0, 0, number):
            yield record.text
    for record in assembler.flush():
        yield record.text


def as_published(message: str) -> str:
    """``message`` as the fingerprint stage reads it once published as an event's text:
    cut to the contract's size (head and tail) and its secrets redacted. The stage
    fingerprints that text, so ``heal fingerprint`` does too (a text a redaction rule changes
    would otherwise get another fingerprint here than in ``heal issues``)."""
    text, _ = truncate_text(message)
    return redact(text)


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
    for fp in fingerprint_batch([as_published(m) for m in messages], repo=args.repo):
        if args.json:
            out.write(orjson.dumps(fp.to_dict()).decode() + "\n")
        else:
            out.write(f"{fp.fine}\t{fp.coarse}\t{visible(fp.template)}\n")
    return 0
