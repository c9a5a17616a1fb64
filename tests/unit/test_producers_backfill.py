"""Backfill helpers: --since parsing, replay copies, deterministic file scans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.events import ErrorEvent
from producers.backfill import replay_copy, scan_file, since_to_id


def test_since_accepts_ids_ages_and_iso_times() -> None:
    assert since_to_id("1700000000000-5") == "1700000000000-5"
    assert since_to_id("1700000000000") == "1700000000000-0"
    assert since_to_id("2h", now=10_000.0) == f"{(10_000 - 7200) * 1000}-0"
    assert since_to_id("2026-11-22T10:00:00Z") == "1795341600000-0"
    with pytest.raises(UsageError, match="--since"):
        since_to_id("yesterday")


def test_replay_copy_gets_a_new_id_tagged_with_the_original() -> None:
    event = ErrorEvent(id="ci-1", text="boom", tags={"a": 1})
    copy = replay_copy(event, "T1")
    assert copy.id == "ci-1~replay-T1"
    assert copy.tags == {"a": 1, "replay_of": "ci-1", "replay": "T1"}
    again = replay_copy(copy, "T2")  # replaying a replay still points at the original,
    assert again.tags["replay_of"] == "ci-1"  # but its id is made of the copy's own id
    assert again.id == "ci-1~replay-T1~replay-T2"
    long = replay_copy(ErrorEvent(id="x" * 250, text="t"), "T")
    assert len(long.id) <= 256 and long.tags["replay_of"] == "x" * 250
    # a tag claiming to be a replay of another event names nothing but itself
    claim = replay_copy(ErrorEvent(id="evil", text="t", tags={"replay_of": "ci-1"}), "T")
    assert claim.id == "evil~replay-T" and claim.tags["replay_of"] == "evil"


def test_scan_is_deterministic_and_reads_gzip(tmp_path: Path) -> None:
    import gzip

    text = "head\nERROR a\nINFO b\nTraceback (most recent call last):\n  x\nKeyError: 1\n"
    plain = tmp_path / "a.log"
    plain.write_text(text)
    packed = tmp_path / "a.log.1.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    first = [e for e, _ in scan_file(plain)]
    heads = [e.text.splitlines()[0] for e in first]
    assert heads == ["ERROR a", "Traceback (most recent call last):"]
    assert [e.id for e, _ in scan_file(plain)] == [e.id for e in first]
    # a rotated, compressed copy of the same history yields the same ids (no double publish)
    assert [e.id for e, _ in scan_file(packed)] == [e.id for e in first]
    assert all(e.source.kind == "backfill" for e in first)


def test_progress_of_a_gz_counts_the_compressed_bytes_its_size_totals(tmp_path: Path) -> None:
    """The progress of a .gz said "1500.0/200.0 MB": it counted decompressed bytes against
    the file's (compressed) size. It now counts what was read of the file on disk."""
    import gzip
    import random

    from producers.backfill import Progress

    rng = random.Random(7)
    lines = "".join(f"INFO step {rng.getrandbits(64):x} done\n" for _ in range(120_000))
    packed = tmp_path / "big.log.gz"
    packed.write_bytes(gzip.compress(lines.encode()))
    size = packed.stat().st_size
    assert len(lines) > 2 * size  # decompressed runs well past the file's size

    class Recorded(Progress):
        def __init__(self) -> None:
            self.ticks: list[tuple[float, float | None]] = []

        def tick(self, message: Callable[..., str], done: float = 0,
                 total: float | None = None) -> None:
            self.ticks.append((done, total))

    seen = Recorded()
    assert list(scan_file(packed, progress=seen)) == []  # INFO lines: no error
    assert len(seen.ticks) > 2
    assert all(total == size and 0 <= done <= size for done, total in seen.ticks), seen.ticks
    assert seen.ticks[-1][0] > size / 2
