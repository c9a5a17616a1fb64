"""``heal backfill``: historical logs and transcripts through the pipeline, or a replay of
the error stream.

Logs are read exactly like ``heal watch`` (same record assembly, same deterministic ids). A
high-water mark per file (``<prefix>:backfill:marks``) records how far a file was published,
so a second backfill of the same file publishes only what was appended since (``force``
ignores the marks; the ids stay the same, so the runtime still dedupes). ``.gz`` files are
read decompressed.

A mark belongs to a file's content, not to its name: it is the offset N with the SHA-256 of
the file's first N bytes (decompressed for ``.gz``), kept in the hash field ``v2:<first-line
identity>`` with the marks of the other files that start with the same line (service banners,
CSV headers, every GitLab job log). A backfill resumes at the largest saved offset whose
digest is its own first bytes', so a renamed or compressed copy of the same history is
recognised, and another file that merely starts alike is read from its start. Marks of
earlier versions (a bare offset in the field ``<identity>``) cannot be checked: such a file is
read from its start once (the event ids are the same, so the runtime dedupes).

A damaged file (a truncated or corrupt ``.gz``, a read error) is published as far as it can
be read, whole lines only; :func:`scan_file` then raises :class:`DamagedFile` and the
backfiller goes on with the next file.

Replay (``replay_stream``) re-publishes ``<prefix>:errors`` history up to the entry that was
newest when the replay started. Each copy gets the id ``<its own id>~replay-<token>`` and
``tags.replay_of`` / ``tags.replay``: the runtime dedupes on the event id, so the unchanged id
would be swallowed as already handled. The id never comes from the event's tags (any
producer can write ``tags.replay_of``), so two entries never share a copy id. Each error is
replayed once (``_replay_pages``): copies of copies do not pile up replay after replay.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import math
import re
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, cast

import orjson
import redis

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import DamagedFile, DecodeError, StreamUnavailable, UsageError
from pipeline.events import MAX_ID_LENGTH, ErrorEvent
from pipeline.replayid import REPLAY_MARK, original_id
from pipeline.safefile import FileRefused, kind_of, open_regular
from producers.context import stable_id
from producers.logs import HEAD_BYTES, LineSink, LogRecords, head_identity
from producers.records import LineSplitter
from producers.transcript import TranscriptReader, TranscriptStats

CHUNK = 1 << 20
PROGRESS_EVERY_S = 2.0
#: marks kept per first-line identity (the newest); a file whose mark was dropped is read
#: again from its start, and the runtime dedupes its events
MAX_MARKS = 64
#: what reading a damaged file raises (a truncated .gz: EOFError; a corrupt one:
#: gzip.BadGzipFile, an OSError, or zlib.error)
READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass
class BackfillStats:
    files: int = 0
    bytes: int = 0
    events: int = 0
    skipped_bytes: int = 0
    bad_entries: int = 0
    #: replay: copies of an earlier replay left out (their original was re-published)
    earlier_copies: int = 0
    #: files whose mark was saved by an earlier heal version (read from their start)
    legacy_marks: int = 0
    per_file: dict[str, int] = field(default_factory=dict)
    #: per transcript: the lines skipped (not JSON, too long), failures cut or refused
    transcripts: dict[str, TranscriptStats] = field(default_factory=dict)
    damaged: list[DamagedFile] = field(default_factory=list)


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


def _reader(fh: IO[bytes]) -> Callable[[int], bytes]:
    """``read(n)``: at most ``n`` bytes, b"" at the end. A .gz is read one compressed block
    at a time (``read1``), so a truncated one loses no more than the block it ends in."""
    if isinstance(fh, gzip.GzipFile):
        return fh.read1
    return fh.read


def damage_reason(exc: BaseException) -> str:
    """What is wrong with a file whose reading raised ``exc``, in the user's words."""
    if isinstance(exc, EOFError):
        return "truncated gzip (the compressed data ends before its end marker)"
    if isinstance(exc, gzip.BadGzipFile):
        if "Not a gzipped file" in str(exc):
            return "not a gzip file (rename it without .gz if it is plain text)"
        return f"corrupt gzip ({exc})"
    if isinstance(exc, zlib.error):
        return f"corrupt gzip data ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"read error ({exc.strerror})"
    return f"read error ({exc})"


