"""Turn log lines into ErrorEvents: record assembly (:mod:`producers.records`) plus the
deterministic event ids shared by ``heal watch`` and ``heal backfill``.

Event id of a log record: ``log-<hash(file identity, byte offset, record text)>``, where the file
identity is a hash of the file's first line. It does not include the path, so a rotated file
(``app.log`` renamed to ``app.log.1``) yields the same ids, and a record seen by ``watch`` is
not published again by a ``backfill`` of the same history (the runtime dedupes on the id).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Protocol

from pipeline.events import ErrorEvent, Source, truncate_text, utc_now
from producers.cilog import CiFailure, CiLogDetector
from producers.context import hostname, stable_id
from producers.records import MAX_LINE_BYTES, Record, RecordAssembler

HEAD_BYTES = 1024


class LineSink(Protocol):
    """What a file reader feeds lines to (log records, transcripts). A line longer than
    ``max_line_bytes`` reaches ``feed`` cut (its head and tail, see
    :class:`producers.records.LineSplitter`), ``cut`` saying how many bytes were dropped."""

    max_line_bytes: int

    @property
    def pending_offset(self) -> int | None: ...

    @property
    def pending_line(self) -> int | None:
        """Lines before :attr:`pending_offset` (None: the follower counts them itself)."""

    def feed(self, line: str, start: int, end: int, number: int, cut: int = 0
             ) -> list[ErrorEvent]: ...

    def flush(self) -> list[ErrorEvent]: ...


def head_identity(first_bytes: bytes) -> str:
    """Identity of a file from its first line (or first ``HEAD_BYTES`` bytes); "" while the
    first line is still incomplete (it would change as the writer finishes it)."""
    chunk = first_bytes[:HEAD_BYTES]
    if b"\n" not in chunk and len(chunk) < HEAD_BYTES:
        return ""
    line = chunk.split(b"\n", 1)[0]
    return hashlib.sha256(line).hexdigest()[:16]


class LogRecords:
    """A :class:`LineSink` publishing only the error records of one log file.

    A CI build log (folds, echoed commands, "exited with N" lines: :mod:`producers.cilog`)
    is published differently: once its structure is recognised, the per-record events stop
    and each failed step gives one event holding the part of its output that explains the
    failure. ``final_flush``: :meth:`flush` means the end of the file (``backfill``), so a
    step cut off by the end of the log is explained too; ``watch`` flushes when a file is
    idle, which says nothing about the build being over.
    """

    max_line_bytes = MAX_LINE_BYTES

    def __init__(self, path: str, identity: Callable[[], str], kind: str = "log",
                 name: str = "", final_flush: bool | None = None) -> None:
        self.path = os.path.abspath(path)
        self._identity = identity
        self.kind = kind
        self.name = name or self.path
        self._assembler = RecordAssembler()
        self._ci = CiLogDetector()
        self._final_flush = kind == "backfill" if final_flush is None else final_flush
        self.records = 0
        self.errors = 0

    @property
    def pending_offset(self) -> int | None:
        return self._assembler.pending_offset

    @property
    def pending_line(self) -> int | None:
        return self._assembler.pending_line

    def feed(self, line: str, start: int, end: int, number: int, cut: int = 0
             ) -> list[ErrorEvent]:
        failure = self._ci.feed(line, start, end, number)
        events = self._events(self._assembler.feed(line, start, end, number, cut))
        if failure is not None:
            events.append(self.ci_event(failure))
        return events

    def flush(self) -> list[ErrorEvent]:
        events = self._events(self._assembler.flush())
        if self._final_flush:
            failure = self._ci.finish()
            if failure is not None:
                events.append(self.ci_event(failure))
        return events

    def _events(self, records: list[Record]) -> list[ErrorEvent]:
        out = []
        for record in records:
            self.records += 1
            if self._ci.active:
                continue  # a CI log: its failed steps are published instead
            if record.is_error:
                self.errors += 1
                out.append(self.event(record))
        return out

    def event(self, record: Record) -> ErrorEvent:
        text_hash = hashlib.sha256(record.text.encode("utf-8", "replace")).hexdigest()
        # the 64 KiB cut of every event, counting what the reader dropped from overlong lines
        text, cut = truncate_text(record.text, dropped=record.cut)
        tags: dict[str, object] = {"path": self.path, "line": record.line,
                                   "offset": record.offset, "record_kind": record.kind}
        if cut:
            tags["truncated_bytes"] = cut
        return ErrorEvent(
            id=stable_id("log", self._identity(), str(record.offset), text_hash),
            text=text,
            ts=utc_now(),
            source=Source(kind=self.kind, name=self.name, host=hostname()),
            tags=tags,
        )

    def ci_event(self, failure: CiFailure) -> ErrorEvent:
        """The event of a failed CI step (its id: file identity, offset and text, as records)."""
        self.errors += 1
        text_hash = hashlib.sha256(failure.text.encode("utf-8", "replace")).hexdigest()
        tags: dict[str, object] = {"path": self.path, "line": failure.line,
                                   "offset": failure.offset, "record_kind": "ci-step"}
        if failure.command:
            tags["ci_command"] = failure.command
        return ErrorEvent(
            id=stable_id("log", self._identity(), str(failure.offset), text_hash),
            text=failure.text,
            ts=utc_now(),
            source=Source(kind=self.kind, name=self.name, host=hostname()),
            exit_code=failure.exit_code,
            tags=tags,
        )
