"""StageWorker: runs one consumer group (one stage) in one thread.

Loop: handle due retries, else reclaim abandoned entries when it is time, else read this
consumer's own pending entries (after a start or reconnect), else XREADGROUP new entries
(blocking). Each batch is decided event by event (:mod:`processing`) and committed at once
(:mod:`handoff`). When a read comes back full (a backlog), the step goes on in a burst of
batches with Redis working alongside (:mod:`overlap`): the next batch is read and the last
one committed while the current one is handled. Redis failures never end the loop: it backs
off, reconnects and resumes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

from pipeline.config import STAGES, STREAM_DEAD, Settings
from pipeline.errors import AccessRefused, StreamUnavailable, UsageError
from pipeline.runtime import group as groups
from pipeline.runtime import overlap
from pipeline.runtime.backoff import backoff_delay
from pipeline.runtime.connection import (
    SURVIVABLE,
    TRANSIENT,
    acl_refusal,
    is_missing_group,
    probe_scripts,
)
from pipeline.runtime.deadletter import DeadLetterAudit, dead_letter_fields
from pipeline.runtime.gctune import tune_for_worker
from pipeline.runtime.handoff import Handoff, HandoffResult, HandoffWriter
from pipeline.runtime.hooks import Delivery, Hook, HookChain
from pipeline.runtime.metrics import MetricsHook
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.overlap import Pipelined
from pipeline.runtime.processing import DeadLetter, Decision, EventProcessor, RetryLater
from pipeline.runtime.reclaim import EVENT_FIELD, Reclaimer, _text, make_delivery
from pipeline.runtime.retries import RetrySchedule
from pipeline.stage import StageHandler

log = logging.getLogger("heal.runtime")

_EVENT = EVENT_FIELD
#: events per call of a batch handler's ``handle_batch`` (between two checks of the stop
#: flag and the claim's keep-alive: a slice of fingerprints takes milliseconds)
BATCH_SLICE = 100


class StageWorker:
    """One consumer of one stage's group.

    ``input_stream``/``output_stream`` are stream suffixes (default: the stage's entry in
    ``pipeline.config.STAGES``); ``group`` defaults to the stage name.
    """

    def __init__(
        self,
        client: Any,
        settings: Settings,
        stage: str,
        handler: StageHandler,
        *,
        group: str | None = None,
        input_stream: str | None = None,
        output_stream: str | None = None,
        options: WorkerOptions | None = None,
        hooks: Sequence[Hook] | None = None,
        consumer: str | None = None,
        index: int = 0,
    ) -> None:
        if input_stream is None:
            if stage not in STAGES:
                raise UsageError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
            input_stream, output_stream = STAGES[stage]
        self.client = client
        self.settings = settings
        self.stage = stage
        self.group = group or stage
        self.stream = settings.stream(input_stream)
        self.output = settings.stream(output_stream) if output_stream else None
        self.options = (options or WorkerOptions()).validate()
        self.consumer = consumer or groups.consumer_name(index)
        self.hooks = HookChain([MetricsHook()] if hooks is None else hooks)
        self.processor = EventProcessor(stage, handler, self.hooks, self.options)
        #: optional periodic work of the stage (e.g. apply releasing deferred fixes)
        self._tick = getattr(handler, "tick", None)
        #: optional: (what, key) of the stage's own Redis keys, tried at start
        #: (``pipeline.stage.StartupProbe``)
        self._probe: Callable[[], Sequence[tuple[str, str]]] | None = getattr(
            handler, "probe_keys", None)
        #: optional end of an inline drain (e.g. lookup pushing its outbox to PostgreSQL)
        self._finish = getattr(handler, "finish", None)
        #: optional: make what a batch's handling wrote durable before its hand-off acks it
        #: (``pipeline.stage.DurableBeforeHandoff``; the lookup stage's outbox buffer)
        self._before_handoff: Callable[[], None] | None = getattr(
            handler, "before_handoff", None)
        window = self.options.dedupe_ttl_s
        self.writer = HandoffWriter(
            client, self.stream, self.group, self.output, settings.stream(STREAM_DEAD),
            self.options.retention, window,
            lambda: groups.dedupe_keys(settings, stage, window),
        )
        #: every dead letter is a decision: audited once it landed (see deadletter.py)
        self.dead_audit = DeadLetterAudit(settings, client)
        self.reclaimer = Reclaimer(
            client, self.stream, self.group, self.consumer, self.options.claim_idle_ms
        )
        self.retries = RetrySchedule()
        #: entries parked during the current engine outage (see :meth:`_pace_outage`)
        self._parked: set[str] = set()
        self.stop_event = threading.Event()
        self._own_cursor: str | None = "0"  # read our own pending entries first
        self._next_reclaim = 0.0
        self._next_forget = 0.0
        #: ids of the batch in hand (read by the heartbeat thread to keep them fresh)
        self.in_flight: tuple[str, ...] = ()
        #: in a read-ahead burst: Redis may have delivered entries whose ids this worker has
        #: not read yet, so the heartbeat touches every entry pending in its name
        self.bursting = False
        self.processed = 0
        #: overlap Redis with handling in bursts of full batches (see :mod:`overlap`)
        self._overlap = self.options.read_ahead and overlap.supported(client)
        tune_for_worker()  # a worker's caches made the default collector a fifth of its CPU

    # --- public ---------------------------------------------------------------------

    def already_done(self, event_id: str) -> bool:
        """True when this stage already handed off ``event_id`` (see group.already_done)."""
        return groups.already_done(
            self.client, self.settings, self.stage, event_id, self.options.dedupe_ttl_s
        )

    def held_ids(self) -> list[str]:
        """Entries this worker holds on purpose: the batch in hand and those waiting for
        their retry backoff (the heartbeat keeps them from looking abandoned)."""
        return [*self.in_flight, *self.retries.pending_ids()]

    def finish(self) -> None:
        """The stage's own end-of-drain work (contained: it never fails the drain)."""
        if self._finish is None:
            return
        try:
            self._finish()
        except Exception as exc:  # noqa: BLE001 - the events were handled; this is cleanup
            log.warning("stage %s: finishing failed: %s", self.stage, exc)

    def stop(self) -> None:
        """Ask the loop to stop after the event in hand (thread- and signal-safe)."""
        self.stop_event.set()

    def start(self) -> None:
        """Create the group (MKSTREAM), waiting up to ``startup_timeout_s`` for Redis.

        Raises:
            StreamUnavailable: Redis stayed unreachable.
            AccessRefused: the ACL of Redis's user does not cover the stage's keys.
        """
        deadline = time.monotonic() + self.options.startup_timeout_s
        attempt = 0
        while True:
            try:
                groups.ensure_group(self.client, self.stream, self.group)
                # the keys it writes too: a user whose patterns cover the input stream only
                # (~heal:errors*) would otherwise sit idle, saying nothing, until an event came
                for key in (self.output, self.settings.stream(STREAM_DEAD)):
                    if key is not None:
                        self.client.exists(key)
                # and the stage's own keys (its template store, its sweep lease): refused
                # only there, a worker ran until an event (or, one pending, its reclaim a
                # minute later) reached them
                for what, key in self._probe() if self._probe is not None else ():
                    try:
                        self.client.exists(key)
                    except redis.exceptions.NoPermissionError as exc:
                        raise self._refusal(exc, what) from exc
                # and the commands: every hand-off is a script, so a user refused EVAL,
                # EVALSHA or SCRIPT read its first event and stopped there, leaving it pending
                try:
                    probe_scripts(self.client, self.stream)
                except redis.exceptions.NoPermissionError as exc:
                    raise self._refusal(exc, "Lua scripts") from exc
                return
            except redis.exceptions.NoPermissionError as exc:
                raise self._refusal(exc) from exc
            except TRANSIENT as exc:
                attempt += 1
                if time.monotonic() >= deadline or self.stop_event.is_set():
                    raise StreamUnavailable(
                        f"stage {self.stage}: Redis unreachable for "
                        f"{self.options.startup_timeout_s:.0f}s: {exc}; check HEAL_REDIS_URL"
                    ) from exc
                self.stop_event.wait(self._reconnect_delay(attempt))

    def _refusal(self, exc: redis.exceptions.NoPermissionError, what: str = ""
                 ) -> AccessRefused:
        refusal = acl_refusal(exc, self.settings.prefix)
        assert refusal is not None  # every NOPERM is one
        return AccessRefused(f"stage {self.stage}: {f'{what}: ' if what else ''}{refusal}")

    def run(self) -> int:
        """Run until :meth:`stop`; returns the number of entries processed.

        Raises:
            StreamUnavailable: Redis unreachable at start (see :meth:`start`).
            AccessRefused: the ACL of Redis's user refused a command: backing off would not
                help, a person has to change the ACL or HEAL_STREAM_PREFIX.
        """
        self.start()
        log.info("stage %s: consumer %s reading %s", self.stage, self.consumer, self.stream)
        attempt = 0
        while not self.stop_event.is_set():
            try:
                self.step(self.options.block_ms)
                attempt = 0
            except redis.exceptions.NoPermissionError as exc:
                raise self._refusal(exc) from exc
            except AccessRefused as exc:  # a handler's (its template store's ACL refusal)
                raise AccessRefused(f"stage {self.stage}: {exc}") from exc
            except SURVIVABLE as exc:
                attempt += 1
                _revive_engines()
                self._on_redis_failure(exc, attempt)
        log.info("stage %s: consumer %s stopped", self.stage, self.consumer)
        return self.processed

    def step(self, block_ms: int | None) -> int:
        """One read-handle-commit round; returns entries processed (0: nothing waiting).

        ``block_ms=None`` never blocks (used by drain_inline).

        Raises:
            redis.exceptions.RedisError: Redis failed (run() backs off and reconnects).
        """
        due = self.retries.pop_due(self.options.batch_size)
        if due:
            return self.process(self.reclaimer.claim_own(due))
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.options.claim_interval_s
            if self._tick is not None:
                try:
                    self._tick()
                except Exception as exc:  # noqa: BLE001 - periodic work never stops the stage
                    log.warning("stage %s: periodic work failed: %s", self.stage, exc)
            if now >= self._next_forget:
                self._next_forget = now + 60.0
                self._forget_departed()
            claimed = self.reclaimer.claim_abandoned(self.options.batch_size)
            if claimed:
                return self.process(claimed)
        if self._own_cursor is not None:
            count = self._read_own_pending()
            if count:
                return count
        batch = self._read_new(block_ms)
        if len(batch) >= self.options.batch_size and self._overlap:
            target = self._burst_client()
            if target is not None:
                return self._burst(batch, target)
        return self.process(batch)

    def process(self, deliveries: Sequence[Delivery]) -> int:
        """Decide every delivery, then commit hand-offs and dead letters atomically.

        When stopping mid-batch, the undecided rest stays pending (handed back: peers
        reclaim it after the idle timeout); nothing is lost.
        """
        decisions = self._decide(deliveries)
        self._commit(decisions)
        self.in_flight = ()
        self.processed += len(decisions)
        self._hand_back([d.entry_id for d in deliveries[len(decisions):]])
        return len(decisions)

    # --- internals ------------------------------------------------------------------

    def _prepare(self, deliveries: Sequence[Delivery]) -> list[Any]:
        """Decode ``deliveries`` (an undecodable one becomes its DeadLetter) and give the
        handler the batch to prepare."""
        processor = self.processor
        decoded = [processor.decode(d) for d in deliveries]
        processor.prepare([e for e in decoded if not isinstance(e, DeadLetter)])
        return decoded

    def _decide(self, deliveries: Sequence[Delivery], ahead: Pipelined | None = None,
                decoded: list[Any] | None = None) -> list[Decision]:
        """Decode, prepare (unless ``decoded`` is given: :meth:`_prepare` was called) and
        handle ``deliveries`` (stopping early when asked to).

        While a slow batch is handled, the entries still to do are touched every half
        claim timeout so peers do not take them over; with a read-ahead outstanding
        (``ahead``), its entries are read in and touched too.
        """
        decisions: list[Decision] = []
        self.in_flight = batch_ids = tuple(d.entry_id for d in deliveries)
        touched = time.monotonic()
        touch_after = self.options.claim_idle_ms / 2000.0
        processor, stop = self.processor, self.stop_event
        if decoded is None:
            decoded = self._prepare(deliveries)
        if len(decoded) != len(deliveries):
            raise ValueError(f"{len(decoded)} decoded events for {len(deliveries)} deliveries")
        # a batch handler takes a slice at a time (stop and touch are checked between slices)
        step = BATCH_SLICE if processor.batches else 1
        for i in range(0, len(deliveries), step):
            if stop.is_set():
                break
            if time.monotonic() - touched > touch_after:
                held = [d.entry_id for d in deliveries[i:]]
                if ahead is not None:
                    ahead_ids = [_text(eid) for eid, _ in ahead.poll()]
                    self.in_flight = (*batch_ids, *ahead_ids)
                    held += ahead_ids
                self.reclaimer.touch(held)
                touched = time.monotonic()
            if step == 1:
                event = decoded[i]
                decisions.append(event if isinstance(event, DeadLetter)
                                 else processor.handle(deliveries[i], event))
            else:
                decisions += self._decide_slice(deliveries[i:i + step], decoded[i:i + step])
        if self._before_handoff is not None:
            return self._durable(deliveries, decisions)
        return decisions

    def _durable(self, deliveries: Sequence[Delivery], decisions: list[Decision]
                 ) -> list[Decision]:
        """Make what handling the batch wrote durable (the handler's ``before_handoff``)
        before anything acknowledges its entries: the hand-off, pipelined or not, is written
        only after this returns, so a SIGKILL at any moment leaves each entry either pending
        (handled again by a peer, idempotently) or acknowledged with its writes on disk.
        When it fails, no event of the batch is handed off: they are parked as in an outage
        (retried, not counted) and their writes made again when they are handled again."""
        settle = self._before_handoff
        if settle is None or not any(isinstance(d, Handoff) for d in decisions):
            return decisions
        try:
            settle()
        except Exception as exc:  # noqa: BLE001 - the batch is retried, the stage goes on
            reason = (f"what handling wrote could not be made durable: "
                      f"{type(exc).__name__}: {exc}")
            log.warning("stage %s: %s; %d events parked", self.stage, reason, len(decisions))
            return [self.processor.park(delivery, reason) if isinstance(d, Handoff) else d
                    for delivery, d in zip(deliveries, decisions, strict=False)]
        return decisions

    def _decide_slice(self, deliveries: Sequence[Delivery], decoded: list[Any]
                      ) -> list[Decision]:
        """Decisions for a slice through the handler's batch path (each event on its own
        when that fails); an undecodable entry keeps its DeadLetter."""
        processor = self.processor
        live = [(d, e) for d, e in zip(deliveries, decoded, strict=True)
                if not isinstance(e, DeadLetter)]
        handled = processor.handle_batch([d for d, _ in live], [e for _, e in live])
        if handled is None:
            handled = [processor.handle(d, e) for d, e in live]
        taken = iter(handled)
        return [e if isinstance(e, DeadLetter) else next(taken) for e in decoded]

    def _burst_client(self) -> Any:
        """The plain client to pipeline on (a cluster's: the node of this stream's slot), or
        None when it cannot be told now (a cluster mid-resharding): one batch at a time then,
        and the cluster client's own redirections do the rest."""
        try:
            return overlap.node_client(self.client, self.stream)
        except Exception as exc:  # noqa: BLE001 - e.g. SlotNotCoveredError: not a failure here
            log.debug("stage %s: no read-ahead this time: %s", self.stage, exc)
            return None

    def _burst(self, batch: list[Delivery], target: Any) -> int:
        """Handle full batches back to back with Redis working alongside (see
        :mod:`overlap`): while batch N is handled, Redis commits batch N-1 and delivers
        batch N+1. Ends when a batch comes back short, on stop, when a retry or the
        reclaim is due, or after ``block_ms`` (so partitions and retries get their turn);
        on return every hand-off it made is committed.

        Raises:
            redis.exceptions.RedisError: Redis failed (run() backs off, reconnects and
                re-reads this consumer's pending entries: the read-ahead ones included).
        """
        size = self.options.batch_size
        deadline = min(time.monotonic() + self.options.block_ms / 1000.0, self._next_reclaim)
        total = 0
        with Pipelined(target) as pipe, self._bursting():
            pipe.load_script(self.writer.handoff_script[0])  # idempotent; sent by SHA below
            pipe.send_read(self.group, self.consumer, self.stream, size)
            decoded = None
            while True:
                decisions = self._decide(batch, pipe, decoded)
                if len(decisions) < len(batch) or self.stop_event.is_set():
                    self._commit(decisions, pipe)
                    self.processed += len(decisions)
                    total += len(decisions)
                    break  # stopping: the rest and a read-ahead batch are handed back
                done = batch
                batch, decoded = self._hand_off_and_take(decisions, pipe)
                self.processed += len(decisions)
                total += len(decisions)
                if not batch:
                    batch = done
                    break
                self.in_flight = tuple(d.entry_id for d in batch)
                if len(batch) >= size and time.monotonic() < deadline \
                        and not self._retry_due():
                    pipe.send_read(self.group, self.consumer, self.stream, size)
            left = [d.entry_id for d in batch[len(decisions):]]
            ahead = pipe.flush()  # entries only when stopping (else none is outstanding)
        self.in_flight = ()
        if ahead and not self.stop_event.is_set():  # never stranded: handled after all
            return total + self.process(self._new_deliveries(ahead))
        self._hand_back(left + [_text(eid) for eid, _ in ahead])
        return total

    def _hand_off_and_take(self, decisions: list[Decision], pipe: Pipelined
                           ) -> tuple[list[Delivery], list[Any] | None]:
        """Write the hand-off of ``decisions`` and take the read-ahead batch, in the order
        that keeps both sides busy; returns the next batch and, when it was prepared here,
        its decoded events (None: :meth:`_decide` prepares it).

        Redis runs one command at a time. By default the hand-off is written first, so
        Redis has its next command while the worker reads (a fast stage is bound by
        Redis). A batch-aware handler (see ``BatchPreparer``) whose read-ahead has arrived
        takes it and prepares the next batch first: its own round trips (the fingerprint
        stage's template store) would wait behind the hand-off, and so would the rest of
        its large batch (a socket holds ~64 KB of a 500-event batch's ~300 KB; Redis sends
        more only as it is read). bench/stage_throughput.py: fingerprint stage seen before
        +24%, median of six alternating runs; the no-op stage keeps the default order.
        """
        if not (self.processor.prepares and pipe.ready()):
            self._commit(decisions, pipe)
            return self._new_deliveries(pipe.take_read() or ()), None
        batch = self._new_deliveries(pipe.take_read() or ())
        decoded = self._prepare(batch) if batch else None
        self._commit(decisions, pipe)
        return batch, decoded

    def _hand_back(self, entry_ids: list[str]) -> None:
        """Entries read but not decided, because the worker is stopping: peers take them
        over at their next reclaim pass (on a Redis failure here, after the claim timeout)."""
        if entry_ids and self.stop_event.is_set():
            log.info("stage %s: stopping; %d entries handed back to peers", self.stage,
                     len(entry_ids))
            self.reclaimer.hand_back(entry_ids)

    @contextlib.contextmanager
    def _bursting(self) -> Iterator[None]:
        self.bursting = True
        try:
            yield
        finally:
            self.bursting = False

    def _retry_due(self) -> bool:
        until = self.retries.seconds_until_next()
        return until is not None and until <= 0.0

    def _commit(self, decisions: Sequence[Decision], pipe: Pipelined | None = None) -> None:
        handoffs = [d for d in decisions if isinstance(d, Handoff)]
        dead = [d for d in decisions if isinstance(d, DeadLetter)]
        if handoffs and pipe is not None:
            keys, args = self.writer.commit_args(handoffs)
            pipe.send_script(self.writer.handoff_script[1], keys, args,
                             lambda reply: self._after_handoff(self.writer.result(reply)))
        elif handoffs:
            self._after_handoff(self.writer.commit(handoffs))
        if dead:
            letters = [dead_letter_fields(d.delivery, self.stage, self.group, d.reason,
                                          self.options.dead_raw_limit) for d in dead]
            moved = self.writer.dead_letter([
                (d.delivery.entry_id, fields) for d, fields in zip(dead, letters, strict=True)
            ])
            # audited once landed, only those this worker moved; never raises
            self.dead_audit.record([fields for d, fields in zip(dead, letters, strict=True)
                                    if d.delivery.entry_id in moved])
            for d in dead:
                if d.delivery.entry_id not in moved:
                    # a peer that reclaimed the entry acknowledged it first: it is theirs
                    log.info("stage %s: entry %s not dead-lettered: already acknowledged by "
                             "another consumer", self.stage, d.delivery.entry_id)
                    continue
                log.warning("stage %s: dead letter %s: %s", self.stage, d.delivery.entry_id,
                            d.reason[:300])
                self.hooks.on_dead_letter(self.stage, d.delivery, d.reason)
        outage = [d for d in decisions if isinstance(d, RetryLater) and d.outage]
        if outage:
            _revive_engines()  # an embedded engine this process leases may have been killed
        for delivery in [d.delivery for d in decisions
                         if isinstance(d, RetryLater) and not d.counted]:
            # not counted: the next claim adds one back, so the count stays where it was
            # before the outage (or the wait) and max_deliveries is never reached by waiting
            self.client.xclaim(self.stream, self.group, self.consumer, 0, [delivery.entry_id],
                               retrycount=max(delivery.deliveries - 1, 0), justid=True)
        for decision in decisions:
            if isinstance(decision, RetryLater):
                self.retries.add(decision.delivery.entry_id, decision.delay_s)
                self.hooks.on_retry(
                    self.stage, decision.delivery, decision.reason, decision.delay_s
                )
        self._pace_outage(outage)

    def _pace_outage(self, parked: Sequence[RetryLater]) -> None:
        """While an engine is down, the events parked earlier wait behind the last one
        parked: the next retry is one probe, not every parked event again (a stage holding
        hundreds of them retried each every half second). When an event went through again,
        they are all due at once."""
        if parked:
            # those handed off or dead-lettered since are no longer waiting
            self._parked = (self._parked & self.retries.pending_ids()) | {
                d.delivery.entry_id for d in parked}
            due = time.monotonic() + max(d.delay_s for d in parked)
            self.retries.reschedule(self._parked, due, later_only=True)
        if self.processor.outage.take_recovered() and self._parked:
            self.retries.reschedule(self._parked, time.monotonic(), later_only=False)
            self._parked.clear()

    def _after_handoff(self, result: HandoffResult) -> None:
        self.hooks.after_handoff(self.stage, result.acked, result.emitted, result.duplicates)

    def _xreadgroup(self, entry_id: str, block_ms: int | None) -> list[Any]:
        target = overlap.raw_target(self.client, self.stream)
        if target is not None:  # flat field lists, as the read-ahead gets (overlap.call_raw)
            return overlap.read_group(target, self.group, self.consumer, self.stream,
                                      entry_id, self.options.batch_size, block_ms)
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: entry_id},
            count=self.options.batch_size, block=block_ms,
        )
        return list(reply[0][1]) if reply else []

    def _forget_departed(self) -> None:
        """Remove the group's consumers of departed workers that hold nothing: idle past
        ``forget_idle_ms``, or without a heartbeat and idle past
        :data:`~pipeline.runtime.heartbeat.DEAD_IDLE_MS` (a killed worker; its entries are
        claimed by peers first, and it goes once it holds none).

        Raises:
            redis.exceptions.RedisError: Redis failed.
        """
        from pipeline.errors import HealError
        from pipeline.runtime.heartbeat import DEAD_IDLE_MS, live_workers

        try:
            live: set[str] | None = live_workers(self.client, self.settings).get(self.stage,
                                                                                  set())
        except HealError:  # no heartbeats readable: only the long idle rule
            live = None
        self.reclaimer.forget_idle_consumers(self.options.forget_idle_ms, live, DEAD_IDLE_MS)

    def _read_own_pending(self) -> int:
        """Entries delivered to this consumer but not acked (after a reconnect, say)."""
        assert self._own_cursor is not None
        entries = self._xreadgroup(self._own_cursor, None)
        if not entries:
            self._own_cursor = None
            return 0
        self._own_cursor = _text(entries[-1][0])
        waiting = self.retries.pending_ids()
        fresh = [(eid, f) for eid, f in entries if _text(eid) not in waiting]
        return self.process(self.reclaimer.to_deliveries(fresh)) or len(entries)

    def _read_new(self, block_ms: int | None) -> list[Delivery]:
        if block_ms is not None:
            until_retry = self.retries.seconds_until_next()
            if until_retry is not None:
                block_ms = max(1, min(block_ms, int(until_retry * 1000)))
        return self._new_deliveries(self._xreadgroup(">", block_ms))

    def _new_deliveries(self, entries: Sequence[Any]) -> list[Delivery]:
        """First deliveries of new entries (fields as a dict, or a flat RESP list)."""
        stream = self.stream
        out: list[Delivery] = []
        for eid, fields in entries:
            entry_id = eid.decode() if isinstance(eid, bytes) else str(eid)
            if type(fields) is list and len(fields) == 2 and fields[0] in _EVENT \
                    and type(fields[1]) is bytes:
                out.append(Delivery(stream, entry_id, fields[1]))  # the common case
                continue
            out.append(make_delivery(stream, entry_id, fields, 1))
        return out

    def _reconnect_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.options.reconnect_base_s, self.options.reconnect_cap_s)

    def on_redis_failure(self, exc: BaseException, attempt: int) -> None:
        """Back off and reconnect after a Redis failure (the loop's own recovery)."""
        self._on_redis_failure(exc, attempt)

    def _on_redis_failure(self, exc: BaseException, attempt: int) -> None:
        if is_missing_group(exc):
            log.warning("stage %s: group %s vanished (Redis lost its data); recreating",
                        self.stage, self.group)
        else:
            log.warning("stage %s: Redis failure (attempt %d): %s", self.stage, attempt, exc)
            self.hooks.on_reconnect(self.stage, exc, attempt)
            self.stop_event.wait(self._reconnect_delay(attempt))
        try:
            groups.ensure_group(self.client, self.stream, self.group)
            self._own_cursor = "0"  # resume with whatever we still hold
        except SURVIVABLE:
            pass  # still down; the next step fails fast and we back off again


def _revive_engines() -> list[str]:
    """Restart the embedded engines this process leases, if they died (storage/engines)."""
    try:
        from storage.engines import revive_held_engines
    except ImportError:  # pragma: no cover - storage ships with heal
        return []
    return revive_held_engines()