def file_identity(path: Path) -> str:
    """Hash of the first line (see :func:`producers.logs.head_identity`). A file damaged in
    its first bytes gets the identity of what could be read; :func:`scan_file` reports it."""
    head = b""
    with _open(path) as fh:
        read = _reader(fh)
        try:
            while len(head) < HEAD_BYTES:
                data = read(HEAD_BYTES - len(head))
                if not data:
                    break
                head += data
        except READ_ERRORS:
            pass
    return head_identity(head)


#: what to do about a PATH heal may not read (or reach)
_READ_ADVICE = ("give the user heal runs as read access to it (its permissions), or run heal "
                "as a user who can read it")


def check_paths(paths: list[str]) -> list[Path]:
    """Raises: UsageError naming the first path that is missing, not a file or unreadable."""
    out = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise UsageError(f"{raw}: does not exist; give log files (or .gz) to backfill"
                             ) from None
        except PermissionError as exc:  # a folder on its way heal may not enter
            raise UsageError(f"{raw} cannot be read: {exc.strerror}; {_READ_ADVICE}") from None
        except OSError as exc:  # e.g. a file named as a folder on the way, a link loop
            raise UsageError(f"{raw}: cannot be used: {exc.strerror}; give log files (or .gz) "
                             "to backfill") from None
        if not stat.S_ISREG(mode):
            raise UsageError(f"{raw}: is {kind_of(mode)}, not a regular file; give log files "
                             "(or .gz) to backfill")
        try:  # (before anything is read, as --discover names such a file before reading)
            open_regular(path).close()
        except FileNotFoundError:
            raise UsageError(f"{raw}: does not exist; give log files (or .gz) to backfill"
                             ) from None
        except FileRefused as exc:
            raise UsageError(f"{raw} {exc}; {_READ_ADVICE}") from exc
        out.append(path)
    return out


class PrefixDigest:
    """SHA-256 of a file's first N bytes, for the offsets N a scan can report (line starts
    and the end), computed as the file is read: bytes are hashed once, and at most the chunk
    being read (or the start of one overlong line) is held.

    The reader calls :meth:`read` with each chunk and :meth:`settle` once the chunk's lines
    are fed: no later offset is below the start of the partial line, except that start itself.
    """

    #: a partial line longer than this is hashed on (its start's digest kept aside)
    HOLD = 2 * CHUNK

    def __init__(self, pos: int = 0, hasher: Any = None) -> None:
        self._h = hasher if hasher is not None else hashlib.sha256()
        self._pos = pos  # bytes hashed into _h
        self._buf = bytearray()  # bytes read after _pos, not hashed yet
        self._line: tuple[int, Any] | None = None  # start of a long partial line, its digest

    @property
    def end(self) -> int:
        """Offset of the first byte not read yet."""
        return self._pos + len(self._buf)

    def read(self, data: bytes) -> None:
        self._buf += data

    def settle(self, safe: int) -> None:
        if safe >= self._pos:
            self._advance(safe)
            self._line = None
            if len(self._buf) > self.HOLD:
                self._line = (self._pos, self._h.copy())
                self._advance(self.end)
        else:  # still inside the long line that starts at self._line
            self._advance(self.end)

    def at(self, offset: int) -> str | None:
        """Hex digest of the first ``offset`` bytes; None for an offset the reader promised
        never to ask for (no mark is then saved there)."""
        if self._line is not None and offset == self._line[0]:
            return str(self._line[1].hexdigest())
        if not self._pos <= offset <= self.end:
            return None
        self._advance(offset)
        return str(self._h.hexdigest())

    def _advance(self, offset: int) -> None:
        count = offset - self._pos
        self._h.update(self._buf[:count])
        del self._buf[:count]
        self._pos = offset


