"""The lifecycle stage's timer: time-based work that must happen even when no outcome arrives.

Every ``interval_s`` each lifecycle worker tries to take a Redis lease (``SET NX EX``); the one
that gets it runs the sweep, the others skip, so across any number of workers the sweep runs
once per interval. The sweep deprecates (fingerprint, fix) pairs unused for the policy's
period (90 days by default) and checks the time-based escalation rules ("unfixed after T") of
every unresolved fingerprint. A sweep that fails (an engine down) is logged and tried again at
the next tick; the lease then expires on its own.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from pipeline.errors import HealError

log = logging.getLogger("heal.lifecycle.sweep")

DEFAULT_INTERVAL_S = 300.0


@dataclass
class Sweeper:
    client: redis.Redis
    lease_key: str
    #: the work of one sweep (deprecation, time-based escalation)
    jobs: list[Callable[[], object]]
    interval_s: float = DEFAULT_INTERVAL_S
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: HEAL_STREAM_PREFIX (named in the message when the ACL refuses the lease)
    prefix: str = "heal"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def take_lease(self) -> bool:
        """True when this worker holds the sweep lease for the next interval."""
        try:
            return bool(self.client.set(self.lease_key, self.owner, nx=True,
                                        ex=max(1, int(self.interval_s))))
        except redis.exceptions.NoPermissionError as exc:  # the ACL: say what to grant
            from pipeline.runtime.connection import acl_refusal

            log.error("lifecycle sweep skipped: %s", acl_refusal(exc, self.prefix) or exc)
            return False
        except redis.RedisError as exc:
            log.warning("sweep lease unavailable: %s", exc)
            return False

    def run_once(self) -> bool:
        """Run the sweep if the lease is ours; returns whether it ran."""
        if not self.take_lease():
            return False
        for job in self.jobs:
            try:
                job()
            except (HealError, redis.RedisError, OSError) as exc:
                log.error("lifecycle sweep %s failed: %s", getattr(job, "__name__", job), exc)
            except Exception:  # noqa: BLE001 - a timer must outlive one bad sweep
                log.exception("lifecycle sweep %s failed", getattr(job, "__name__", job))
        return True

    def start(self) -> None:
        """Sweep now and then every ``interval_s`` in a daemon thread (idempotent; nothing
        once stopped)."""
        if self._thread is not None or self._stop.is_set():
            return

        def loop() -> None:
            while True:
                try:
                    self.run_once()
                except Exception:  # noqa: BLE001 - one bad tick must not end the timer
                    log.exception("lifecycle sweep tick failed; tried again in %ss",
                                  self.interval_s)
                if self._stop.wait(self.interval_s):
                    return

        self._thread = threading.Thread(target=loop, name="heal-lifecycle-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the timer; a sweep in progress may finish within ``timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
