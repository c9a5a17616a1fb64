"""Tunable knobs of a stage worker, declared once (defaults suit a small deployment).

Every value can be overridden on the command line (``heal worker --help``) and a consumer
module may suggest its own ``BATCH_SIZE`` / ``CLAIM_IDLE_MS`` (slow stages such as
``validate`` want small batches and a long idle timeout).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from pipeline.errors import UsageError

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: the longest ``--claim-idle-ms`` accepted (a week). The heartbeat keeps the entries a live
#: worker holds fresh whatever its handler's time, so the timeout only says how soon the
#: entries of a dead worker are taken over: longer than this is a mistake (an entry stranded
#: for weeks); and a stopping worker hands entries back idle for longer than any peer's
#: timeout can be (``pipeline.runtime.reclaim.HAND_BACK_IDLE_MS``)
MAX_CLAIM_IDLE_MS = 7 * 86_400_000
#: the longest retry delay accepted (a day): a retry waits in the worker's memory, its
#: entry pending, so a longer wait only hides a stuck event (and an outage parks events
#: with the same delays)
MAX_BACKOFF_S = 86_400.0


@dataclass(frozen=True)
class Retention:
    """How outputs (and dead letters) are trimmed when written: approximate, so trimming is
    cheap (whole radix-tree nodes); ``maxlen`` keeps about N entries, ``minid`` drops entries
    older than ``max_age_s``; ``none`` keeps everything."""

    mode: str = "minid"
    maxlen: int = 0
    max_age_s: float = 7 * 86400.0

    @classmethod
    def parse(cls, spec: str) -> Retention:
        """Parse ``none``, ``maxlen:N`` or ``age:7d`` (units s, m, h, d).

        Raises:
            UsageError: the spec is none of those, with the accepted forms.
        """
        spec = spec.strip().lower()
        if spec == "none":
            return cls(mode="none")
        match = re.fullmatch(r"maxlen:(\d+)", spec)
        if match and int(match.group(1)) > 0:
            return cls(mode="maxlen", maxlen=int(match.group(1)))
        match = re.fullmatch(r"age:(\d+(?:\.\d+)?)([smhd])", spec)
        if match and float(match.group(1)) > 0:
            return cls(mode="minid", max_age_s=float(match.group(1)) * _AGE_UNITS[match.group(2)])
        raise UsageError(
            f"--retention {spec!r} is not understood; use 'none', 'maxlen:N' (N > 0) "
            "or 'age:DURATION' such as age:7d, age:12h, age:30m"
        )

    def trim_args(self, now: float | None = None) -> tuple[str, str]:
        """The (mode, threshold) pair the hand-off script applies to each XADD."""
        if self.mode == "maxlen":
            return "maxlen", str(self.maxlen)
        if self.mode == "minid":
            cutoff_ms = int(((time.time() if now is None else now) - self.max_age_s) * 1000)
            return "minid", f"{max(cutoff_ms, 0)}-0"
        return "none", ""


@dataclass(frozen=True)
class WorkerOptions:
    #: entries read per XREADGROUP
    batch_size: int = 100
    #: how long one XREADGROUP blocks waiting for entries (also bounds SIGTERM latency)
    block_ms: int = 1000
    #: deliveries (first delivery + retries + reclaims) before an event is dead-lettered
    max_deliveries: int = 5
    #: retry backoff: base * 2**(attempt-1), capped
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    #: entries pending (unacked) longer than this are taken over from other consumers;
    #: must exceed the slowest handler's time for one batch
    claim_idle_ms: int = 60_000
    #: how often to look for abandoned entries
    claim_interval_s: float = 5.0
    #: consumers idle this long with nothing pending are removed from the group
    forget_idle_ms: int = 3_600_000
    #: event-id dedupe window: an id is remembered one to two windows (0 disables markers)
    dedupe_ttl_s: int = 6 * 3600
    retention: Retention = Retention()
    #: dead-lettered raw bytes are capped at this size (the reason says how much was cut)
    dead_raw_limit: int = 1024 * 1024
    #: give up starting when Redis stays unreachable this long (StreamUnavailable)
    startup_timeout_s: float = 30.0
    #: reconnect backoff once running (retries forever)
    reconnect_base_s: float = 0.1
    reconnect_cap_s: float = 5.0
    #: under a backlog, read the next batch and commit the last one while handling this
    #: one (pipelined on one connection; see pipeline.runtime.overlap). Off: one round
    #: trip at a time, as before
    read_ahead: bool = True

    def validate(self) -> WorkerOptions:
        """Raises UsageError naming the option that is out of range and what it accepts."""
        checks = [
            ("--batch", self.batch_size >= 1, "must be 1 or more"),
            ("--block-ms", self.block_ms >= 1, "must be 1 or more"),
            ("--max-deliveries", self.max_deliveries >= 1, "must be 1 or more"),
            ("--claim-idle-ms", 1 <= self.claim_idle_ms <= MAX_CLAIM_IDLE_MS,
             f"must be 1 to {MAX_CLAIM_IDLE_MS} (a week)"),
            ("--dedupe-ttl", self.dedupe_ttl_s >= 0, "must be 0 (off) or more"),
            # NaN compares false with everything: each bound is written so that it fails
            ("--backoff-base", math.isfinite(self.backoff_base_s)
             and 0 < self.backoff_base_s <= MAX_BACKOFF_S,
             f"must be a number of seconds above 0, at most {MAX_BACKOFF_S:g}"),
            ("--backoff-cap", math.isfinite(self.backoff_cap_s)
             and 0 < self.backoff_cap_s <= MAX_BACKOFF_S,
             f"must be a number of seconds above 0, at most {MAX_BACKOFF_S:g}"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise UsageError(f"{name} is out of range ({rule})")
        if self.backoff_base_s > self.backoff_cap_s:
            raise UsageError(
                f"--backoff-base ({self.backoff_base_s:g} s) is more than --backoff-cap "
                f"({self.backoff_cap_s:g} s): the first retry delay cannot exceed the longest")
        return self