def scan_file(path: Path, transcript: bool = False, start: int = 0,
              progress: Progress | None = None, digest: PrefixDigest | None = None,
              stats: TranscriptStats | None = None) -> Iterator[tuple[ErrorEvent, int]]:
    """Events of one file with the offset up to which the file is consumed after each.
    ``digest`` (positioned at ``start``) is fed every byte read; ``stats`` counts a
    transcript's skipped, cut and refused lines.

    Raises:
        DamagedFile: after the events of what could be read (whole lines only: the line the
            damage cut is not published); its ``offset`` is where the readable lines end.
    """
    identity = file_identity(path)
    sink: LineSink = (TranscriptReader(str(path), lambda: identity, stats) if transcript
                      else LogRecords(str(path), lambda: identity, kind="backfill"))
    total = path.stat().st_size
    failed: list[BaseException] = []
    with _open(path) as fh:
        lines = LineSplitter(start, sink.max_line_bytes)  # (an overlong line: head and tail)
        line = 0
        for data in _chunks(fh, start, failed):
            if digest is not None:
                digest.read(data)
            for text, s, e, cut in lines.feed(data) if data else lines.finish():
                line += 1
                for event in sink.feed(text, s, e, line, cut):
                    yield event, s
            if digest is not None:
                digest.settle(lines.pos)
            if data and progress:
                done = _consumed(fh, lines.pos)
                progress.tick(lambda done=done: f"{path}: {done / 1e6:.1f}/"
                              f"{total / 1e6:.1f} MB", done, total)
        for event in sink.flush():
            yield event, lines.pos
    if failed:  # (the partial line the damage cut was never fed: no fragment is published)
        raise DamagedFile(str(path), lines.pos, damage_reason(failed[0]))


def _consumed(fh: IO[bytes], pos: int) -> int:
    """How far into the file on disk ``pos`` (an offset in what ``fh`` gives) is: for a .gz
    the compressed bytes read so far, which the file's size is a total of (the decompressed
    offset ran past it: "1500.0/200.0 MB")."""
    if isinstance(fh, gzip.GzipFile):
        try:
            return int(cast(IO[bytes], fh.fileobj).tell())
        except (OSError, ValueError):
            return 0
    return pos


def _chunks(fh: IO[bytes], start: int, failed: list[BaseException]) -> Iterator[bytes]:
    """The bytes of ``fh`` from ``start`` in chunks, then b"" at the end. A read error ends
    them early, without the b"", and is put in ``failed``."""
    read = _reader(fh)
    try:
        if start:
            fh.seek(start)
        while True:
            data = read(CHUNK)
            yield data
            if not data:
                return
    except READ_ERRORS as exc:
        failed.append(exc)


@dataclass(frozen=True)
class Mark:
    offset: int
    digest: str


def _parse_marks(raw: bytes | None) -> list[Mark]:
    """The saved marks of one identity; a value this version cannot read counts as none
    (the file is then read from its start: the runtime dedupes)."""
    if not raw:
        return []
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(items, list):
        return []
    return [Mark(item[0], item[1]) for item in items
            if isinstance(item, list) and len(item) == 2 and type(item[0]) is int
            and item[0] > 0 and isinstance(item[1], str)]


def _resume(path: Path, marks: list[Mark]) -> tuple[int, Any, set[Mark]]:
    """The largest saved offset whose digest is this file's first bytes', the hash state
    there, and every mark that matched (marks of this file's shorter past)."""
    hasher = hashlib.sha256()
    best: tuple[int, Any] = (0, hasher.copy())
    matched: set[Mark] = set()
    wanted: dict[int, set[str]] = {}
    for mark in marks:
        wanted.setdefault(mark.offset, set()).add(mark.digest)
    if not wanted:
        return best[0], best[1], matched
    pos = 0
    with _open(path) as fh:
        read = _reader(fh)
        try:
            for offset in sorted(wanted):
                while pos < offset:
                    data = read(min(CHUNK, offset - pos))
                    if not data:
                        return best[0], best[1], matched
                    hasher.update(data)
                    pos += len(data)
                digest = hasher.hexdigest()
                if digest in wanted[offset]:
                    best = (offset, hasher.copy())
                    matched.add(Mark(offset, digest))
        except READ_ERRORS:
            pass  # the scan reads the same bytes and reports the damage
    return best[0], best[1], matched


