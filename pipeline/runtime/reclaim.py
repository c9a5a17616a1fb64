"""Recovery of abandoned entries (the named component for "a SIGKILLed worker loses nothing").

Every entry a consumer reads stays in the group's pending list (PEL) until it is acked.
When a worker dies, its entries sit there idle. :class:`Reclaimer` periodically takes over
entries idle longer than ``claim_idle_ms`` (XPENDING IDLE + XCLAIM; each claim counts a delivery,
so an event that kills every worker is eventually dead-lettered instead of looping), and
re-claims this worker's own entries whose retry backoff has elapsed. While a slow batch is
being handled, :meth:`touch` resets the idle time of the entries still to do, so peers do
not steal entries that are merely waiting their turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.runtime import overlap
from pipeline.runtime.hooks import Delivery
from pipeline.runtime.options import MAX_CLAIM_IDLE_MS

log = logging.getLogger("heal.runtime.reclaim")

#: the idle time a stopping worker gives the entries it hands back: longer than the longest
#: ``--claim-idle-ms`` any peer accepts, so every peer (whatever its own timeout) sees them
#: as abandoned at its next reclaim pass. Its own timeout would not do: a peer with a longer
#: one left them alone until its own timeout had passed (QA: 57 s, against 5 s promised)
HAND_BACK_IDLE_MS = 2 * MAX_CLAIM_IDLE_MS


#: delete a consumer only if it holds nothing, atomically (deleting one drops its pending)
FORGET_LUA = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


#: the field name of an entry's event, as bytes or (decode_responses) str
EVENT_FIELD = (b"event", "event")


def make_delivery(stream: str, entry_id: str, fields: dict[Any, Any] | list[Any] | None,
                  deliveries: int) -> Delivery:
    """A Delivery from a stream entry's fields (a dict, or RESP's flat list of names and
    values).

    No fields at all: the entry was deleted while pending. Fields but no ``event``: the
    fields themselves (as JSON) become the raw bytes, so the dead letter keeps them. Several
    ``event`` fields (only a flat list shows them): dead-lettered as well, see
    :func:`several_events`.
    """
    if not fields:
        return Delivery(stream, entry_id, None, deliveries, deleted=True)
    if isinstance(fields, list):
        if sum(1 for name in fields[::2] if name in EVENT_FIELD) > 1:
            return several_events(stream, entry_id, fields, deliveries)
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    raw = fields.get(b"event")
    if raw is None:
        raw = fields.get("event")
    if raw is None:
        shown = {_text(k): _text(v) if isinstance(v, bytes | str) else str(v)
                 for k, v in fields.items()}
        return Delivery(stream, entry_id, orjson.dumps(shown), deliveries, missing_event=True)
    return Delivery(stream, entry_id, raw.encode() if isinstance(raw, str) else raw, deliveries)


def several_events(stream: str, entry_id: str, fields: list[Any], deliveries: int) -> Delivery:
    """The dead-letter delivery of an entry with several ``event`` fields
    (``XADD s * event A event B``): which one the producer meant is unknown, and a dict of
    the fields kept only the last one, silently (``raw``: every field, as JSON pairs)."""
    pairs = [[_text(name), _text(value)] for name, value in zip(fields[::2], fields[1::2],
                                                                    strict=True)]
    count = sum(1 for name, _ in pairs if name == "event")
    return Delivery(stream, entry_id, orjson.dumps(pairs), deliveries, missing_event=True,
                    problem=f"stream entry has {count} 'event' fields; publish one event per "
                            "entry (XADD <stream> * event '<json>')")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Reclaimer:
    def __init__(
        self, client: Any, stream: str, group: str, consumer: str, claim_idle_ms: int
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self._forget = client.register_script(FORGET_LUA)

    def delivery_counts(self, entry_ids: Sequence[str]) -> dict[str, int]:
        """How often each entry has been delivered (from XPENDING), in one round trip."""
        if not entry_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        counts: dict[str, int] = {}
        for entry_id, rows in zip(entry_ids, pipe.execute(), strict=True):
            counts[entry_id] = int(rows[0]["times_delivered"]) if rows else 1
        return counts

    def to_deliveries(self, entries: Sequence[Any]) -> list[Delivery]:
        """Stream entries that were delivered before → Delivery with exact delivery counts.

        An entry read back from the pending list with no fields was deleted meanwhile.
        """
        pairs = [(_text(eid), fields) for eid, fields in entries if eid is not None]
        counts = self.delivery_counts([eid for eid, _ in pairs])
        return [
            make_delivery(self.stream, eid, fields, counts[eid])
            for eid, fields in pairs
        ]

    def _claim(self, entry_ids: Sequence[Any]) -> list[Delivery]:
        """XCLAIM entries already known to be pending (counts one more delivery).

        Entries deleted from the stream come back as nil without their id; they are the
        claimed ids missing from the reply, and become ``deleted`` deliveries (dead-lettered,
        which also removes them from the pending list instead of reclaiming them forever).
        """
        if not entry_ids:
            return []
        target = overlap.raw_target(self.client, self.stream)
        if target is not None:  # flat field lists: see overlap.call_raw
            reply = overlap.call_raw(target, "XCLAIM", self.stream, self.group,
                                     self.consumer, 0, *entry_ids)
            reply = [entry for entry in reply or () if entry is not None]
        else:
            reply = self.client.xclaim(self.stream, self.group, self.consumer, 0,
                                       list(entry_ids))
        found = {_text(eid): fields for eid, fields in reply if eid is not None}
        deliveries = self.to_deliveries(list(found.items()))
        missing = [_text(eid) for eid in entry_ids if _text(eid) not in found]
        if missing:
            counts = self.delivery_counts(missing)
            deliveries += [
                Delivery(self.stream, eid, None, counts[eid], deleted=True)
                for eid in missing
            ]
        return deliveries

    def claim_abandoned(self, count: int) -> list[Delivery]:
        """Take over up to ``count`` entries idle past the timeout (any consumer's).

        Raises:
            redis.exceptions.ConnectionError: Redis unreachable.
        """
        # XPENDING IDLE finds them with their ids (XAUTOCLAIM hides the ids of deleted
        # entries); XCLAIM with the same min idle skips any that a peer touched meanwhile
        rows = self.client.xpending_range(
            self.stream, self.group, min="-", max="+", count=count, idle=self.claim_idle_ms
        )
        if not rows:
            return []
        claimed = self.client.xclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms,
            [row["message_id"] for row in rows], justid=True,
        )
        if claimed:
            log.info(
                "%s/%s: reclaimed %d abandoned entries", self.stream, self.group, len(claimed)
            )
        return self._claim(claimed)

    def claim_own(self, entry_ids: Sequence[str]) -> list[Delivery]:
        """Re-claim our own entries whose retry is due (counts one more delivery).

        Should a peer have taken one over meanwhile, both may handle it; the hand-off's
        XACK guard lets only the first emit outputs.
        """
        if not entry_ids:
            return []
        pending = self.client.xclaim(
            self.stream, self.group, self.consumer, 0, list(entry_ids), justid=True
        )
        return self._claim(pending)

    def touch(self, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries still queued in this worker (JUSTID: no new
        delivery is counted)."""
        if entry_ids:
            self.client.xclaim(
                self.stream, self.group, self.consumer, 0, list(entry_ids), justid=True
            )

    def hand_back(self, entry_ids: Sequence[str]) -> None:
        """Entries this worker will not handle after all (it is stopping): make them look
        abandoned now (XCLAIM IDLE, JUSTID: no delivery counted), idle longer than any
        peer's claim timeout (:data:`HAND_BACK_IDLE_MS`, not this worker's own), so every
        peer takes them over at its next reclaim pass instead of after its claim timeout."""
        if entry_ids:
            self.client.xclaim(self.stream, self.group, self.consumer, 0, list(entry_ids),
                               idle=HAND_BACK_IDLE_MS, justid=True)

    def forget(self, consumer: str) -> bool:
        """Delete ``consumer`` from the group if (and only if) it holds no entries."""
        return bool(self._forget(keys=[self.stream], args=[self.group, consumer]))

    def forget_idle_consumers(self, max_idle_ms: int, live: set[str] | None = None,
                              dead_idle_ms: int = 0) -> list[str]:
        """Remove consumers of departed workers (idle that long, nothing pending), so the
        group's consumer list (``heal status``) shows the live ones. A live worker reads
        every ``block_ms``, which refreshes its idle time, and would simply reappear.

        ``live``: the consumers that sent a heartbeat lately (``heartbeat.live_workers``);
        one not among them, holding nothing and idle longer than ``dead_idle_ms`` is gone
        too (a killed worker: listed "3 (2 live)" until then). Never one that holds
        entries: XGROUP DELCONSUMER would drop them (:data:`FORGET_LUA` checks at once);
        peers claim those first after the claim timeout, and it goes at a later pass."""
        gone: list[str] = []
        for info in self.client.xinfo_consumers(self.stream, self.group):
            name = _text(info["name"])
            # "idle" counts from the last *attempted* read, so a worker blocked on an empty
            # stream stays young ("inactive", Redis 7.2+, would not)
            idle = int(info.get("idle") or 0)
            dead = live is not None and name not in live and idle > dead_idle_ms
            if name != self.consumer and info["pending"] == 0 \
                    and (idle > max_idle_ms or dead) and self.forget(name):
                gone.append(name)
        if gone:
            log.info("%s/%s: removed %d departed consumers", self.stream, self.group, len(gone))
        return gone
