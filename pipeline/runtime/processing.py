"""Turns one delivery into one decision: hand off, retry later, or dead-letter.

Nothing here talks to Redis; the worker commits the decisions of a whole batch at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import (
    DecodeError,
    EngineError,
    HealError,
    PermanentError,
    Retry,
)
from pipeline.runtime.backoff import backoff_delay
from pipeline.runtime.handoff import Handoff
from pipeline.runtime.hooks import Delivery, HookChain
from pipeline.runtime.options import WorkerOptions
from pipeline.stage import StageHandler, output_encoder

log = logging.getLogger("heal.runtime")


@dataclass(frozen=True)
class DeadLetter:
    delivery: Delivery
    reason: str


@dataclass(frozen=True)
class RetryLater:
    delivery: Delivery
    delay_s: float
    reason: str
    #: an engine outage (PostgreSQL or Redis down): the event is parked, not failing, so
    #: this delivery does not count towards ``max_deliveries`` (issue 11, item 11)
    outage: bool = False
    #: counted towards ``max_deliveries`` (False for an outage, and for a handler's
    #: ``Retry(counted=False)``: a wait that is not the event's fault)
    counted: bool = True


Decision = Handoff | DeadLetter | RetryLater


#: each output encodes itself (a C-level call, cheaper than a Python wrapper per output)
def _dedupe_id(event: Any) -> str | None:
    """The id a hand-off is deduplicated on: the event's own, when it has a string one."""
    event_id = getattr(event, "id", None)
    return event_id if type(event_id) is str else None


def _stops_stage(exc: BaseException) -> bool:
    """``exc`` is a fault only the operator mends (``HealError.stops_stage``)."""
    return isinstance(exc, HealError) and exc.stops_stage


#: the longest wait of a parked event: one probe per this many seconds at most while an
#: engine is down (the worker defers the other parked events behind it), so an engine that
#: is back is noticed within this time however long the outage was
PARK_CAP_S = 10.0
#: while an outage lasts, it is logged again this often (the first park and the end are
#: logged at once); each parked entry is logged only at DEBUG
STILL_DOWN_LOG_S = 60.0