class Backfiller:
    """Publishes (or, dry-run, returns) the error events of historical files."""

    def __init__(self, client: Any, settings: Settings, publish: Callable[[list[ErrorEvent]],
                 object] | None, force: bool = False, batch: int = 500,
                 on_damage: Callable[[DamagedFile], None] | None = None) -> None:
        self.client = client
        self.marks_key = settings.key("backfill", "marks")
        self.publish = publish
        self.force = force
        self.batch = batch
        self.on_damage = on_damage
        self.stats = BackfillStats()

    def _marks(self, identity: str) -> list[Mark]:
        """Raises: StreamUnavailable."""
        if self.client is None:
            return []
        try:
            raw, legacy = self.client.hmget(self.marks_key, [f"v2:{identity}", identity])
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot read backfill marks: {exc}") from exc
        if legacy is not None and raw is None and not self.force:
            self.stats.legacy_marks += 1
        return _parse_marks(raw)

    def _save_marks(self, identity: str, marks: list[Mark]) -> None:
        """Raises: StreamUnavailable."""
        if self.client is None or self.publish is None:
            return  # dry-run: nothing was published, nothing to remember
        value = orjson.dumps([[m.offset, m.digest] for m in marks[-MAX_MARKS:]])
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.marks_key, f"v2:{identity}", value)
            pipe.hdel(self.marks_key, identity)  # an earlier version's mark: replaced
            pipe.execute()
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot save backfill mark: {exc}") from exc

    def run_file(self, path: Path, transcript: bool = False,
                 emit: Callable[[ErrorEvent], None] | None = None) -> int:
        """Publish the events of ``path`` after its mark. A damaged file is published as far
        as it can be read, recorded in ``stats.damaged`` and passed to ``on_damage``.

        Raises: StreamUnavailable.
        """
        identity = file_identity(path)
        marks = self._marks(identity)
        start, hasher, mine = (0, None, set()) if self.force else _resume(path, marks)
        # this file's own marks give way to the one this run saves; other files' stay
        others = [m for m in marks if m not in mine]
        digest = PrefixDigest(start, hasher)
        self.stats.skipped_bytes += start
        progress = Progress()
        batch: list[ErrorEvent] = []
        count = 0
        damage: DamagedFile | None = None
        stats = (self.stats.transcripts.setdefault(str(path), TranscriptStats())
                 if transcript else None)
        try:
            for event, offset in scan_file(path, transcript, start, progress, digest, stats):
                count += 1
                if emit:
                    emit(event)
                batch.append(event)
                if len(batch) >= self.batch:
                    self._flush(batch, identity, others, offset, digest)
                    batch = []
        except DamagedFile as exc:
            damage = exc
        finally:
            progress.close()
        end = damage.offset if damage is not None else digest.end
        self._flush(batch, identity, others, end, digest)
        self.stats.files += 1
        self.stats.events += count
        self.stats.bytes += max(end - start, 0)
        self.stats.per_file[str(path)] = count
        if damage is not None:
            self.stats.damaged.append(damage)
            if self.on_damage is not None:
                self.on_damage(damage)
        return count

    def _flush(self, batch: list[ErrorEvent], identity: str, others: list[Mark],
               offset: int, digest: PrefixDigest) -> None:
        if self.publish is not None and batch:
            self.publish(batch)
        value = digest.at(offset) if offset > 0 else None
        if value is not None:
            self._save_marks(identity, [*others, Mark(offset, value)])


# -- replay ---------------------------------------------------------------------------------

#: an age: a number (at most 12 digits, so it stays finite) and a unit
_RELATIVE = re.compile(r"(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: a stream id as Redis prints it: milliseconds since 1970 (13 digits and more from 2001 on),
#: then the sequence number; the sequence may be left out
_STREAM_ID = re.compile(r"(\d{13,20})(?:-(\d{1,20}))?")
#: an ISO-8601 date in its extended form (2026-11-22), optionally followed by a time
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].+)?")
_MAX_ID_PART = (1 << 64) - 1
SINCE_FORMS = ("an ISO date or time (2026-11-22, 2026-11-22T10:00:00Z), an age (30m, 2h, 7d) "
               "or a stream id (1700000000000-0)")


