"""The cyclic garbage collector, tuned for a stage worker.

A worker keeps large, long-lived caches (the fingerprint stage's analyses and templates, the
redaction memo, the lookup's memos) and allocates a few container objects per event. With
CPython's default thresholds (700, 10, 10) the collector runs every few events and its older
generations keep re-scanning those caches: 15-25% of the fingerprint stage's CPU per event in
``bench/stage_throughput.py`` (see README "Workers and scaling"). Collections of the
youngest generation after 5,000 net allocations instead of 700, and of the older ones 20 and
50 times rarer, keep that to a few percent; garbage without cycles is still freed at once by
reference counting, and cyclic garbage waits at most a few thousand allocations longer.

Applied whenever a :class:`~pipeline.runtime.worker.StageWorker` is made (``heal worker``,
``heal up``, the inline drain of ``heal run``; idempotent); never lowers a threshold the
embedding program set higher, and leaves a disabled collector disabled.
"""

from __future__ import annotations

import gc

#: (generation 0, 1, 2) thresholds for a worker process
WORKER_THRESHOLDS = (5_000, 20, 50)


def tune_for_worker() -> tuple[int, int, int]:
    """Raise the collector's thresholds to at least :data:`WORKER_THRESHOLDS`; returns the
    thresholds now in force."""
    current = gc.get_threshold()
    wanted = tuple(max(have, want) for have, want in zip(current, WORKER_THRESHOLDS,
                                                          strict=True))
    if wanted != current and current[0] != 0:  # threshold 0 disables collection: keep it
        gc.set_threshold(*wanted)
    first, second, third = gc.get_threshold()
    return first, second, third
