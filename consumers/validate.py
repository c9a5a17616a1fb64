"""validate: candidates -> verdicts (pre-flight, verification in a git worktree, judges)."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import STREAM_CANDIDATES, STREAM_VERDICTS
from pipeline.events import CandidateEvent, VerdictEvent
from pipeline.stage import StageContext
from pipeline.validate.validator import Validator
from storage.attempts import store_for

GROUP = "validate"
INPUT = STREAM_CANDIDATES
OUTPUT = STREAM_VERDICTS
BATCH_SIZE = 1
#: verification may take minutes; peers must not reclaim an entry still being verified
CLAIM_IDLE_MS = 15 * 60 * 1000


class ValidateHandler:
    decode = staticmethod(CandidateEvent.decode)

    def __init__(self, validator: Validator) -> None:
        self.validator = validator

    def handle(self, event: CandidateEvent) -> Sequence[VerdictEvent]:
        return [self.validator.validate(event)]


def build(ctx: StageContext) -> ValidateHandler:
    store = store_for(ctx.resources, ctx.settings)
    return ValidateHandler(Validator(ctx.settings, ctx.resources["redis"], store))
