"""Stage ``fingerprint``: errors -> fingerprints.

Extracts the error, normalizes it, computes the versioned coarse and fine fingerprints and
mines the template against the shared Redis template store (when the runtime provides a
``redis`` resource), so every worker of this group sees the same templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.config import STREAM_ERRORS, STREAM_FINGERPRINTS
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.fingerprint import ALGORITHM_VERSION, Fingerprinter
from pipeline.fingerprint.store import MemoryTemplateStore, RedisTemplateStore, TemplateStore
from pipeline.stage import StageContext

GROUP = "fingerprint"
INPUT = STREAM_ERRORS
OUTPUT = STREAM_FINGERPRINTS


class FingerprintHandler:
    """Turns one ErrorEvent into one FingerprintEvent (id ``f"{error_id}:fingerprint"``)."""

    def __init__(self, fingerprinter: Fingerprinter, max_text_bytes: int) -> None:
        self.fingerprinter = fingerprinter
        self.max_text_bytes = max_text_bytes

    def decode(self, raw: bytes) -> ErrorEvent:
        return ErrorEvent.decode(raw, self.max_text_bytes)

    def prepare(self, events: Sequence[ErrorEvent]) -> None:
        """Mine the batch's templates in one round trip to the shared store."""
        self.fingerprinter.prepare([(e.text, e.repo.path) for e in events])

    def handle(self, event: ErrorEvent) -> Sequence[FingerprintEvent]:
        """Raises: StreamUnavailable when the shared template store is unreachable (the
        runtime retries)."""
        fp = self.fingerprinter.fingerprint(event.text, repo=event.repo.path)
        extraction: dict[str, Any] = fp.extraction.to_dict() if fp.extraction else {}
        extraction["normalized"] = fp.normalized
        extraction["hints"] = list(fp.hints)
        return [
            FingerprintEvent(
                id=f"{event.id}:{GROUP}",
                error_id=event.id,
                error=event,
                fine=fp.fine,
                coarse=fp.coarse,
                version=fp.version,
                template=fp.template,
                params=fp.params,
                extraction=extraction,
            )
        ]


def template_store(ctx: StageContext) -> TemplateStore:
    """The Redis-backed store when the runtime shares a client, else an in-memory one."""
    client = ctx.resources.get("redis")
    if client is None:
        return MemoryTemplateStore()
    return RedisTemplateStore(client, ctx.settings.key("fp", ALGORITHM_VERSION))


def build(ctx: StageContext) -> FingerprintHandler:
    store = template_store(ctx)
    return FingerprintHandler(Fingerprinter(store), ctx.settings.max_text_bytes)
