"""Stage ``lookup``: fingerprints -> candidates.

Tier 1 exact (fine fingerprint, seeds' detection rules, coarse fingerprint) from the local
SQLite cache in front of PostgreSQL, tier 2 semantic (pgvector), tier 3 causal; unmatched
errors go to the issue queue. PostgreSQL being down degrades to the cache and the outbox.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.config import STREAM_CANDIDATES, STREAM_FINGERPRINTS
from pipeline.errors import DatabaseUnavailable
from pipeline.events import CandidateEvent, FingerprintEvent
from pipeline.fingerprint.status import event_status
from pipeline.lookup.service import Lookup
from pipeline.stage import StageContext

if TYPE_CHECKING:
    from storage.db import Database

GROUP = "lookup"
INPUT = STREAM_FINGERPRINTS
OUTPUT = STREAM_CANDIDATES


class LookupHandler:
    """Turns one FingerprintEvent into one CandidateEvent (id ``f"{error_id}:lookup"``)."""

    def __init__(self, lookup: Lookup, *, owned: bool = False,
                 owned_db: Database | None = None) -> None:
        self.lookup = lookup
        #: this stage's build made ``lookup`` (and opened ``owned_db``, if any): ``finish``
        #: then releases them; a lookup given in the resources is its giver's to release
        self._owned = owned
        self._owned_db = owned_db
        self._released = False

    def decode(self, raw: bytes) -> FingerprintEvent:
        return FingerprintEvent.decode(raw)

    def prepare(self, events: Sequence[FingerprintEvent]) -> None:
        """Before a batch is handled: what its lookups would ask PostgreSQL one event at a
        time is read once (see ``Lookup.prepare``)."""
        self.lookup.prepare([(e.error.text, e.fine, e.coarse) for e in events])

    def before_handoff(self) -> None:
        """Before the runtime hands off (acknowledges) a batch: its occurrences, unmatched
        errors, learned fingerprints and rankings go from memory to the SQLite outbox, in
        one transaction, so a worker killed after the acknowledgement loses none of them
        (``pipeline.stage.DurableBeforeHandoff``).

        Raises:
            sqlite3.Error: the runtime then parks the batch (nothing is acknowledged)."""
        self.lookup.flush()

    def finish(self) -> None:
        """End of an inline drain (`heal run`) or of a worker's run: push buffered writes
        (occurrences, unmatched errors) to PostgreSQL now, so `heal issues list` and `heal
        explain` see this run's error before the process exits (kept in the on-disk outbox
        when PostgreSQL is down)."""
        if self._released:
            return  # (idempotent: what was closed stays closed)
        if not self._owned:
            self.lookup.sync()
            return
        self._released = True
        # what this build started and opened ends with it, so a long-lived process that
        # drains again and again (the Dagster adapter, the Python API) keeps no sync thread,
        # exit hook, pool or open cache file per drain: stop the sync thread, sync one last
        # time, close (the local cache's SQLite file is the build's own, see build_lookup)
        self.lookup.close()
        atexit.unregister(self.lookup.flush)
        self.lookup.cache.close()
        if self._owned_db is not None:
            self._owned_db.close()

    def handle(self, event: FingerprintEvent) -> Sequence[CandidateEvent]:
        result = self.lookup.lookup(
            error_id=event.error_id,
            text=event.error.text,
            fine=event.fine,
            coarse=event.coarse,
            headline=str(event.extraction.get("normalized") or event.template),
            fp_params=event.params,
            ended=event_status(event.error),
        )
        return [
            CandidateEvent(
                id=f"{event.error_id}:{GROUP}",
                error_id=event.error_id,
                error=event.error,
                fine=event.fine,
                coarse=event.coarse,
                params=result.params,
                match=result.match_dict(),
                fix=result.fix,
            )
        ]


def build(ctx: StageContext) -> LookupHandler:
    lookup = ctx.resources.get("lookup")
    if lookup is None:
        from pipeline.lookup.setup import build_lookup
        from storage.engines import open_database

        db = ctx.resources.get("db")
        opened = None
        if db is None:
            try:
                db = opened = open_database(ctx.settings)
            except DatabaseUnavailable:
                db = None  # offline: answer from the local cache, writes wait in the outbox
        lookup = build_lookup(ctx.settings, db)
        lookup.start_background_sync()
        # buffered writes reach the on-disk outbox even on a quick exit (synced next start)
        atexit.register(lookup.flush)
        return LookupHandler(lookup, owned=True, owned_db=opened)
    return LookupHandler(lookup)
