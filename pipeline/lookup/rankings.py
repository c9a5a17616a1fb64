"""Where the lookup's Thompson ranking reads posteriors and records its choice.

A pattern with alternatives is ranked per event (``pipeline.lifecycle.ranking``): it needs the
fingerprint's posteriors from ``fix_stats`` and records the ranking in ``fix_rankings``. Asked
one event at a time that was two PostgreSQL round trips per such event, most of the lookup
stage's time on known fingerprints. Here:

- **Posteriors read once per batch.** :meth:`BatchPosteriors.prefetch` sends one query for
  those of every fingerprint of a batch that tier 1 will answer with such a pattern before the
  batch is handled, without waiting: the events before the first ranked one are handled while
  PostgreSQL answers, and the rankings of that batch use the rows. They are the rows as read
  at the start of the batch (milliseconds before the event), dropped at the next prefetch or
  after ``PREFETCH_TTL_S``: outcomes recorded meanwhile count from the next batch on. A
  fingerprint not prefetched is read on its own, as before.
- **Rankings recorded through the outbox**, like occurrences: :class:`OutboxRankingStore`
  queues one ``ranking`` op (id from the error id, so a redelivered event records once) that
  reaches ``fix_rankings`` with the next sync (every 2 s, and at the end of an inline drain):
  a ranking no longer waits for PostgreSQL, nor is it lost when PostgreSQL is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.lifecycle.posterior import Posterior
from pipeline.lifecycle.ranking import Draw
from storage.db import Pending
from storage.lifecycle import LifecycleStore

#: prefetched posteriors are used at most this long after they were read (a batch is handled
#: in well under a second; a handler asked long after its prepare reads them again)
PREFETCH_TTL_S = 2.0

Op = tuple[str, str, dict[str, Any]]


class BatchPosteriors:
    """The posteriors read for the current batch (one per Lookup; not thread-safe)."""

    def __init__(self) -> None:
        self._pending: Pending[dict[str, dict[str, Posterior]]] | None = None
        self._wanted: frozenset[str] = frozenset()
        self._read: dict[str, dict[str, Posterior]] | None = None
        self._at = -1e9

    def prefetch(self, store: LifecycleStore, fingerprints: list[str]) -> None:
        """Send the query for the posteriors of ``fingerprints`` and return at once (the
        batch's first events are handled while PostgreSQL answers); forget the previous
        batch's.

        Raises: DatabaseUnavailable (the query could not be sent; nothing is kept)."""
        self.clear()
        if fingerprints:
            self._pending = store.start_posteriors_of(fingerprints)
            self._wanted = frozenset(fingerprints)
            self._at = time.monotonic()

    def clear(self) -> None:
        self._pending, self._read, self._wanted = None, None, frozenset()

    def get(self, fingerprint: str, fix_ids: list[str]) -> dict[str, Posterior] | None:
        """The posteriors of ``fix_ids`` as read for this batch (waiting for the answer the
        first time), or None: not prefetched, or prefetched too long ago (the caller reads
        them itself).

        Raises: DatabaseUnavailable / QueryError (the batch's read failed; it is dropped, so
        the next event reads its own)."""
        if fingerprint not in self._wanted or time.monotonic() - self._at >= PREFETCH_TTL_S:
            return None
        read, pending = self._read, self._pending
        if read is None:
            if pending is None:  # cleared meanwhile (a new batch): read for the event
                return None
            try:
                read = self._read = pending.result()
            except BaseException:
                self.clear()
                raise
        known = read.get(fingerprint, {})
        return {fix_id: known.get(fix_id, Posterior()) for fix_id in fix_ids}


class OutboxRankingStore:
    """The ``RankingStore`` of one lookup: posteriors from the batch's prefetch (else from
    PostgreSQL), the ranking queued as an outbox op of ``error_id``."""

    def __init__(self, store: LifecycleStore, batch: BatchPosteriors, error_id: str,
                 queue: Callable[[Op], None]) -> None:
        self.store = store
        self.batch = batch
        self.error_id = error_id
        self.queue = queue

    def posteriors(self, fingerprint: str, fix_ids: list[str]) -> dict[str, Posterior]:
        """Raises: DatabaseUnavailable / QueryError (not prefetched and unreadable)."""
        found = self.batch.get(fingerprint, fix_ids)
        return found if found is not None else self.store.posteriors(fingerprint, fix_ids)

    def record_ranking(self, fingerprint: str, draws: list[Draw]) -> None:
        self.queue((f"rank:{self.error_id}", "ranking", {
            "fingerprint": fingerprint, "chosen": draws[0].fix_id if draws else "",
            "draws": [{"fix_id": d.fix_id, "draw": d.draw, "alpha": d.alpha, "beta": d.beta}
                      for d in draws],
            "ts": time.time()}))
