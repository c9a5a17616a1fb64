"""apply: verdicts -> outcomes (branch, apply, re-run, revert on failure; never twice)."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.apply.applier import Applier
from pipeline.config import STREAM_OUTCOMES, STREAM_VERDICTS
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.stage import StageContext
from storage.attempts import store_for

GROUP = "apply"
INPUT = STREAM_VERDICTS
OUTPUT = STREAM_OUTCOMES
BATCH_SIZE = 1
CLAIM_IDLE_MS = 15 * 60 * 1000


class ApplyHandler:
    decode = staticmethod(VerdictEvent.decode)

    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    def handle(self, event: VerdictEvent) -> Sequence[OutcomeEvent]:
        return [self.applier.handle(event)]

    def tick(self) -> None:
        """Called by the worker every claim interval: deferred automatic fixes that are due
        go back on the verdicts stream."""
        self.applier.release_deferred()


def build(ctx: StageContext) -> ApplyHandler:
    store = store_for(ctx.resources, ctx.settings)
    return ApplyHandler(Applier(ctx.settings, ctx.resources["redis"], store,
                                consumer=ctx.consumer))
