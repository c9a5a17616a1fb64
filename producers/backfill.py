"""``heal backfill``: historical logs and transcripts through the pipeline, or a replay of
the error stream.

Logs are read exactly like ``heal watch`` (same record assembly, same deterministic ids). A
high-water mark per file (``<prefix>:backfill:marks``, keyed by the file identity = hash of
its first line) records how far a file was published, so a second backfill of the same file
publishes only what was appended since (``force`` ignores the marks; the ids stay the same,
so the runtime still dedupes). ``.gz`` files are read decompressed.

Replay (``replay_stream``) re-publishes ``<prefix>:errors`` history up to the entry that was
newest when the replay started. Each copy gets the id ``<original id>~replay-<token>`` and
``tags.replay_of`` / ``tags.replay``: the runtime dedupes on the event id, so the unchanged id
would be swallowed as already handled.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, cast

import redis

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import DecodeError, StreamUnavailable, UsageError
from pipeline.events import MAX_ID_LENGTH, ErrorEvent
from pipeline.safefile import FileRefused, kind_of, open_regular
from producers.context import stable_id
from producers.logs import LineSink, LogRecords, head_identity
from producers.records import LineSplitter
from producers.transcript import TranscriptReader, TranscriptStats

CHUNK = 1 << 20
PROGRESS_EVERY_S = 2.0


@dataclass
class BackfillStats:
    files: int = 0
    bytes: int = 0
    events: int = 0
    skipped_bytes: int = 0
    bad_entries: int = 0
    per_file: dict[str, int] = field(default_factory=dict)
    #: per transcript: the lines skipped (not JSON, too long), failures cut or refused
    transcripts: dict[str, TranscriptStats] = field(default_factory=dict)


class Progress:
    """Progress of one file or replay on stderr: a rich bar with the rate on a terminal, a
    line at most every ``PROGRESS_EVERY_S`` seconds elsewhere (see :mod:`pipeline.progress`)."""

    def __init__(self, out: IO[str] | None = None, unit: str = "bytes") -> None:
        from pipeline.progress import ProgressReporter

        self.reporter = ProgressReporter("heal backfill", unit, out, PROGRESS_EVERY_S)

    def tick(self, message: Callable[..., str], done: float = 0,
             total: float | None = None) -> None:
        self.reporter.update(done, total, message)

    def close(self) -> None:
        self.reporter.close()


def _open(path: Path) -> IO[bytes]:
    """Raises: UsageError when ``path`` is not (or is no longer) a regular file: opened
    without blocking, so a FIFO put there after :func:`check_paths` cannot hold backfill."""
    try:
        fh = open_regular(path)
    except FileRefused as exc:
        raise UsageError(f"{path} {exc}; give log files (or .gz) to backfill") from exc
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(fh, "rb"))
    return fh


def file_identity(path: Path) -> str:
    with _open(path) as fh:
        return head_identity(fh.read(1024))


def check_paths(paths: list[str]) -> list[Path]:
    """Raises: UsageError naming the first path that is missing or not a file."""
    out = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = path.stat().st_mode
        except OSError:
            raise UsageError(f"{raw}: does not exist; give log files (or .gz) to backfill"
                             ) from None
        if not stat.S_ISREG(mode):
            raise UsageError(f"{raw}: is {kind_of(mode)}, not a regular file; give log files "
                             "(or .gz) to backfill")
        out.append(path)
    return out


def scan_file(path: Path, transcript: bool = False, start: int = 0,
              progress: Progress | None = None, stats: TranscriptStats | None = None
              ) -> Iterator[tuple[ErrorEvent, int]]:
    """Events of one file with the offset up to which the file is consumed after each;
    ``stats`` counts a transcript's skipped, cut and refused lines."""
    identity = file_identity(path)
    sink: LineSink = (TranscriptReader(str(path), lambda: identity, stats) if transcript
                      else LogRecords(str(path), lambda: identity, kind="backfill"))
    total = path.stat().st_size  # compressed size for .gz: progress is approximate there
    with _open(path) as fh:
        if start:
            fh.seek(start)
        lines = LineSplitter(start, sink.max_line_bytes)  # (an overlong line: head and tail)
        line = 0
        while True:
            data = fh.read(CHUNK)
            for text, s, e, cut in lines.feed(data) if data else lines.finish():
                line += 1
                for event in sink.feed(text, s, e, line, cut):
                    yield event, s
            if not data:
                break
            if progress:
                progress.tick(lambda done=lines.pos: f"{path}: {done / 1e6:.1f}/"
                              f"{total / 1e6:.1f} MB", lines.pos, total)
        for event in sink.flush():
            yield event, lines.pos


