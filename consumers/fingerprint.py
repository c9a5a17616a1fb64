"""Stage ``fingerprint``: errors -> fingerprints.

Extracts the error, normalizes it, computes the versioned coarse and fine fingerprints and
mines the template against the shared Redis template store (when the runtime provides a
``redis`` resource), so every worker of this group sees the same templates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from pipeline.config import STREAM_ERRORS, STREAM_FINGERPRINTS
from pipeline.events import SCHEMA_VERSION, ErrorEvent, FingerprintEvent, utc_now
from pipeline.fingerprint import ALGORITHM_VERSION, Fingerprint, Fingerprinter
from pipeline.fingerprint.fingerprinter import ANALYSIS_CACHE
from pipeline.fingerprint.status import event_status
from pipeline.fingerprint.store import MemoryTemplateStore, RedisTemplateStore, TemplateStore
from pipeline.stage import StageContext

GROUP = "fingerprint"
INPUT = STREAM_ERRORS
OUTPUT = STREAM_FINGERPRINTS
#: cheap per event, so larger batches than the runtime's default: the template store's round
#: trip and the hand-off are paid per batch (``bench/stage_throughput.py`` per batch size);
#: XREADGROUP returns what is there, so a quiet stream does not wait for a full batch
BATCH_SIZE = 500


class FingerprintHandler:
    """Turns one ErrorEvent into one FingerprintEvent (id ``f"{error_id}:fingerprint"``)."""

    def __init__(self, fingerprinter: Fingerprinter, max_text_bytes: int,
                 probe: Sequence[tuple[str, str]] = ()) -> None:
        self.fingerprinter = fingerprinter
        self.max_text_bytes = max_text_bytes
        #: (what, key) of the shared store's keys, tried by the worker at start
        self._probe = list(probe)
        #: id(fingerprint) -> (that fingerprint, its published extraction): a repeated text
        #: gets the same Fingerprint object back, so its dict is built once (the entry holds
        #: the fingerprint, so its id is not reused while cached)
        self._published: OrderedDict[int, tuple[Fingerprint, dict[str, Any]]] = OrderedDict()
        #: the prepared batch's time stamp, its events (held, so no other object can take
        #: one of their ids meanwhile) and their ids: one tuple, replaced whole
        self._stamped: tuple[str, Sequence[ErrorEvent], frozenset[int]] = ("", (), frozenset())

    def probe_keys(self) -> list[tuple[str, str]]:
        """The template store's keys (see ``pipeline.stage.StartupProbe``)."""
        return self._probe

    def decode(self, raw: bytes) -> ErrorEvent:
        return ErrorEvent.decode(raw, self.max_text_bytes)

    def prepare(self, events: Sequence[ErrorEvent]) -> None:
        """Mine the batch's templates in one round trip to the shared store, and read the
        clock once for the batch: an output's ``ts`` is when the stage began its batch."""
        self._stamped = ("", (), frozenset())
        self.fingerprinter.prepare([(e.text, e.repo.path, event_status(e)) for e in events])
        self._stamped = (utc_now(), events, frozenset(map(id, events)))

    def handle(self, event: ErrorEvent) -> Sequence[FingerprintEvent]:
        """Raises: StreamUnavailable when the shared template store is unreachable (the
        runtime retries)."""
        return self.handle_batch((event,))[0]

    def handle_batch(self, events: Sequence[ErrorEvent]) -> list[Sequence[FingerprintEvent]]:
        """``handle`` of each event (the runtime's batch path, see ``BatchHandler``; nothing
        here but the caches changes, so a failed batch is safely handled again one by one).

        Raises: StreamUnavailable, as ``handle``."""
        fingerprint, extraction_of = self.fingerprinter.fingerprint, self._extraction
        stamp, _, stamped = self._stamped
        out: list[Sequence[FingerprintEvent]] = []
        for event in events:
            # (as ``fingerprint_event``: text, repository and how the command ended)
            fp = fingerprint(event.text, event.repo.path, event_status(event))
            out.append([FingerprintEvent.assemble(  # (every field, in order: no setattr)
                id=f"{event.id}:{GROUP}",
                error_id=event.id,
                error=event,
                v=SCHEMA_VERSION,
                ts=stamp if id(event) in stamped else utc_now(),
                fine=fp.fine,
                coarse=fp.coarse,
                version=fp.version,
                template=fp.template,
                params=fp.params,
                extraction=extraction_of(fp),
            )])
        return out

    def _extraction(self, fp: Fingerprint) -> dict[str, Any]:
        """The ``extraction`` object published for ``fp`` (shared by every event of one
        text: outputs are encoded, never mutated)."""
        cached = self._published.get(id(fp))
        if cached is not None and cached[0] is fp:
            try:  # noqa: SIM105 - a suppress() context per event is measurable here
                self._published.move_to_end(id(fp))
            except KeyError:  # dropped by another thread meanwhile
                pass
            return cached[1]
        extraction: dict[str, Any] = fp.extraction.to_dict() if fp.extraction else {}
        extraction["normalized"] = fp.normalized
        extraction["hints"] = list(fp.hints)
        self._published[id(fp)] = (fp, extraction)
        if len(self._published) > PUBLISHED_CACHE:
            with suppress(KeyError):
                self._published.popitem(last=False)
        return extraction


#: published extractions kept (least recently used dropped first)
PUBLISHED_CACHE = ANALYSIS_CACHE


def template_store(ctx: StageContext) -> TemplateStore:
    """The Redis-backed store when the runtime shares a client, else an in-memory one."""
    client = ctx.resources.get("redis")
    if client is None:
        return MemoryTemplateStore()
    return RedisTemplateStore(client, ctx.settings.key("fp", ALGORITHM_VERSION),
                              ctx.settings.prefix)


def build(ctx: StageContext) -> FingerprintHandler:
    store = template_store(ctx)
    probe = store.probe_keys() if isinstance(store, RedisTemplateStore) else []
    return FingerprintHandler(Fingerprinter(store), ctx.settings.max_text_bytes, probe)
