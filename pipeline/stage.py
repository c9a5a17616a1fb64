"""The contract between the stream runtime and a stage (consumer group).

A consumer module in ``consumers/`` names its input and output stream at the top and exposes
``build(ctx: StageContext) -> StageHandler``. The runtime (``pipeline.runtime``) owns reading,
decoding, retries, dead letters, reclaim, the atomic hand-off and acknowledgement; the handler
only turns one decoded input event into zero or more output events.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.config import Settings


class Encodable(Protocol):
    id: str

    def encode(self) -> bytes: ...


#: an output's own encoder (a C-level call)
_encode: Callable[[Any], bytes] = operator.methodcaller("encode")


def output_encoder(handler: Any) -> Callable[[Any], bytes]:
    """How ``handler``'s outputs are encoded: its own ``encode_output`` when it has one (the
    sealing wrapper of ``pipeline.trust`` signs every stage event), else each output's
    ``encode`` (looked up once, not per event)."""
    own: Callable[[Any], bytes] | None = getattr(handler, "encode_output", None)
    return own or _encode


@dataclass
class StageContext:
    """What a handler may use: settings and lazily created engine clients."""

    settings: Settings
    stage: str
    consumer: str = ""
    #: shared objects (redis client, database facade, caches); filled by the runtime/CLI
    resources: dict[str, Any] = field(default_factory=dict)


class BatchPreparer(Protocol):
    """Optional on a handler: ``prepare(events)`` is called with the decoded events of a
    batch before they are handled one by one, so a stage can do its storage work once per
    batch (the fingerprint stage mines the whole batch's templates in one round trip). It
    may raise like ``handle``; the runtime then handles the events one by one as usual."""

    def prepare(self, events: Sequence[Any]) -> None: ...


class BatchHandler(Protocol):
    """Optional on a handler: ``handle_batch(events)`` returns, for each of ``events`` in
    order, exactly what ``handle`` would return for it. The runtime then calls it (after
    ``prepare``) for slices of a batch instead of ``handle`` per event, sparing the
    per-event calls of the runtime and the hooks; hooks see the slice's mean time per event.
    If it raises, the runtime handles each event of the slice with ``handle`` (so each gets
    its own retry or dead letter): it must not do what a second handling would repeat. Not
    used while a hook has a ``before_handle`` (that one must see every event first)."""

    def handle_batch(self, events: Sequence[Any]) -> list[Sequence[Encodable]]: ...


class StartupProbe(Protocol):
    """Optional on a handler: ``probe_keys()`` lists (what, key) of Redis keys the stage
    itself will use (beyond the streams the runtime checks), shaped as the real ones (the
    fingerprint stage's template store, the lifecycle's sweep lease). The worker tries each
    at start (EXISTS): a Redis user whose ACL key patterns leave one out stops the stage at
    once with what to grant, instead of when the first event (or a reclaimed one, a minute
    later) reaches that key."""

    def probe_keys(self) -> Sequence[tuple[str, str]]: ...


class DurableBeforeHandoff(Protocol):
    """Optional on a handler: ``before_handoff()`` is called once per batch, after its events
    are handled and before the hand-off that acknowledges them is sent, to make durable what
    handling them wrote and keeps in memory (the lookup stage moves its buffered writes to
    its SQLite outbox, one transaction). An acknowledged entry is never handled again, so a
    write still in memory when the process dies (SIGKILL, OOM) would be lost for good. If it
    raises, nothing of the batch is handed off: its events are parked as in an outage and
    handled again, so what they write must be idempotent (the outbox's ops are, by op id)."""

    def before_handoff(self) -> None: ...


class StageHandler(Protocol):
    #: decodes the raw ``event`` field; raises DecodeError / EventValidationError
    decode: Callable[[bytes], Any]

    def handle(self, event: Any) -> Sequence[Encodable]:
        """Handle one event; return the events to hand off (same ids on redelivery).

        Raises:
            Retry: try again later (the runtime backs off, then dead-letters after N tries).
            PermanentError: dead-letter now with the reason.
        """
        ...
