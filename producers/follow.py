"""Follow one file: rotation and truncation safe, resuming from a saved offset.

- rotation (the path now names another inode): the old file is read to its end first, then
  the new one from offset 0;
- truncation (size below our position, or a different first line at the same inode): restart
  at offset 0;
- restart: the offset saved under ``$HEAL_HOME/watch/`` is used when the file still has the
  same device, inode and first line, is at least that long, and holds the same bytes just
  before the offset (a digest of the last :data:`WINDOW` bytes is saved with it: a new file
  that got the old one's inode back after ``gzip`` removed it, and starts with the same
  banner, is told apart by them); otherwise, if the file was rotated (or truncated, or
  replaced) while we were down, the rotated sibling is finished first: ``app.log.1`` (the
  same inode), else the newest ``app.log.*`` with the same first line and the same bytes
  before the offset (``app.log.1.gz`` compressed by logrotate, read decompressed; a
  ``copytruncate`` copy). When none is found, or it cannot be read to its end, a warning
  names the file and the bytes that were not read.

The saved offset is the start of the oldest record not yet published, so an incomplete
record (a traceback still being written) is read again after a restart rather than lost.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, cast

from pipeline.events import ErrorEvent
from pipeline.homedir import DIR_MODE, home_writes, open_private
from pipeline.safefile import FileRefused, open_regular
from producers.logs import LineSink, head_identity
from producers.records import LineSplitter

log = logging.getLogger("heal.watch")

READ_CHUNK = 1 << 20
MAX_READ_PER_POLL = 16 << 20
#: bytes before the saved offset whose digest is saved with it: enough to tell a new file
#: that starts with the same banner from the one that was followed
WINDOW = 4096


@dataclass
class FileState:
    dev: int
    inode: int
    offset: int
    line: int
    head: str
    #: SHA-256 of the WINDOW bytes before ``offset`` ("" in a state saved by an earlier
    #: version: only device, inode and first line are then compared)
    tail: str = ""


class OffsetStore:
    """One small JSON file per followed path under ``<home>/watch/`` (written atomically)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "watch"

    def _file(self, path: str) -> Path:
        return self.root / (hashlib.sha256(path.encode()).hexdigest()[:20] + ".json")

    def load(self, path: str) -> FileState | None:
        try:
            data = json.loads(self._file(path).read_text())
            state = FileState(**{k: data[k] for k in ("dev", "inode", "offset", "line", "head")})
            tail = data.get("tail", "")
            state.tail = tail if isinstance(tail, str) else ""
            return state
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no or unreadable state: start as if new

    def save(self, path: str, state: FileState) -> None:
        """Written 0600 in a 0700 folder (HEAL_HOME's files are private: the state names the
        files followed; it was 0644 under umask 022).

        Raises:
            StateHomeFull: no space left under HEAL_HOME (the message says what to do; the
                offset saved before stays).
            ConfigError: HEAL_HOME is read-only or not this user's to write.
        """
        target = self._file(path)
        tmp = target.with_suffix(".tmp")
        with home_writes(self.home, "saving the watch offsets", target):
            try:
                self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps({"path": path, **asdict(state)}))
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)  # (a half-written offset never stays behind)
                raise


def _first_line_identity(path: Path) -> str:
    """:func:`head_identity` of a file (decompressed for ``.gz``); "" when it cannot be
    read (not a regular file, unreadable, not gzip)."""
    try:
        with open_regular(path) as raw:
            if path.suffix != ".gz":
                return head_identity(raw.read(1024))
            with gzip.open(raw, "rb") as fh:
                return head_identity(fh.read(1024))
    except (OSError, EOFError, zlib.error, FileRefused):
        return ""


def _window_digest(window: bytes) -> str:
    return hashlib.sha256(window).hexdigest()


def _window_before(fd: int, offset: int) -> str:
    """Digest of the :data:`WINDOW` bytes before ``offset`` of an open regular file."""
    start = max(0, offset - WINDOW)
    return _window_digest(os.pread(fd, offset - start, start))