class Outage:
    """A stage's engine outage as one state, not one per event: its start (the first park
    after events went through), a reminder every :data:`STILL_DOWN_LOG_S` while it lasts, and
    its end (the next event that goes through) are logged once each. The delay of a parked
    event grows with the parks of the outage, base * 2**(parks-1) capped at the backoff cap
    and :data:`PARK_CAP_S` (an event's own delivery count does not grow while parked: every
    park used to wait the base delay, 0.5 s, and log a line: ~500 lines a second, QA)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        #: monotonic start of the outage; None while the engines answer
        self.since: float | None = None
        self.parks = 0
        self._next_log = 0.0
        #: the outage ended since the worker last looked (see :meth:`take_recovered`)
        self._recovered = False

    def parked(self, reason: str, base_s: float, cap_s: float,
               now: float | None = None) -> float:
        """Count one park; returns its delay."""
        now = time.monotonic() if now is None else now
        self.parks += 1
        delay = backoff_delay(self.parks, base_s, min(cap_s, PARK_CAP_S))
        if self.since is None:
            self.since, self._next_log = now, now + STILL_DOWN_LOG_S
            log.warning("stage %s: engine outage: %s; events are parked (kept pending, not "
                        "counted as attempts) and retried with a growing delay (at most "
                        "%.0fs) until it is back", self.stage, reason[:300],
                        min(cap_s, PARK_CAP_S))
        elif now >= self._next_log:
            self._next_log = now + STILL_DOWN_LOG_S
            log.warning("stage %s: engine outage goes on (%.0fs, %d parks so far; retried "
                        "every %.1fs): %s", self.stage, now - self.since, self.parks, delay,
                        reason[:300])
        return delay

    def over(self, now: float | None = None) -> None:
        """An event went through: the outage (if one was on) is over."""
        if self.since is None:
            return
        now = time.monotonic() if now is None else now
        log.warning("stage %s: engine outage over after %.0fs (%d parks); the parked events "
                    "are handled now", self.stage, now - self.since, self.parks)
        self.since, self.parks, self._recovered = None, 0, True

    def take_recovered(self) -> bool:
        """Whether an outage ended since the last call."""
        recovered, self._recovered = self._recovered, False
        return recovered


class EventProcessor:
    """Decodes and handles one delivery with the stage's handler, under the hooks."""

    def __init__(
        self,
        stage: str,
        handler: StageHandler,
        hooks: HookChain,
        options: WorkerOptions,
    ) -> None:
        self.stage = stage
        self.handler = handler
        self.hooks = hooks
        self.options = options
        self._encode = output_encoder(handler)
        #: the handler is batch-aware (see ``prepare``)
        self.prepares = callable(getattr(handler, "prepare", None))
        # the hooks' live lists: an empty one costs nothing per event (no call, no timing)
        self._before = hooks.bound("before_handle")
        self._after = hooks.bound("after_handle")
        self._after_batch = hooks.bound("after_handle_batch")
        #: the handler's batch path (``pipeline.stage.BatchHandler``), and its encoder of a
        #: batch's outputs (the sealing wrapper's looks the key up once per batch)
        self._handle_batch: Callable[[Sequence[Any]], Sequence[Sequence[Any]]] | None = (
            getattr(handler, "handle_batch", None))
        self._encode_outputs: Callable[[Sequence[Sequence[Any]]], list[list[bytes]]] | None = (
            getattr(handler, "encode_outputs", None))
        #: the engine outage this stage is in, if any (parks back off and log through it)
        self.outage = Outage(stage)

    @property
    def batches(self) -> bool:
        """Events go to the handler's ``handle_batch`` a slice at a time: it has one, and no
        hook has to see each event before it is handled."""
        return self._handle_batch is not None and not self._before

    def process(self, delivery: Delivery) -> Decision:
        decoded = self.decode(delivery)
        return decoded if isinstance(decoded, DeadLetter) else self.handle(delivery, decoded)

    def prepare(self, events: list[Any]) -> None:
        """Give a batch-aware handler the batch's decoded events first (see
        ``pipeline.stage.BatchPreparer``); a failure there is logged and contained: each event
        is then handled (and retried) on its own. A fault that stops the stage is raised (see
        ``handle``)."""
        prepare = getattr(self.handler, "prepare", None)
        if prepare is None or not events:
            return
        try:
            prepare(events)
        except Exception as exc:  # noqa: BLE001 - handle() meets the same failure and retries
            if _stops_stage(exc):  # the stage stops (see handle): no event would get further
                raise
            log.warning("stage %s: batch preparation failed", self.stage, exc_info=True)

    def decode(self, delivery: Delivery) -> Any:
        """The decoded event, or the DeadLetter deciding an entry that cannot be handled."""
        if delivery.deleted:
            return DeadLetter(
                delivery,
                "the entry was deleted from the stream (trimmed by retention?) before it was "
                "handled; its content is gone (keep input streams longer than worker lag)",
            )
        if delivery.missing_event or delivery.raw is None:
            return DeadLetter(
                delivery,
                delivery.problem or "stream entry has no 'event' field (publish with: "
                                    "XADD <stream> * event '<json>')",
            )
        if delivery.deliveries > self.options.max_deliveries:
            return DeadLetter(
                delivery,
                f"delivered {delivery.deliveries} times without being acknowledged "
                "(the worker handling it crashed or timed out each time)",
            )
        try:
            event = self.handler.decode(delivery.raw)
        except DecodeError as exc:
            return DeadLetter(delivery, f"undecodable: {exc.reason}")
        except Exception as exc:  # a decoder bug must not stop the stage either
            return DeadLetter(delivery, f"undecodable: {type(exc).__name__}: {exc}")
        return event

    def handle(self, delivery: Delivery, event: Any) -> Decision:
        """The decision for one decoded event (called once per event: no wrapper layers)."""
        timed = bool(self._after)
        started = time.perf_counter() if timed else 0.0
        try:
            if self._before:
                self.hooks.before_handle(self.stage, event, delivery)
            outputs = self.handler.handle(event)
            encoded = list(map(self._encode, outputs))
        except PermanentError as exc:
            return DeadLetter(delivery, f"permanent error: {exc.reason}")
        except Retry as exc:
            if isinstance(exc.__cause__, EngineError):
                return self.park(delivery, exc.reason)
            if not exc.counted:
                return RetryLater(delivery, backoff_delay(1, self.options.backoff_base_s,
                                                          self.options.backoff_cap_s,
                                                          exc.delay), exc.reason,
                                  counted=False)
            return self._retry(delivery, exc.reason, exc.delay)
        except EngineError as exc:  # an outage is not the event's fault: park it
            if _stops_stage(exc):  # (a damaged local cache: no wait mends it, see below)
                raise
            return self.park(delivery, str(exc))
        except Exception as exc:  # unexpected: retried (may be transient), then dead-lettered
            if _stops_stage(exc):
                # the Redis ACL refused the handler's keys, the audit chain cannot be
                # extended: not the event's fault, and no wait ends it; the stage stops (the
                # entry stays pending) and says what to change. (Any other ConfigError, e.g.
                # a broken stored fix, stays this event's failure: it must never stop the
                # stage for every other event.)
                raise
            log.warning(
                "stage %s: handler raised on entry %s", self.stage, delivery.entry_id,
                exc_info=True,
            )
            return self._retry(delivery, f"handler raised {type(exc).__name__}: {exc}", None)
        if timed:
            self.hooks.after_handle(self.stage, event, outputs, time.perf_counter() - started)
        if self.outage.since is not None:  # an event went through: the engines are back
            self.outage.over()
        return Handoff(delivery.entry_id, encoded, _dedupe_id(event))

    def handle_batch(self, deliveries: Sequence[Delivery], events: Sequence[Any]
                     ) -> list[Decision] | None:
        """The decisions for ``events`` (decoded, of ``deliveries``, in order) through the
        handler's ``handle_batch``; None when there is none, or the batch raised: the caller
        then decides each event with :meth:`handle` (its own retry, park or dead letter)."""
        batch = self._handle_batch
        if batch is None or not events:
            return None
        started = time.perf_counter()
        try:
            outputs = batch(events)
            if len(outputs) != len(events):
                raise ValueError(f"handle_batch gave {len(outputs)} results for "
                                 f"{len(events)} events")
            encode_outputs, encode = self._encode_outputs, self._encode
            encoded = (encode_outputs(outputs) if encode_outputs is not None
                       else [list(map(encode, produced)) for produced in outputs])
        except Exception as exc:  # noqa: BLE001 - each event is then handled on its own
            log.debug("stage %s: batch of %d handled one by one: %s: %s", self.stage,
                      len(events), type(exc).__name__, exc)
            return None
        if self.outage.since is not None:
            self.outage.over()
        if self._after_batch:
            self.hooks.after_handle_batch(self.stage, events, outputs,
                                          (time.perf_counter() - started) / len(events))
        return [Handoff(delivery.entry_id, produced, _dedupe_id(event))
                for delivery, event, produced in zip(deliveries, events, encoded, strict=True)]

    def park(self, delivery: Delivery, reason: str) -> Decision:
        """Keep the event pending until the engine is back, however long the outage: the
        delivery is not counted (the worker resets it), and the delay grows with the
        outage (:class:`Outage`), not with the event's count, which a park never raises."""
        delay = self.outage.parked(reason, self.options.backoff_base_s,
                                   self.options.backoff_cap_s)
        log.debug("stage %s: entry %s parked during an outage (retried in %.1fs, not "
                  "counted): %s", self.stage, delivery.entry_id, delay, reason[:200])
        return RetryLater(delivery, delay, f"parked during an outage: {reason}", outage=True,
                          counted=False)

    def _retry(self, delivery: Delivery, reason: str, requested: float | None) -> Decision:
        if delivery.deliveries >= self.options.max_deliveries:
            return DeadLetter(
                delivery, f"gave up after {delivery.deliveries} attempts: {reason}"
            )
        delay = backoff_delay(
            delivery.deliveries,
            self.options.backoff_base_s,
            self.options.backoff_cap_s,
            requested,
        )
        return RetryLater(delivery, delay, reason)
