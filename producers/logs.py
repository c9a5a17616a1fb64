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

from pipeline.events import ErrorEvent, Source, utc_now
from producers.context import hostname, stable_id
from producers.records import Record, RecordAssembler

HEAD_BYTES = 1024


class LineSink(Protocol):
    """What a file reader feeds lines to (log records, transcripts)."""

    @property
    def pending_offset(self) -> int | None: ...

    def feed(self, line: str, start: int, end: int, number: int) -> list[ErrorEvent]: ...

    def flush(self) -> list[ErrorEvent]: ...


def head_identity(first_bytes: bytes) -> str:
    """Identity of a file from its first line (or first ``HEAD_BYTES`` bytes); "" while the
    first line is still incomplete (it would change as the writer finishes it)."""
    chunk = first_bytes[:HEAD_BYTES]
    if b"\n" not in chunk and len(chunk) < HEAD_BYTES:
        return ""
    line = chunk.split(b"\n", 1)[0]
    return hashlib.sha256(line).hexdigest()[:16]


def read_head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


class LogRecords:
    """A :class:`LineSink` publishing only the error records of one log file."""

    def __init__(self, path: str, identity: Callable[[], str], kind: str = "log",
                 name: str = "") -> None:
        self.path = os.path.abspath(path)
        self._identity = identity
        self.kind = kind
        self.name = name or self.path
        self._assembler = RecordAssembler()
        self.records = 0
        self.errors = 0

    @property
    def pending_offset(self) -> int | None:
        return self._assembler.pending_offset

    def feed(self, line: str, start: int, end: int, number: int) -> list[ErrorEvent]:
        return self._events(self._assembler.feed(line, start, end, number))

    def flush(self) -> list[ErrorEvent]:
        return self._events(self._assembler.flush())

    def _events(self, records: list[Record]) -> list[ErrorEvent]:
        out = []
        for record in records:
            self.records += 1
            if record.is_error:
                self.errors += 1
                out.append(self.event(record))
        return out

    def event(self, record: Record) -> ErrorEvent:
        text_hash = hashlib.sha256(record.text.encode("utf-8", "replace")).hexdigest()
        return ErrorEvent(
            id=stable_id("log", self._identity(), str(record.offset), text_hash),
            text=record.text,
            ts=utc_now(),
            source=Source(kind=self.kind, name=self.name, host=hostname()),
            tags={"path": self.path, "line": record.line, "offset": record.offset,
                  "record_kind": record.kind},
        )
