"""The local outbox (``storage.cache.LocalCache``, real SQLite in a temporary home): ops are
queued in order, once per op id, however many one call carries (they go in by several rows
per statement)."""

from __future__ import annotations

from pathlib import Path

from storage.cache import ENQUEUE_ROWS, LocalCache


def test_ops_are_queued_in_order_once_per_id_across_statements(tmp_path: Path) -> None:
    cache = LocalCache.at_home(tmp_path)
    cache.enqueue([("op-0", "issue", {"fine": "a"})])
    n = ENQUEUE_ROWS * 2 + 7  # three statements in one call
    ops = [(f"op-{i}", "occurrence", {"error_id": f"e{i}", "n": i}) for i in range(n)]
    ops.insert(ENQUEUE_ROWS + 3, ("op-5", "occurrence", {"error_id": "again"}))  # a repeat
    cache.enqueue(ops)
    cache.enqueue([])
    pending = cache.pending(limit=10 * n)
    assert [op_id for _, op_id, _, _ in pending] == [f"op-{i}" for i in range(n)]
    # the first queued op of an id wins: the repeats were ignored
    assert pending[0][2:] == ("issue", {"fine": "a"})
    assert pending[5][3] == {"error_id": "e5", "n": 5}
    assert cache.pending_count() == n
    cache.close()
