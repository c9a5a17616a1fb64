"""Heartbeats: which stages have a running worker right now (for ``heal run``/``heal status``).

Each worker process refreshes ``<prefix>:alive:<stage>:<consumer>`` (a key with a short
expiry) from a background thread, so a worker deep in a long handler still counts as alive
and a worker killed with SIGKILL stops counting within ``TTL_S``. A consumer's idle time in
the group is no substitute: it only moves when the worker reads. The same beat resets the
idle time of the entries the worker holds (batch in hand, retries waiting), so the claim
timeout only has to outlast a dead worker, not the slowest handler.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.runtime.connection import SURVIVABLE, glob_escape, stream_errors
from pipeline.runtime.worker import StageWorker

log = logging.getLogger("heal.runtime.heartbeat")

INTERVAL_S = 5.0
TTL_S = 15
#: a consumer without a heartbeat (its alive key expired: the worker is gone) and idle this
#: long is removed from its group by a running peer, when it holds no entries (twice the TTL:
#: a worker that just started reads before its first beat is seen)
DEAD_IDLE_MS = 2 * TTL_S * 1000

#: reset the idle time of every entry ``consumer`` holds (a worker in a read-ahead burst: the
#: ids of the batch Redis is delivering are not known to it until it reads the reply)
TOUCH_HELD_LUA = """
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
for s = 1, #rows, 500 do
  -- JUSTID: no delivery is counted (unpack() is bounded by the Lua stack: chunks of 500)
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for j = s, math.min(s + 499, #rows) do args[#args + 1] = rows[j][1] end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return #rows
"""


#: at most this many entries touched per worker and beat (a worker holds about two batches
#: and its retries)
_TOUCH_LIMIT = 100_000


def _key(settings: Settings, stage: str, consumer: str) -> str:
    return settings.key("alive", stage, consumer)


class Heartbeat:
    """Refreshes the alive keys of ``workers`` until :meth:`stop` (then removes them)."""

    def __init__(self, client: Any, settings: Settings, workers: Sequence[StageWorker]) -> None:
        self.client = client
        self.settings = settings
        self.workers = list(workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heal-heartbeat", daemon=True)
        self._touch_held = client.register_script(TOUCH_HELD_LUA)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def beat(self) -> None:
        """Refresh the alive keys, and reset the idle time of the entries each worker holds,
        so peers reclaim only from dead workers, however long a handler takes. A worker in a
        read-ahead burst holds entries it has not read the ids of yet: every entry pending
        in its name is touched then (all of them are ones it means to handle)."""
        pipe = self.client.pipeline(transaction=False)
        bursting = []
        for worker in self.workers:
            pipe.set(_key(self.settings, worker.stage, worker.consumer), "1", ex=TTL_S)
            if worker.bursting:
                bursting.append(worker)
                continue
            held = worker.held_ids()
            if held:
                pipe.xclaim(worker.stream, worker.group, worker.consumer, 0, held, justid=True)
        pipe.execute()
        for worker in bursting:  # not in the pipeline: the script loads itself if need be
            self._touch_held(keys=[worker.stream],
                             args=[worker.group, worker.consumer, _TOUCH_LIMIT])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except SURVIVABLE as exc:  # Redis down: the workers reconnect; so do we
                log.debug("heartbeat failed: %s", exc)
            self._stop.wait(INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(*SURVIVABLE):  # else they expire on their own
            self.client.delete(*[_key(self.settings, w.stage, w.consumer) for w in self.workers])


def live_stages(client: Any, settings: Settings) -> set[str]:
    """Stages with at least one running worker (``heal worker`` / ``heal up``).

    Raises:
        StreamUnavailable: Redis unreachable.
    """
    return set(live_workers(client, settings))


def live_workers(client: Any, settings: Settings) -> dict[str, set[str]]:
    """stage -> the consumer names of its running workers: those whose alive key was
    refreshed in the last ``TTL_S`` seconds (a stopped or killed worker stays registered in
    its consumer group, and its idle time there is reset when Redis restarts).

    Raises:
        StreamUnavailable: Redis unreachable.
    """
    prefix = settings.key("alive", "")
    with stream_errors("looking for running workers", settings.prefix):
        keys = list(client.scan_iter(match=f"{glob_escape(prefix)}*", count=1000))
    stages: dict[str, set[str]] = {}
    for key in keys:
        text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        stage, _, consumer = text[len(prefix):].partition(":")
        stages.setdefault(stage, set()).add(consumer)
    return stages
