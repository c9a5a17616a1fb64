"""Versioned store of learned artifacts on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.errors import UsageError
from pipeline.guardrails.versions import VersionedStore
from storage.db import Database
from storage.migrate import migrate


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[VersionedStore]:
    db = Database(database_url)
    migrate(db)
    yield VersionedStore(db)
    db.close()


def test_snapshot_list_rollback_prune(store: VersionedStore) -> None:
    name = f"thresholds-{uuid.uuid4().hex[:6]}"
    assert store.snapshot(name, {"tier2": 0.80}) == 1
    assert store.snapshot(name, {"tier2": 0.80}) == 1  # unchanged: no new version
    assert store.snapshot(name, {"tier2": 0.85}) == 2
    assert store.snapshot(name, {"tier2": 0.90}) == 3
    assert store.active(name) == (3, {"tier2": 0.90})
    store.rollback(name, 1)
    assert store.active(name) == (1, {"tier2": 0.80})
    with pytest.raises(UsageError, match="no version 9"):
        store.rollback(name, 9)
    assert store.prune(name, keep=1) == 1  # 2 goes; 3 is newest, 1 is active
    assert [v.version for v in store.list(name)] == [1, 3]


def test_degraded_update_is_rolled_back(store: VersionedStore) -> None:
    name = f"patterns-{uuid.uuid4().hex[:6]}"
    store.snapshot(name, ["p1"])
    store.record_success_rate(name, 1, 0.92)
    store.snapshot(name, ["p1", "p2"])
    store.record_success_rate(name, 2, 0.88)
    assert store.check_regression(name, margin=0.1) is None  # within the margin
    store.snapshot(name, ["p1", "p2", "p3"])
    store.record_success_rate(name, 3, 0.70)
    assert store.check_regression(name, margin=0.1) == 2
    assert store.active(name) == (2, ["p1", "p2"])