class Backfiller:
    """Publishes (or, dry-run, returns) the error events of historical files."""

    def __init__(self, client: Any, settings: Settings, publish: Callable[[list[ErrorEvent]],
                 object] | None, force: bool = False, batch: int = 500) -> None:
        self.client = client
        self.marks_key = settings.key("backfill", "marks")
        self.publish = publish
        self.force = force
        self.batch = batch
        self.stats = BackfillStats()

    def _mark(self, identity: str) -> int:
        if self.force or self.client is None:
            return 0
        try:
            value = self.client.hget(self.marks_key, identity)
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot read backfill marks: {exc}") from exc
        return int(value) if value else 0

    def _save_mark(self, identity: str, offset: int) -> None:
        if self.client is None or self.publish is None:
            return  # dry-run: nothing was published, nothing to remember
        try:
            self.client.hset(self.marks_key, identity, offset)
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot save backfill mark: {exc}") from exc

    def run_file(self, path: Path, transcript: bool = False,
                 emit: Callable[[ErrorEvent], None] | None = None) -> int:
        """Raises: StreamUnavailable."""
        identity = file_identity(path)
        size = _end(path)
        start = self._mark(identity)
        if start > size:
            start = 0  # shorter than what we published: another file with the same first line
        self.stats.skipped_bytes += start
        progress = Progress()
        batch: list[ErrorEvent] = []
        count = 0
        done = start
        stats = (self.stats.transcripts.setdefault(str(path), TranscriptStats())
                 if transcript else None)
        try:
            for event, offset in scan_file(path, transcript, start, progress, stats):
                count += 1
                if emit:
                    emit(event)
                batch.append(event)
                if len(batch) >= self.batch:
                    self._flush(batch, identity, offset)
                    batch = []
                done = offset
        finally:
            progress.close()
        self._flush(batch, identity, max(done, size))
        self.stats.files += 1
        self.stats.events += count
        self.stats.bytes += size - start
        self.stats.per_file[str(path)] = count
        return count

    def _flush(self, batch: list[ErrorEvent], identity: str, offset: int) -> None:
        if self.publish is not None and batch:
            self.publish(batch)
        self._save_mark(identity, offset)


def _end(path: Path) -> int:
    if path.suffix != ".gz":
        return path.stat().st_size
    with _open(path) as fh:
        return fh.seek(0, 2)


# -- replay ---------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_to_id(since: str, now: float | None = None) -> str:
    """``--since``: a stream id (``1700000000000-0``), an ISO time, or an age like ``2h``/``7d``.

    Raises:
        UsageError: none of these forms.
    """
    text = since.strip()
    if re.fullmatch(r"\d+(-\d+)?", text):
        return text if "-" in text else f"{text}-0"
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return f"{int(((now or time.time()) - seconds) * 1000)}-0"
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"--since {since!r}: use an ISO time (2026-11-22T10:00:00Z), an age (30m, 2h, 7d) "
            "or a stream id (1700000000000-0)"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return f"{int(when.timestamp() * 1000)}-0"


def replay_copy(event: ErrorEvent, token: str, settings: Settings | None = None) -> ErrorEvent:
    """The event re-published by a replay: a new id, tagged with the original. An event
    heal run had attested is attested again under its new id (``settings`` given): the
    replay is the operator's own command."""
    original = str(event.tags.get("replay_of") or event.id)
    new_id = f"{original}~replay-{token}"
    if len(new_id) > MAX_ID_LENGTH:
        new_id = stable_id("replay", original, token)
    tags = {**event.tags, "replay_of": original, "replay": token}
    copy = replace(event, id=new_id, tags=tags)
    if settings is not None:
        from pipeline.trust.attest import attest, is_attested

        if is_attested(event, settings):
            return attest(copy, settings)
    return copy


def replay_stream(client: Any, settings: Settings, since: str | None,
                  emit: Callable[[ErrorEvent], None], stats: BackfillStats,
                  page: int = 1000) -> None:
    """Feed ``emit`` the replay copies of ``<prefix>:errors`` entries from ``since`` up to the
    newest entry at the start (so the replay never reads its own output); partitioned, every
    partition's stream in turn.

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    token = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    for view in settings.partition_views():
        _replay_one(client, view, view.stream(STREAM_ERRORS), since, emit, stats, page, token)


def _replay_one(client: Any, settings: Settings, stream: str, since: str | None,
                emit: Callable[[ErrorEvent], None], stats: BackfillStats, page: int,
                token: str) -> None:
    """Raises: StreamUnavailable."""
    try:
        newest = client.xrevrange(stream, count=1)
        if not newest:
            return
        end = newest[0][0]
        cursor = since_to_id(since) if since else "-"
        progress = Progress(unit="events")
        try:
            _replay_pages(client, stream, cursor, end, page, settings, stats, emit, token,
                          progress)
        finally:
            progress.close()
    except redis.RedisError as exc:
        raise StreamUnavailable(f"cannot replay {stream}: {exc}") from exc


def _replay_pages(client: Any, stream: str, cursor: str, end: Any, page: int,
                  settings: Settings, stats: Any, emit: Callable[[ErrorEvent], None],
                  token: str, progress: Progress) -> None:
    """Raises: redis.RedisError."""
    while True:
        rows = client.xrange(stream, min=cursor, max=end, count=page)
        for _entry_id, fields in rows:
            try:
                event = ErrorEvent.decode(fields.get(b"event", b""), settings.max_text_bytes)
            except DecodeError:
                stats.bad_entries += 1  # the runtime dead-lettered it the first time
                continue
            stats.events += 1
            emit(replay_copy(event, token, settings))
        if len(rows) < page:
            return
        last = rows[-1][0].decode() if isinstance(rows[-1][0], bytes) else rows[-1][0]
        cursor = "(" + last
        progress.tick(lambda: f"replayed {stats.events} events", stats.events)
