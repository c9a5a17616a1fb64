"""The atomic hand-off: XACK of the inputs and XADD of their outputs in one Lua script.

Why a script rather than MULTI/EXEC: the script can make the output conditional on the
acknowledgement. ``XACK`` returns 1 only for the first acknowledgement of a pending entry,
so when a slow worker and the peer that reclaimed its entry both finish the same entry,
only the first hand-off emits outputs; the second is a no-op. On top of that, a dedupe
marker per event id (``SET NX EX``, checked inside the same script) drops a second stream
entry carrying an event id that was already handed off (a producer publishing twice).
The markers are members of one set per stage and time window (``<prefix>:done:<stage>:<n>``,
the current and the previous window are checked): about 2.5x cheaper per event than a key
with its own expiry, and an id stays known for between one and two windows.
A Redis script runs atomically: either the acknowledgement and the outputs both happen or
neither does, so a crash at any point loses nothing and duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.runtime.options import Retention

HANDOFF_LUA = """
local group, ttl, mode, tval = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local stream, out, xack, xadd, call = KEYS[1], KEYS[2], 'XACK', 'XADD', redis.call
local nargs = #ARGV

-- variadic commands in chunks: unpack() is bounded by the Lua stack
local function chunked(cmd, key, items)
  local res = {}
  for s = 1, #items, 500 do
    local reply = call(cmd, key, unpack(items, s, math.min(s + 499, #items)))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do res[#res + 1] = v end
    end
  end
  return res
end

-- pass 1: the event ids to dedupe on (no table per entry: ARGV is walked twice, which
-- costs Redis less per event than building one)
local dids, nd = {}, 0
local i = 5
while i <= nargs do
  local did = ARGV[i + 1]
  if did ~= '' then nd = nd + 1; dids[nd] = did end
  i = i + 3 + tonumber(ARGV[i + 2])
end

-- one membership query per window for the whole batch (not one per event)
local known = {}
if nd > 0 then
  for _, key in ipairs({KEYS[3], KEYS[4]}) do
    local hits = chunked('SMISMEMBER', key, dids)
    for j = 1, nd do
      if hits[j] == 1 then known[dids[j]] = true end
    end
  end
end

-- pass 2: ack each entry; only a first acknowledgement hands off, once per event id
local acked, emitted, dups, fresh, nf = 0, 0, 0, {}, 0
i = 5
while i <= nargs do
  local did, n = ARGV[i + 1], tonumber(ARGV[i + 2])
  if call(xack, stream, group, ARGV[i]) == 1 then
    acked = acked + 1
    if did ~= '' and known[did] then
      dups = dups + 1
    else
      if did ~= '' then
        known[did] = true
        nf = nf + 1; fresh[nf] = did
      end
      for j = i + 3, i + 2 + n do
        call(xadd, out, '*', 'event', ARGV[j])
      end
      emitted = emitted + n
    end
  end
  i = i + 3 + n
end
if nf > 0 then
  chunked('SADD', KEYS[3], fresh)
  call('EXPIRE', KEYS[3], ttl)
end
-- retention once per batch (same effect as on every XADD, a fraction of the cost)
if emitted > 0 and mode == 'maxlen' then
  call('XTRIM', out, 'MAXLEN', '~', tval)
elseif emitted > 0 and mode == 'minid' then
  call('XTRIM', out, 'MINID', '~', tval)
end
return {acked, emitted, dups}
"""

DEAD_LETTER_LUA = """
local group, mode, tval = ARGV[1], ARGV[2], ARGV[3]
local i, moved = 4, {}
while i <= #ARGV do
  local eid, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  if redis.call('XACK', KEYS[1], group, eid) == 1 then
    local args = {KEYS[2]}
    if mode == 'maxlen' then
      table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, tval)
    elseif mode == 'minid' then
      table.insert(args, 'MINID'); table.insert(args, '~'); table.insert(args, tval)
    end
    table.insert(args, '*')
    for j = 0, n - 1 do table.insert(args, ARGV[i + j]) end
    redis.call('XADD', unpack(args))
    moved[#moved + 1] = eid
  end
  i = i + n
end
return moved
"""


@dataclass(slots=True)
class Handoff:
    """One input entry's hand-off: its outputs (encoded) and the event id to dedupe on."""

    entry_id: str
    outputs: list[bytes] = field(default_factory=list)
    dedupe_id: str | None = None


@dataclass(frozen=True)
class HandoffResult:
    acked: int = 0
    emitted: int = 0
    duplicates: int = 0


class HandoffWriter:
    """Commits hand-offs and dead letters for one (input stream, group) atomically."""

    def __init__(
        self,
        client: Any,
        input_stream: str,
        group: str,
        output_stream: str | None,
        dead_stream: str,
        retention: Retention,
        dedupe_ttl_s: int,
        dedupe_keys: Callable[[], tuple[str, str]],
    ) -> None:
        self.input_stream = input_stream
        self.group = group
        self.output_stream = output_stream
        self.dead_stream = dead_stream
        self.retention = retention
        self.dedupe_ttl_s = dedupe_ttl_s
        self.dedupe_keys = dedupe_keys
        self._handoff = client.register_script(HANDOFF_LUA)
        self._dead = client.register_script(DEAD_LETTER_LUA)

    def commit(self, handoffs: Sequence[Handoff]) -> HandoffResult:
        """Ack the inputs and add their outputs; returns what actually happened.

        Raises:
            redis.exceptions.ConnectionError: Redis went away (the worker reconnects; the
                script either ran completely or not at all).
        """
        if not handoffs:
            return HandoffResult()
        keys, args = self.commit_args(handoffs)
        return self.result(self._handoff(keys=keys, args=args))

    @property
    def handoff_script(self) -> tuple[str, str]:
        """The hand-off script's (source, SHA), for callers that send it themselves."""
        return HANDOFF_LUA, str(self._handoff.sha)

    @staticmethod
    def result(reply: Any) -> HandoffResult:
        """The hand-off script's reply as a HandoffResult."""
        acked, emitted, dups = reply
        return HandoffResult(int(acked), int(emitted), int(dups))

    def commit_args(self, handoffs: Sequence[Handoff]) -> tuple[list[Any], list[Any]]:
        """The hand-off script's KEYS and ARGV for ``handoffs`` (see :meth:`commit`)."""
        mode, threshold = self.retention.trim_args()
        current, previous = self.dedupe_keys()
        # a stage without output (lifecycle) never XADDs; any key name satisfies KEYS[2]
        keys = [self.input_stream, self.output_stream or self.input_stream, current, previous]
        # the current window's set lives two windows, so the previous one is still there
        args: list[Any] = [self.group, 2 * max(self.dedupe_ttl_s, 1), mode, threshold]
        dedupe = self.dedupe_ttl_s > 0
        for item in handoffs:
            outputs = item.outputs if self.output_stream else []
            did = item.dedupe_id if dedupe and item.dedupe_id else ""
            args += [item.entry_id, did, len(outputs), *outputs]
        return keys, args

    def dead_letter(self, letters: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
        """Ack each entry and add its dead-letter record; returns the ids of the entries that
        moved. An entry another consumer already acknowledged (a peer that reclaimed it and
        finished it first) is not moved and not returned: it is no dead letter of this one.
        """
        if not letters:
            return set()
        mode, threshold = self.retention.trim_args()
        args: list[Any] = [self.group, mode, threshold]
        for entry_id, fields in letters:
            flat: list[Any] = []
            for name, value in fields.items():
                flat += [name, value]
            args += [entry_id, len(flat), *flat]
        moved = self._dead(keys=[self.input_stream, self.dead_stream], args=args)
        return {m.decode() if isinstance(m, bytes) else str(m) for m in moved}
