"""The RQ worker class heal's verification workers run (``rq worker -w ...``).

An ``rq worker`` whose Redis is gone retries the connection forever. The process that started
it (:class:`pipeline.validate.rqjobs.CheckQueue`) stops it on exit; one that was killed
(SIGKILL, the OOM killer) cannot, and its workers were left behind for good once their Redis
(an embedded one, stopped with its last lease) never came back. This worker notices: when
Redis cannot be reached and the process that started it has gone (it was re-parented), it
exits. While its Redis answers, an orphan still serves jobs and exits after its idle period,
like any worker.

Imported by the worker process only: keep it light (rq and redis, nothing of heal's).
"""

from __future__ import annotations

import os
from typing import Any

import redis
from rq.worker import SimpleWorker

#: set by CheckQueue: the pid of the process that started the worker
PARENT_ENV = "HEAL_VERIFY_PARENT_PID"


def orphaned(parent: int | None = None) -> bool:
    """True when the process that started this one is no longer its parent."""
    if parent is None:
        try:
            parent = int(os.environ.get(PARENT_ENV, ""))
        except ValueError:
            return False  # started by hand: nobody to outlive
    return os.getppid() != parent


class VerifyWorker(SimpleWorker):
    """A SimpleWorker that exits when its Redis is gone and nobody is left to stop it."""

    def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().heartbeat(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            if orphaned():
                self.log.warning("Worker %s: Redis is gone and so is the process that "
                                 "started it: exiting", self.name)
                os._exit(0)  # no clean-up is possible without Redis
            raise
