"""``heal watch PATH ...``: follow log files (or agent transcripts) and publish their errors.

Each path gets a :class:`producers.follow.FileFollower` (rotation/truncation safe, resume from
the offset saved under ``$HEAL_HOME/watch/``). A new file is followed from its end (history is
for ``heal backfill``; the follower's ``start_note`` says so) unless ``from_start``, which also
re-reads a file whose offset was saved; a file that appears later is read from its start.
Events are published before the offset is saved, so a crash repeats (same ids, deduped by the
runtime) rather than loses. On stop (SIGTERM/SIGINT) the record still being assembled is not
published; its offset is saved so the next start reads it whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.events import ErrorEvent
from producers.follow import FileFollower, OffsetStore
from producers.logs import LineSink, LogRecords
from producers.transcript import TranscriptReader, TranscriptStats

Publish = Callable[[list[ErrorEvent]], object]


SinkFactory = Callable[[Callable[[], str]], LineSink]


def sink_for(path: str, transcript: bool, kind: str = "log",
             learn: Callable[[Any], None] | None = None,
             stats: TranscriptStats | None = None) -> SinkFactory:
    """``stats``: shared by every transcript reader of the path (one per file opened)."""
    def make(identity: Callable[[], str]) -> LineSink:
        if transcript and learn is not None:
            from producers.transcript_learning import LearningTranscriptReader

            return LearningTranscriptReader(path, identity, learn, stats)
        if transcript:
            return TranscriptReader(path, identity, stats)
        return LogRecords(path, identity, kind=kind)

    return make


class Watcher:
    """Polls several followers and publishes their events."""

    def __init__(
        self,
        paths: Sequence[str],
        home: Path,
        publish: Publish,
        from_start: bool = False,
        transcript: bool = False,
        idle_flush_s: float = 2.0,
        learn: Callable[[Any], None] | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        store = OffsetStore(home)
        #: per transcript path: what its readers skipped, cut and refused (``report``ed)
        self.transcript_stats: dict[str, TranscriptStats] = (
            {p: TranscriptStats() for p in paths} if transcript else {})
        self.followers = [
            FileFollower(p, store, sink_for(p, transcript, learn=learn,
                                            stats=self.transcript_stats.get(p)),
                         from_start, idle_flush_s)
            for p in paths
        ]
        self.publish = publish
        self.published = 0
        #: says what transcript lines were skipped, cut or refused since it last said so
        self.report = report
        self._reported: dict[str, TranscriptStats] = {}

    def poll_once(self) -> int:
        """One pass over every file; returns the events published.

        Raises:
            StreamUnavailable: publishing failed (offsets are not advanced past the events).
        """
        count = 0
        for follower in self.followers:
            events = follower.poll()
            if events:
                self.publish(events)
                count += len(events)
            follower.checkpoint()
            if follower.start_note and self.report is not None:
                self.report(follower.start_note)  # (said once: the first open sets it)
            follower.start_note = ""
        self.published += count
        self.report_transcripts()
        return count

    def report_transcripts(self) -> None:
        """Tell ``report`` what each transcript's readers skipped, cut or refused since the
        last report (nothing when nothing new)."""
        if self.report is None:
            return
        for path, stats in self.transcript_stats.items():
            before = self._reported.get(path, TranscriptStats())
            new = TranscriptStats(
                skipped=stats.skipped - before.skipped,
                too_long=stats.too_long - before.too_long, cut=stats.cut - before.cut,
                refused=stats.refused - before.refused,
                reasons=stats.reasons[len(before.reasons):])
            for problem in new.problems():
                self.report(f"{path}: {problem}" if not problem.startswith(" ") else problem)
            self._reported[path] = TranscriptStats(
                skipped=stats.skipped, too_long=stats.too_long, cut=stats.cut,
                refused=stats.refused, reasons=list(stats.reasons))

    def drain(self) -> int:
        """Everything currently in the files, closing the last record of each (``--once``):
        polls until every file is read to its end (a poll reads at most 16 MiB of a file)."""
        count = self.poll_once()
        while any(follower.behind() for follower in self.followers):
            count += self.poll_once()
        for follower in self.followers:
            events = follower.close()
            if events:
                self.publish(events)
                count += len(events)
                self.published += len(events)
            follower.checkpoint()
        self.report_transcripts()
        return count

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> int:
        """Poll until ``stop`` is set; returns the events published."""
        while not stop.is_set():
            self.poll_once()
            stop.wait(interval_s)
        for follower in self.followers:
            follower.checkpoint()
        return self.published
