"""A stage worker tunes the cyclic garbage collector of its process (pipeline.runtime.gctune)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline
from pipeline.runtime.gctune import WORKER_THRESHOLDS, tune_for_worker


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[None]:
    """Each test starts from CPython's defaults and leaves the process as it found it."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_a_stage_drained_through_the_runtime_raises_the_collector_thresholds(
        redis_url: str, prefix: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    client.xadd(settings.stream("errors"),
                {"event": ErrorEvent(id="e1", text="ERROR job 1 failed").encode()})
    assert drain_inline(settings, client, stages=["fingerprint"]) == 1
    assert gc.get_threshold() == WORKER_THRESHOLDS
    assert gc.isenabled()


def test_thresholds_set_higher_by_the_program_are_kept() -> None:
    gc.set_threshold(100_000, 5, 1_000)
    assert tune_for_worker() == (100_000, 20, 1_000)


def test_a_collector_switched_off_by_threshold_zero_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    assert tune_for_worker() == (0, 10, 10)
