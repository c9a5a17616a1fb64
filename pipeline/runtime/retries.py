"""This worker's schedule of events waiting for their retry backoff to elapse.

The entries stay pending in Redis while they wait, so if this worker stops or dies they
are not lost: a peer reclaims them once they are idle past the claim timeout.
"""

from __future__ import annotations

import heapq
import time


class RetrySchedule:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, entry_id: str, delay_s: float, now: float | None = None) -> None:
        due = (time.monotonic() if now is None else now) + delay_s
        heapq.heappush(self._heap, (due, entry_id))

    def pop_due(self, limit: int, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            due.append(heapq.heappop(self._heap)[1])
        return due

    def seconds_until_next(self, now: float | None = None) -> float | None:
        if not self._heap:
            return None
        now = time.monotonic() if now is None else now
        return max(self._heap[0][0] - now, 0.0)

    def pending_ids(self) -> set[str]:
        return {entry_id for _, entry_id in list(self._heap)}  # copy: read from other threads

    def reschedule(self, entry_ids: set[str], due: float, *, later_only: bool) -> None:
        """Move the waiting entries among ``entry_ids`` to ``due``: only those due earlier
        (``later_only``: defer them), or only those due later (hasten them)."""
        if not entry_ids or not self._heap:
            return
        moved = False
        for i, (when, entry_id) in enumerate(self._heap):
            if entry_id in entry_ids and (when < due if later_only else when > due):
                self._heap[i] = (due, entry_id)
                moved = True
        if moved:
            heapq.heapify(self._heap)

    def clear(self) -> list[str]:
        ids = [entry_id for _, entry_id in self._heap]
        self._heap.clear()
        return ids