def since_to_id(since: str, now: float | None = None) -> str:
    """``--since``: a stream id (``1700000000000-0``), an ISO date or time, or an age like
    ``2h``/``7d``. Only these forms: a bare number (``20261202``, ``2027``) or a year and
    month (``2026-12``) could be read as a date or as a stream id in 1970, and read as the
    latter they would replay the whole history.

    Raises:
        UsageError: none of these forms, or a time before 1970 or past what Redis can hold.
    """
    text = since.strip()
    stream_id = _STREAM_ID.fullmatch(text)
    if stream_id:
        ms, seq = int(stream_id.group(1)), int(stream_id.group(2) or 0)
        if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
            raise _since_error(since, "is past the largest stream id (18446744073709551615)")
        return f"{ms}-{seq}"
    match = _RELATIVE.fullmatch(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return _ms_id(since, (now or time.time()) - seconds)
    if not _ISO.fullmatch(text):
        hint = ("is empty" if not text
                else "looks like a date: write it 2026-12-02" if re.fullmatch(r"\d{8}", text)
                else "is a year or a month: give a whole date (2026-12-01)"
                if re.fullmatch(r"\d{4}(?:-\d{1,2})?", text) else "is not one of the forms")
        raise _since_error(since, hint)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _since_error(since, "is not a valid date or time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return _ms_id(since, when.timestamp())


def _ms_id(since: str, seconds: float) -> str:
    """Raises: UsageError for a time before 1970 (no stream id is that old)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise _since_error(since, "is before 1970")
    return f"{int(seconds * 1000)}-0"


def _since_error(since: str, why: str) -> UsageError:
    return UsageError(f"--since {since!r} {why}; use {SINCE_FORMS}")


def replay_copy(event: ErrorEvent, token: str, settings: Settings | None = None) -> ErrorEvent:
    """The event re-published by a replay: a new id made of the event's own id, tagged with
    the original. ``tags.replay_of`` is only information (any producer can write it), so it
    never chooses the id: two entries naming the same ``replay_of`` would share a copy id and
    the runtime would drop one. The original is what the id says (``pipeline/replayid.py``):
    a copy of an earlier copy (``<original>~replay-T1``) names the first original, and an id
    too long for the token keeps its original in front (``<original>~replay-<digest>``), so
    every count finds it. An event heal run had attested is attested again under its new id
    (``settings`` given): the replay is the operator's own command."""
    original = original_id(event.id)
    new_id = f"{event.id}{REPLAY_MARK}{token}"  # its own id: unique per entry
    if len(new_id) > MAX_ID_LENGTH:
        digest = stable_id("replay", event.id, token).rsplit("-", 1)[-1]
        new_id = f"{original}{REPLAY_MARK}{digest}"
        if len(new_id) > MAX_ID_LENGTH:
            new_id = stable_id("replay", event.id, token)
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
        cursor = since_to_id(since) if since is not None else "-"
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
    """Every original is re-published; a copy of an earlier replay only when nothing of its
    original was re-published before it in this replay (its original was trimmed from the
    stream): so each error is replayed once, copies of copies do not pile up, and a forged
    copy seen first never keeps the real error from being replayed.

    Raises: redis.RedisError."""
    published: set[str] = set()  # the originals this replay re-published so far
    while True:
        rows = client.xrange(stream, min=cursor, max=end, count=page)
        for _entry_id, fields in rows:
            try:
                event = ErrorEvent.decode(fields.get(b"event", b""), settings.max_text_bytes)
            except DecodeError:
                stats.bad_entries += 1  # the runtime dead-lettered it the first time
                continue
            original = original_id(event.id)
            if original != event.id and original in published:
                stats.earlier_copies += 1
                continue
            published.add(original)
            stats.events += 1
            emit(replay_copy(event, token, settings))
        if len(rows) < page:
            return
        last = rows[-1][0].decode() if isinstance(rows[-1][0], bytes) else rows[-1][0]
        cursor = "(" + last
        progress.tick(lambda: f"replayed {stats.events} events", stats.events)
