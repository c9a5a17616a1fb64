"""A worker that serves one stage on several partitions (``HEAL_PARTITIONS`` > 1).

One StageWorker per partition (each with that partition's view of the settings, so its
input, output and dead-letter streams and its dedupe markers carry the partition's hash
tag), sharing one handler, stepped in turn by ONE thread: handlers need not be thread-safe,
and the process does the same CPU work as one unpartitioned worker. Redis failures are
handled by each partition's worker exactly as unpartitioned (back off, reconnect, resume).

When every partition is idle, on a plain Redis the worker waits with ONE blocking ``XREAD``
naming every partition's input stream (``$``: only what arrives from then on; it reads no
entry for the group, consumes nothing), up to ``block_ms``, then steps every partition again:
an idle pass costs one non-blocking read per partition per ``block_ms``, as one blocking read
does unpartitioned. An entry added between the non-blocking reads and the wait is seen at
the next pass, within ``block_ms``, the bound the rotation below keeps too. On a Redis
Cluster one command cannot name keys of several slots (each partition is its own slot), so
there the worker blocks on each partition in turn for a slice of ``block_ms``: an event waits
at most about ``block_ms`` whatever partition it lands in, at the price of one read per
partition per slice (idle CPU grows with the partition count: see the README's sizing notes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis

from pipeline.runtime.connection import SURVIVABLE
from pipeline.runtime.worker import StageWorker

log = logging.getLogger("heal.runtime")


class PartitionedWorker:
    """Duck-types the part of :class:`StageWorker` the runners use (run, stop, finish,
    stage, client, settings); ``parts`` are the per-partition workers."""

    def __init__(self, parts: Sequence[StageWorker]) -> None:
        if not parts:
            raise ValueError("a partitioned worker needs at least one partition")
        self.parts = list(parts)
        first = self.parts[0]
        self.stage, self.client, self.settings = first.stage, first.client, first.settings
        self.stop_event = threading.Event()

    @property
    def processed(self) -> int:
        return sum(p.processed for p in self.parts)

    def stop(self) -> None:
        self.stop_event.set()
        for part in self.parts:
            part.stop()

    def finish(self) -> None:
        """The stage's own end of work, once (the partitions share one handler)."""
        self.parts[0].finish()

    def start(self) -> None:
        """Raises: StreamUnavailable (Redis unreachable at start)."""
        for part in self.parts:
            part.start()

    def run(self) -> int:
        """Run until :meth:`stop`; returns the number of entries processed.

        Raises:
            StreamUnavailable: Redis unreachable at start.
        """
        self.start()
        log.info("stage %s: consumer %s reading %d partitions", self.stage,
                 self.parts[0].consumer, len(self.parts))
        attempts = [0] * len(self.parts)
        block_ms = self.parts[0].options.block_ms
        slice_ms = max(block_ms // len(self.parts), 10)
        one_wait = _single_node(self.client)
        turn = 0
        while not self.stop_event.is_set():
            handled = sum(self._step(i, None, attempts) for i in range(len(self.parts)))
            if handled or self.stop_event.is_set():
                continue
            if one_wait and not any(attempts) and self._wait_any(block_ms):
                continue
            self._step(turn, slice_ms, attempts)
            turn = (turn + 1) % len(self.parts)
        return self.processed

    def _wait_any(self, block_ms: int) -> bool:
        """Block until an entry is added to any partition's input stream, or ``block_ms``
        passes (see the module docstring). False when the wait failed: the caller falls
        back to one partition's blocking read, whose failure handling applies."""
        streams = {part.stream: "$" for part in self.parts}
        try:
            self.client.xread(streams, count=1, block=max(block_ms, 1))
        except SURVIVABLE as exc:
            log.debug("stage %s: waiting on every partition failed (%s); reading one",
                      self.stage, exc)
            return False
        return True

    def _step(self, index: int, block_ms: int | None, attempts: list[int]) -> int:
        part = self.parts[index]
        try:
            count = part.step(block_ms)
            attempts[index] = 0
            return count
        except SURVIVABLE as exc:
            attempts[index] += 1
            part.on_redis_failure(exc, attempts[index])
            return 0


def _single_node(client: Any) -> bool:
    """True for a client of one Redis server (one command may name every partition's
    stream); False for a cluster client (each partition is its own slot)."""
    return isinstance(client, redis.Redis)


def flatten(workers: Sequence[Any]) -> list[StageWorker]:
    """Every StageWorker, partitions unfolded (for heartbeats)."""
    out: list[StageWorker] = []
    for worker in workers:
        out.extend(worker.parts if isinstance(worker, PartitionedWorker) else [worker])
    return out
