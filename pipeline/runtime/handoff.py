"""The atomic hand-off: XACK of the inputs and XADD of their outputs in one Lua script.

Why a script rather than MULTI/EXEC: the script can make the output conditional on the
acknowledgement. ``XACK`` returns 1 only for the first acknowledgement of a pending entry,
so when a slow worker and the peer that reclaimed its entry both finish the same entry,
only the first hand-off emits outputs; the second is a no-op. On top of that, a dedupe
marker per event id (``SET NX EX``, checked inside the same script) drops a second stream
entry carrying an event id that was already handed off (a producer publishing twice).
A Redis script runs atomically: either the acknowledgement and the outputs both happen or
neither does, so a crash at any point loses nothing and duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.runtime.options import Retention

HANDOFF_LUA = """
local group, ttl, mode, tval = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local i, k = 5, 3
local acked, emitted, dups = 0, 0, 0
while i <= #ARGV do
  local eid, hasd, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if redis.call('XACK', KEYS[1], group, eid) == 1 then
    acked = acked + 1
    local emit = true
    if hasd == '1' then
      if not redis.call('SET', KEYS[k], eid, 'NX', 'EX', ttl) then
        emit = false
        dups = dups + 1
      end
    end
    if emit then
      for j = 0, n - 1 do
        if mode == 'maxlen' then
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', tval, '*', 'event', ARGV[i + j])
        elseif mode == 'minid' then
          redis.call('XADD', KEYS[2], 'MINID', '~', tval, '*', 'event', ARGV[i + j])
        else
          redis.call('XADD', KEYS[2], '*', 'event', ARGV[i + j])
        end
        emitted = emitted + 1
      end
    end
  end
  if hasd == '1' then k = k + 1 end
  i = i + n
end
return {acked, emitted, dups}
"""

DEAD_LETTER_LUA = """
local group, mode, tval = ARGV[1], ARGV[2], ARGV[3]
local i, moved = 4, 0
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
    moved = moved + 1
  end
  i = i + n
end
return moved
"""


@dataclass
class Handoff:
    """One input entry's hand-off: its outputs (encoded) and its dedupe key, if any."""

    entry_id: str
    outputs: list[bytes] = field(default_factory=list)
    dedupe_key: str | None = None


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
    ) -> None:
        self.client = client
        self.input_stream = input_stream
        self.group = group
        self.output_stream = output_stream
        self.dead_stream = dead_stream
        self.retention = retention
        self.dedupe_ttl_s = dedupe_ttl_s
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
        mode, threshold = self.retention.trim_args()
        # a stage without output (lifecycle) never XADDs; any key name satisfies KEYS[2]
        keys: list[str] = [self.input_stream, self.output_stream or self.input_stream]
        args: list[Any] = [self.group, max(self.dedupe_ttl_s, 1), mode, threshold]
        for item in handoffs:
            use_dedupe = item.dedupe_key is not None and self.dedupe_ttl_s > 0
            outputs = item.outputs if self.output_stream else []
            args += [item.entry_id, "1" if use_dedupe else "0", len(outputs), *outputs]
            if use_dedupe and item.dedupe_key is not None:
                keys.append(item.dedupe_key)
        acked, emitted, dups = self._handoff(keys=keys, args=args)
        return HandoffResult(int(acked), int(emitted), int(dups))

    def dead_letter(self, letters: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Ack each entry and add its dead-letter record; returns how many moved."""
        if not letters:
            return 0
        mode, threshold = self.retention.trim_args()
        args: list[Any] = [self.group, mode, threshold]
        for entry_id, fields in letters:
            flat: list[Any] = []
            for name, value in fields.items():
                flat += [name, value]
            args += [entry_id, len(flat), *flat]
        return int(self._dead(keys=[self.input_stream, self.dead_stream], args=args))
