"""``heal watch PATH ...``: follow log files (or agent transcripts) and publish their errors.

Each path gets a :class:`producers.follow.FileFollower` (rotation/truncation safe, resume from
the offset saved under ``$HEAL_HOME/watch/``). A new file is followed from its end (history is
for ``heal backfill``) unless ``from_start``; a file that appears later is read from its start.
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
from producers.transcript import TranscriptReader

Publish = Callable[[list[ErrorEvent]], object]


SinkFactory = Callable[[Callable[[], str]], LineSink]


def sink_for(path: str, transcript: bool, kind: str = "log",
             learn: Callable[[Any], None] | None = None) -> SinkFactory:
    def make(identity: Callable[[], str]) -> LineSink:
        if transcript and learn is not None:
            from producers.transcript_learning import LearningTranscriptReader

            return LearningTranscriptReader(path, identity, learn)
        if transcript:
            return TranscriptReader(path, identity)
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
    ) -> None:
        store = OffsetStore(home)
        self.followers = [
            FileFollower(p, store, sink_for(p, transcript, learn=learn), from_start,
                         idle_flush_s)
            for p in paths
        ]
        self.publish = publish
        self.published = 0

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
        self.published += count
        return count

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
        return count

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> int:
        """Poll until ``stop`` is set; returns the events published."""
        while not stop.is_set():
            self.poll_once()
            stop.wait(interval_s)
        for follower in self.followers:
            follower.checkpoint()
        return self.published
