"""Feeds history through fingerprint -> lookup -> validate inside a :class:`Sandbox`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import UsageError
from pipeline.events import ErrorEvent
from pipeline.model import Mode
from pipeline.progress import ProgressReporter
from pipeline.shadow.report import ShadowReport, build_report
from pipeline.shadow.sandbox import Sandbox

SHADOW_STAGES = ("fingerprint", "lookup", "validate")
SHADOW_MODES = (Mode.SUGGEST.value, Mode.AUTO_SAFE.value, Mode.AUTO.value)
BATCH = 50


Source = Callable[[Callable[[ErrorEvent], None]], None]


def run_shadow(base: Settings, client: Any, source: Source | Iterable[ErrorEvent], mode: str,
               repo: Path | None = None, out: IO[str] | None = None) -> ShadowReport:
    """Run the events of ``source`` through fingerprint -> lookup -> validate in isolation
    under ``mode``. ``source`` is an iterable of events or a function that calls its argument
    once per event (so a long history streams through in batches, never all in memory).

    Raises:
        UsageError: an unknown mode, or no database could be set aside for the run.
        StreamUnavailable / EngineError: the engines cannot be reached.
    """
    from pipeline.runtime import drain_inline

    if mode not in SHADOW_MODES:
        raise UsageError(f"--mode {mode!r}: shadow mode evaluates one of "
                         + ", ".join(SHADOW_MODES))
    box = Sandbox(base)
    try:
        db = box.open_database()
        feeder = _Feeder(box, client, mode, repo, {"db": db}, drain_inline, out or sys.stderr)
        try:
            if callable(source):
                source(feeder.feed)
            else:
                for event in source:
                    feeder.feed(event)
            feeder.flush()
        finally:
            feeder.progress.close()
            db.close()
        return build_report(mode, client, box.settings, feeder.originals, box.notes)
    finally:
        box.close(client)


class _Feeder:
    """Publishes redirected events on the shadow errors stream and drains every ``BATCH``."""

    def __init__(self, box: Sandbox, client: Any, mode: str, repo: Path | None,
                 resources: dict[str, Any], drain: Any, out: IO[str]) -> None:
        self.box, self.client, self.mode, self.repo = box, client, mode, repo
        self.resources, self.drain, self.out = resources, drain, out
        self.stream = box.settings.stream(STREAM_ERRORS)
        self.originals: dict[str, str] = {}
        self.seen: set[str] = set()
        self.pending = 0
        #: a bar with the rate on a terminal, a line per batch elsewhere
        self.progress = ProgressReporter("heal shadow", "events", out, every_s=0.0)

    def feed(self, event: ErrorEvent) -> None:
        if event.id in self.seen:
            return  # the same record twice (e.g. a rotated copy): the runtime would dedupe
        self.seen.add(event.id)
        shadow = self.box.redirect(event, self.mode, self.repo)
        self.originals[shadow.id] = str(event.tags.get("replay_of") or event.id)
        self.client.xadd(self.stream, {"event": shadow.encode()})
        self.pending += 1
        if self.pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.pending = 0
        self.drain(self.box.settings, self.client, stages=list(SHADOW_STAGES),
                   ctx_resources=self.resources)
        self.progress.update(len(self.originals),
                             message=lambda: f"{len(self.originals)} event(s) through the "
                                             "pipeline")
