"""Template stores: the persisted set of distinct token sequences, per group.

The miner's state is, per group, a grow-only SET of token sequences (see ``cluster.py``):
adding is idempotent and commutative, so several workers sharing one store reach the same
state whatever the order of their events. Because the set only grows, its size identifies
it, which lets a worker cache its mined templates and recompute only when the size changed.

``MemoryTemplateStore`` is for one process and tests; ``RedisTemplateStore`` shares the set
between workers (one Redis SET per group, members are tokens joined by U+001F).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pipeline.errors import StreamUnavailable
from pipeline.fingerprint.cluster import TemplateStoreLike as TemplateStore
from pipeline.fingerprint.cluster import Tokens

__all__ = ["MemoryTemplateStore", "RedisTemplateStore", "TemplateStore"]

_SEP = "\x1f"


class MemoryTemplateStore:
    def __init__(self) -> None:
        self._groups: dict[str, set[Tokens]] = {}

    def add(self, group: str, tokens: Tokens, limit: int) -> int:
        members = self._groups.setdefault(group, set())
        if len(members) < limit:
            members.add(tokens)
        return len(members)

    def members(self, group: str) -> Sequence[Tokens]:
        return sorted(self._groups.get(group, ()))


# add when below the limit, return the size (atomic, so the limit holds across workers)
_ADD_SCRIPT = """
local size = redis.call('SCARD', KEYS[1])
if size < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  size = redis.call('SCARD', KEYS[1])
end
return size
"""


class RedisTemplateStore:
    """Shared store; ``namespace`` is a key prefix such as ``heal:fp:fp-v2``.

    Raises:
        StreamUnavailable: Redis cannot be reached (from ``add`` / ``members``).
    """

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._add = client.register_script(_ADD_SCRIPT)

    def _key(self, group: str) -> str:
        digest = hashlib.blake2b(group.encode("utf-8", "replace"), digest_size=10).hexdigest()
        return f"{self._namespace}:tpl:{digest}"

    def add(self, group: str, tokens: Tokens, limit: int) -> int:
        try:
            return int(self._add(keys=[self._key(group)], args=[_SEP.join(tokens), limit]))
        except Exception as exc:  # redis errors become ours at the edge
            raise StreamUnavailable(f"template store: {exc}") from exc

    def members(self, group: str) -> Sequence[Tokens]:
        try:
            raw = self._client.smembers(self._key(group))
        except Exception as exc:
            raise StreamUnavailable(f"template store: {exc}") from exc
        decoded = (m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in raw)
        return sorted(tuple(m.split(_SEP)) if m else () for m in decoded)
