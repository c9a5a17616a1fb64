"""Template stores: the persisted set of distinct token sequences, per group.

The miner's state is, per group, a grow-only SET of token sequences (see ``cluster.py``):
adding is idempotent and commutative, so several workers sharing one store reach the same
state whatever the order of their events. Because the set only grows, its size identifies
it, which lets a worker cache its mined templates and recompute only when the size changed.

``MemoryTemplateStore`` is for one process and tests; ``RedisTemplateStore`` shares the set
between workers (one Redis SET per group, members are tokens joined by U+001F, plus an
append-only LIST of the same members in the order they were first added, so a worker reads
only what it has not seen yet). ``sync`` adds a whole batch and reads what is new in one
round trip, one script call (the fingerprint stage calls it once per batch, not per event;
on a Redis Cluster, where a batch's groups live in different slots, new sequences cost one
call each and the reads one pipeline).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from pipeline.errors import AccessRefused, StreamUnavailable
from pipeline.fingerprint.cluster import TemplateStoreLike as TemplateStore
from pipeline.fingerprint.cluster import Tokens

__all__ = ["MemoryTemplateStore", "RedisTemplateStore", "TemplateStore"]

_SEP = "\x1f"


class MemoryTemplateStore:
    def __init__(self) -> None:
        self._groups: dict[str, set[Tokens]] = {}
        #: each group's members, kept sorted as they arrive (not sorted again per read)
        self._sorted: dict[str, list[Tokens]] = {}
        self._sizes: dict[str, int] = {}

    def add(self, group: str, tokens: Tokens, limit: int) -> int:
        members = self._groups.setdefault(group, set())
        if len(members) < limit and tokens not in members:
            members.add(tokens)
            bisect.insort(self._sorted.setdefault(group, []), tokens)
        return len(members)

    def members(self, group: str) -> Sequence[Tokens]:
        return tuple(self._sorted.get(group, ()))

    def sync(self, items: Sequence[tuple[str, Tokens]], groups: Sequence[str], limit: int
             ) -> dict[str, tuple[Sequence[Tokens], bool]]:
        for group, tokens in items:
            self.add(group, tokens, limit)
        out: dict[str, tuple[Sequence[Tokens], bool]] = {}
        for group in groups:
            size = len(self._groups.get(group, ()))
            changed = self._sizes.get(group) != size
            # (read only when changed: a large group sorted for every batch was most of the
            # work of a batch of known sequences)
            out[group] = (self.members(group) if changed else (), changed)
            self._sizes[group] = size
        return out


# add when below the limit, return the size (atomic, so the limit holds across workers);
# a member new to the set is also appended to the group's log (KEYS[2], same hash slot)
_ADD_SCRIPT = """
local size = redis.call('SCARD', KEYS[1])
if size < tonumber(ARGV[2]) then
  if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[1])
    size = size + 1
  end
end
return size
"""


# a whole batch in one command (one server round trip, one reply to parse): KEYS are each
# group's set and log; ARGV: the limit, how many groups, per group the log offset to read
# from (-1: not read), then (group index, member) per sequence to add; returns, per group
# read, its log entries from that offset
_SYNC_SCRIPT = """
local limit, groups = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 3 + groups
while i <= #ARGV do
  local g = tonumber(ARGV[i])
  local set, log = KEYS[2 * g - 1], KEYS[2 * g]
  if redis.call('SCARD', set) < limit and redis.call('SADD', set, ARGV[i + 1]) == 1 then
    redis.call('RPUSH', log, ARGV[i + 1])
  end
  i = i + 2