def _holds_window(path: Path, saved: FileState) -> bool:
    """``path`` (decompressed for ``.gz``) holds the saved bytes before the saved offset
    (True for a state saved without them)."""
    if not saved.tail:
        return True
    try:
        with ExitStack() as stack:
            fh: IO[bytes] = stack.enter_context(open_regular(path))
            if path.suffix == ".gz":
                fh = cast(IO[bytes], stack.enter_context(gzip.open(fh, "rb")))
            start = max(0, saved.offset - WINDOW)
            fh.seek(start)  # (a .gz is decompressed up to there)
            window = fh.read(saved.offset - start)
    except (OSError, EOFError, zlib.error, FileRefused):
        return False
    return len(window) == saved.offset - start and _window_digest(window) == saved.tail


class FileFollower:
    """Reads new complete lines of one path into a :class:`LineSink` on each :meth:`poll`."""

    def __init__(
        self,
        path: str,
        store: OffsetStore,
        sink_factory: Callable[[Callable[[], str]], LineSink],
        from_start: bool = False,
        idle_flush_s: float = 2.0,
    ) -> None:
        self.path = os.path.abspath(path)
        self.store = store
        self._sink_factory = sink_factory
        self.from_start = from_start
        self.idle_flush_s = idle_flush_s
        self._fh: IO[bytes] | None = None
        self._stat: os.stat_result | None = None
        self._head = ""
        self._pos = 0  # offset after the last complete line fed
        self._line = 0
        self._pending_line = 0  # lines before the oldest record still held by the sink
        #: splits what is read into lines, holding at most the sink's max_line_bytes of the
        #: line not yet complete
        self._lines = LineSplitter()
        self._last_data = time.monotonic()
        self._sink: LineSink | None = None
        self._first_open = True
        self._refused = ""  # why the path was last refused (said once, not at every poll)
        self._closed: FileState | None = None  # the resume state at close()
        #: what the first open did that the user may not expect (started at the end of a
        #: new file, or --from-start re-reading one from its start): said by heal watch
        self.start_note = ""

    # -- public ------------------------------------------------------------------------------

    def poll(self) -> list[ErrorEvent]:
        """New error events since the last poll (call :meth:`checkpoint` after publishing)."""
        events: list[ErrorEvent] = []
        if self._fh is None and not self._open(events):
            return events
        self._check_replaced(events)
        if self._fh is None:  # rotated to a path that cannot be opened now (a FIFO)
            return events
        got = self._read(events)
        idle = time.monotonic() - self._last_data > self.idle_flush_s
        if got:
            self._last_data = time.monotonic()
        elif idle and self._sink is not None:
            events.extend(self._sink.flush())  # nothing new for a while: the record is complete
        return events

    @property
    def refused(self) -> str:
        """Why the path could not be opened at the last try ("" when it was, or is missing):
        ``is a FIFO, not a regular file``, ``cannot be read: Permission denied``."""
        return self._refused

    def behind(self) -> bool:
        """The open file holds bytes not read yet (more than one poll reads)."""
        if self._fh is None:
            return False
        try:
            return self._fh.tell() < os.fstat(self._fh.fileno()).st_size
        except (OSError, ValueError):
            return False

    def checkpoint(self) -> None:
        """Save the resume offset (call once the events of :meth:`poll` are published)."""
        state = self._closed if self._fh is None else self._state()
        if state is not None:
            self.store.save(self.path, state)

    def close(self) -> list[ErrorEvent]:
        """Flush the record being assembled (shutdown); returns its events."""
        events = self._sink.flush() if self._sink is not None else []
        if self._fh is not None:
            self._closed = self._state()  # what checkpoint saves once the file is closed
            self._fh.close()
            self._fh = None
        return events

    # -- internals ---------------------------------------------------------------------------

    def _state(self) -> FileState | None:
        """Where to resume: the start of the record still held, else after the last line."""
        if self._stat is None or self._sink is None or self._fh is None:
            return None
        pending = self._sink.pending_offset
        offset = self._pos if pending is None else pending
        line = self._line if pending is None else self._pending_line
        try:
            tail = _window_before(self._fh.fileno(), offset)
        except (OSError, ValueError):
            tail = ""  # (truncated since): compared as before, by inode and first line
        return FileState(self._stat.st_dev, self._stat.st_ino, offset, line, self._head, tail)

    def _open(self, events: list[ErrorEvent], start_at_zero: bool = False) -> bool:
        try:
            fh = open_regular(self.path)  # (kept open across polls)
        except FileRefused as exc:  # a FIFO would block the watch: wait for a regular file
            if str(exc) != self._refused:
                self._refused = str(exc)
                if isinstance(exc.__cause__, OSError):  # permissions: what to change
                    log.warning("%s %s; give the user heal runs as read access to it (it is "
                                "read once it can be)", self.path, exc)
                else:
                    log.warning("%s %s; waiting for a regular file there", self.path, exc)
            self._first_open = False
            return False
        except OSError:
            self._first_open = False  # appears later: read it from the start
            return False
        self._refused = ""
        st = os.fstat(fh.fileno())
        head = head_identity(os.pread(fh.fileno(), 1024, 0))
        offset, line = 0, 0
        if not start_at_zero:
            offset, line = self._resume_point(fh.fileno(), st, head, events)
        self._attach(fh, st, head, offset, line)
        return True

    def _resume_point(self, fd: int, st: os.stat_result, head: str, events: list[ErrorEvent]
                      ) -> tuple[int, int]:
        saved = self.store.load(self.path)
        first = self._first_open
        self._first_open = False
        if saved is not None:
            if self._still_saved_file(fd, st, head, saved):
                if first and self.from_start and saved.offset > 0:
                    # asked for in so many words: the whole file again, whatever was read
                    self.start_note = (
                        f"{self.path}: --from-start: read from its start, not from the saved "
                        f"offset (byte {saved.offset}); records published before get the "
                        "same event ids, which the pipeline skips when it handled them "
                        "within its dedupe window (heal up --dedupe-ttl, 6 h by default)")
                    return 0, 0
                return saved.offset, saved.line
            # rotated, or replaced by a file that got the inode back, or truncated: the old
            # file's rest is in a sibling (a .gz, a copytruncate copy) or reported
            self._finish_rotated(saved, events)
            return 0, 0
        if first and not self.from_start:
            if st.st_size:
                self.start_note = (
                    f"{self.path}: started at its end, as tail -f does: the {st.st_size} "
                    "byte(s) already there were not read (a new file is followed from its "
                    "end); --from-start reads them, as heal backfill does")
            return st.st_size, 0  # tail -f: history is what `heal backfill` is for
        return 0, 0

    @staticmethod
    def _still_saved_file(fd: int, st: os.stat_result, head: str, saved: FileState) -> bool:
        """The open file is the one the state was saved for: the same device and inode
        (reused once ``gzip`` deletes a rotated file), first line, and bytes before the
        offset (a service's banner makes the first line the same in every file)."""
        if (saved.dev, saved.inode) != (st.st_dev, st.st_ino) or saved.head not in ("", head):
            return False
        if saved.offset > st.st_size:
            return False  # shorter than what was read: truncated or replaced
        try:
            return not saved.tail or _window_before(fd, saved.offset) == saved.tail
        except OSError:
            return False

    def _finish_rotated(self, saved: FileState, events: list[ErrorEvent]) -> None:
        """The file was rotated while we were down: read the rest of the old one from its
        rotated sibling, or warn that it was not read (which file, from which byte)."""
        found = self._rotated_sibling(saved)
        if found is None:
            log.warning(
                "%s was rotated or replaced while heal was not watching it, and no %s* "
                "beside it holds the old file (the same inode, or the same first line and "
                "bytes before byte %d, also as .gz): what the old file held after byte %d "
                "(line %d) was not read; give the rotated file to `heal backfill` if it was "
                "moved elsewhere",
                self.path, Path(self.path).name, saved.offset, saved.offset, saved.line)
            return
        sibling, st = found
        self._pos = saved.offset
        sink: LineSink | None = None
        try:
            with ExitStack() as stack:
                fh: IO[bytes] = stack.enter_context(open_regular(sibling))
                if sibling.suffix == ".gz":
                    fh = cast(IO[bytes], stack.enter_context(gzip.open(fh, "rb")))
                self._attach(fh, st, saved.head, saved.offset, saved.line)
                sink = self._sink
                self._read(events, limit=None)
        except (OSError, EOFError, zlib.error, FileRefused) as exc:
            log.warning(
                "%s (the rotated %s) could not be read to its end: %s; bytes %d to %d of "
                "it were read, what follows byte %d was not",
                sibling, Path(self.path).name, exc, saved.offset, self._pos, self._pos)
        finally:
            self._fh = None
        if sink is not None:  # the last record of the old file is complete
            events.extend(sink.flush())

    def _rotated_sibling(self, saved: FileState) -> tuple[Path, os.stat_result] | None:
        """The ``app.log*`` that holds the file as it was saved (``app.log.1``,
        ``app.log.1.gz``, ``app.log-20261122.gz``): the same inode (renamed),
        else the newest one with the same first line (compressed, or copied): a sibling the
        file was rotated to has the newest time of the rotated ones; it must hold the saved
        bytes before the saved offset (an older rotation with the same banner does not)."""
        folder = Path(self.path).parent
        siblings: list[tuple[Path, os.stat_result]] = []
        for sibling in folder.glob(glob.escape(Path(self.path).name) + "*"):
            if str(sibling) == self.path:
                continue
            try:
                st = sibling.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (saved.dev, saved.inode):
                return sibling, st
            siblings.append((sibling, st))
        if not saved.head:
            return None  # its first line was not complete: nothing to know it by
        siblings.sort(key=lambda found: found[1].st_mtime, reverse=True)
        for sibling, st in siblings:
            if _first_line_identity(sibling) == saved.head and _holds_window(sibling, saved):
                return sibling, st
        return None

    def _attach(self, fh: IO[bytes], st: os.stat_result, head: str, offset: int, line: int
                ) -> None:
        fh.seek(offset)
        self._fh, self._stat, self._head = fh, st, head
        self._pos, self._line = offset, line
        self._pending_line = line
        self._sink = self._sink_factory(self._identity)
        self._lines = LineSplitter(offset, self._sink.max_line_bytes)

    def _identity(self) -> str:
        """The file identity for event ids, read once the first line is complete."""
        if not self._head and self._fh is not None:
            self._head = head_identity(os.pread(self._fh.fileno(), 1024, 0))
        return self._head

    def _check_replaced(self, events: list[ErrorEvent]) -> None:
        assert self._fh is not None and self._stat is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return  # renamed away and not yet recreated: keep reading the old file
        if (st.st_dev, st.st_ino) != (self._stat.st_dev, self._stat.st_ino):
            self._read(events, limit=None)  # rotation: finish the old file first
            assert self._sink is not None
            events.extend(self._sink.flush())
            self._closed = self._state()  # saved if the new file cannot be opened now
            self._fh.close()
            self._fh = None
            self._open(events, start_at_zero=True)
            return
        head = head_identity(os.pread(self._fh.fileno(), 1024, 0))
        shrunk = st.st_size < self._pos + self._lines.held
        rewritten = bool(head and self._head) and head != self._head
        if shrunk or rewritten:  # copytruncate, or rewritten in place between two polls
            assert self._sink is not None
            events.extend(self._sink.flush())
            self._attach(self._fh, st, head, 0, 0)
        elif head and not self._head:
            self._head = head

    def _read(self, events: list[ErrorEvent], limit: int | None = MAX_READ_PER_POLL) -> bool:
        assert self._fh is not None and self._sink is not None
        got = False
        budget = limit
        while budget is None or budget > 0:
            if isinstance(self._fh, gzip.GzipFile):  # a rotated .gz: one block at a time,
                data = self._fh.read1(READ_CHUNK)  # so a cut file yields all it holds
            else:
                data = self._fh.read(READ_CHUNK)
            if not data:
                break
            got = True
            if budget is not None:
                budget -= len(data)
            self._feed(data, events)
        return got

    def _feed(self, data: bytes, events: list[ErrorEvent]) -> None:
        assert self._sink is not None
        for text, start, end, cut in self._lines.feed(data):
            self._line += 1
            events.extend(self._sink.feed(text, start, end, self._line, cut))
            self._pos = end
            pending = self._sink.pending_offset
            if pending is None:
                self._pending_line = self._line
            elif (before := self._sink.pending_line) is not None:
                # (a record of another source held open can be the oldest again)
                self._pending_line = before
            elif pending == start:  # this line opened the record now held
                self._pending_line = self._line - 1