end
local out = {}
for g = 1, groups do
  local offset = tonumber(ARGV[2 + g])
  if offset >= 0 then out[#out + 1] = redis.call('LRANGE', KEYS[2 * g], offset, -1) end
end
return out
"""


class RedisTemplateStore:
    """Shared store; ``namespace`` is a key prefix such as ``heal:fp:fp-v5``.

    Raises:
        StreamUnavailable: Redis cannot be reached (from ``add`` / ``members``).
        AccessRefused: the ACL of Redis's user refused the store's keys (under HEAL_STREAM_PREFIX
            ``prefix``) or its commands: not an outage, waiting would never end it.
    """

    def __init__(self, client: Any, namespace: str, prefix: str | None = None) -> None:
        self._client = client
        self._namespace = namespace
        self._prefix = prefix if prefix is not None else namespace.split(":", 1)[0]
        self._add = client.register_script(_ADD_SCRIPT)
        #: SHA of the batch script once loaded (see ``_sync_script``)
        self._sync_sha: str | None = None
        #: a Redis Cluster client (new sequences are then added one call each; steady state,
        #: with every sequence known, stays one round trip per batch)
        self._cluster = hasattr(client, "get_nodes")
        #: group -> what this store object has read of the group's log
        self._seen: dict[str, _Seen] = {}

    def _failure(self, exc: Exception) -> AccessRefused | StreamUnavailable:
        """What a failed store command raises: the ACL's refusal (NOPERM) as the
        configuration error it is, anything else as an outage (the entry is parked)."""
        from pipeline.runtime.connection import acl_refusal

        refusal = acl_refusal(exc, self._prefix)
        if refusal is not None:
            return AccessRefused(f"template store: {refusal}")
        return StreamUnavailable(f"template store: {exc}")

    def _key(self, group: str) -> str:
        digest = hashlib.blake2b(group.encode("utf-8", "replace"), digest_size=10).hexdigest()
        # the group's set and log share the hash tag: one slot on a Redis Cluster
        return f"{self._namespace}:tpl:{{{digest}}}"

    def _keys(self, group: str) -> list[str]:
        key = self._key(group)
        return [key, f"{key}:log"]

    def probe_keys(self) -> list[tuple[str, str]]:
        """(what, key) of keys shaped as the store's own (a group's set and log), for a
        worker to try at start (see ``pipeline.stage.StartupProbe``): a Redis user whose key
        patterns leave them out is refused then, not at the first event."""
        return [("template store", key) for key in self._keys("")]

    def add(self, group: str, tokens: Tokens, limit: int) -> int:
        try:
            return int(self._add(keys=self._keys(group), args=[_SEP.join(tokens), limit]))
        except Exception as exc:  # redis errors become ours at the edge
            raise self._failure(exc) from exc

    def sync(self, items: Sequence[tuple[str, Tokens]], groups: Sequence[str], limit: int
             ) -> dict[str, tuple[Sequence[Tokens], bool]]:
        """Add ``items`` (group, tokens) and read every member of ``groups`` in ONE
        round trip; per group: (its members, sorted, when any were new to this store object,
        else ``()``; whether any were new). Only the log entries not read before are
        transferred (the set only grows, so what was read stays true)."""
        try:
            try:
                replies = self._sync(items, groups, limit)
            except NoScriptError:  # Redis restarted (or flushed its scripts): load it again
                self._sync_sha = None
                replies = self._sync(items, groups, limit)  # adds are idempotent
        except Exception as exc:  # redis errors become ours at the edge
            raise self._failure(exc) from exc
        out: dict[str, tuple[Sequence[Tokens], bool]] = {}
        for group, raw in zip(groups, replies, strict=True):
            seen = self._seen.get(group)
            if seen is None:
                seen = self._seen[group] = _Seen()
            changed = seen.read(raw)
            out[group] = (tuple(seen.ordered) if changed else (), changed)
        return out

    def _sync(self, items: Sequence[tuple[str, Tokens]], groups: Sequence[str], limit: int
              ) -> list[Any]:
        """The round trip of ``sync``: per group of ``groups``, its log entries not read yet.

        Raises: redis errors; NoScriptError when Redis lost the script."""
        if not self._cluster:
            return self._sync_script(items, groups, limit)
        # a cluster: the groups live in different slots, and redis-py's cluster pipeline
        # refuses scripts, so new sequences are added one call each, then one pipeline reads
        for group, tokens in items:
            self._add(keys=self._keys(group), args=[_SEP.join(tokens), limit])
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            pipe.lrange(self._keys(group)[1], self._offset(group), -1)
        replies: list[Any] = pipe.execute()
        return replies

    def _sync_script(self, items: Sequence[tuple[str, Tokens]], groups: Sequence[str],
                     limit: int) -> list[Any]:
        """``_sync`` as ONE script call (one node: every key may be touched at once), by
        EVALSHA of a script loaded once per store object (a redis-py Script in a pipeline
        costs a SCRIPT EXISTS round trip per call).

        Raises: redis errors; NoScriptError when Redis lost the script."""
        index: dict[str, int] = {}
        keys: list[str] = []
        for group in [*groups, *(g for g, _ in items)]:
            if group not in index:
                index[group] = len(index) + 1
                keys += self._keys(group)
        read = set(groups)
        args: list[Any] = [limit, len(index)]
        args += [self._offset(g) if g in read else -1 for g in index]
        for group, tokens in items:
            args += [index[group], _SEP.join(tokens)]
        if self._sync_sha is None:  # (through the client the scripts were registered on)
            self._sync_sha = self._add.registered_client.script_load(_SYNC_SCRIPT)
        replies: list[Any] = self._client.evalsha(self._sync_sha, len(keys), *keys, *args)
        return replies

    def _offset(self, group: str) -> int:
        seen = self._seen.get(group)
        return 0 if seen is None else seen.offset

    def members(self, group: str) -> Sequence[Tokens]:
        try:
            raw = self._client.smembers(self._key(group))
        except Exception as exc:
            raise self._failure(exc) from exc
        return sorted(_tokens(m) for m in raw)


class _Seen:
    """What one store object has read of one group's log: its members, kept sorted as they
    arrive (a few new members are inserted, not the whole group sorted again each batch),
    and how many log entries that is."""

    __slots__ = ("members", "ordered", "offset")

    def __init__(self) -> None:
        self.members: set[Tokens] = set()
        self.ordered: list[Tokens] = []
        self.offset = 0

    def read(self, raw: Sequence[Any]) -> bool:
        """Take log entries read from ``offset``; whether the caller should (re)mine: new
        members, or the first read of the group."""
        first = self.offset == 0
        self.offset += len(raw)
        fresh = {_tokens(m) for m in raw} - self.members
        if fresh:
            self.members |= fresh
            if len(fresh) * 8 < len(self.ordered):
                for tokens in fresh:
                    bisect.insort(self.ordered, tokens)
            else:
                self.ordered = sorted(self.members)
        return bool(raw) or first


def _tokens(member: Any) -> Tokens:
    text = member.decode("utf-8") if isinstance(member, bytes) else str(member)
    return tuple(text.split(_SEP)) if text else ()
