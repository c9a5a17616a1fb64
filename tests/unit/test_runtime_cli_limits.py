"""`heal worker` / `heal up` refuse values that would hurt, with exit 2 and what to change,
before they start anything (no engine, no process, no thread)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.runtime import runner


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Any attempt to start an engine, a worker process or a worker thread fails the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("HEAL_HOME", str(home))
    monkeypatch.delenv("HEAL_REDIS_URL", raising=False)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("something was started")

    import storage.engines

    monkeypatch.setattr(storage.engines, "connect_redis", refuse)
    monkeypatch.setattr(runner.multiprocessing, "get_context", refuse)
    monkeypatch.setattr("pipeline.cli.worker.run_threads", refuse)
    monkeypatch.setattr("pipeline.cli.worker.run_processes", refuse)
    monkeypatch.setattr("pipeline.cli.up.run_threads", refuse)
    return home


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], home: Path) -> str:
    assert main(argv) == 2
    assert not home.exists()  # no engine, no state written
    return capsys.readouterr().err


def test_concurrency_above_the_cap_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], nothing_starts: Path
) -> None:
    cap = runner.max_concurrency()
    assert runner.MIN_CONCURRENCY_CAP <= cap <= runner.MAX_CONCURRENCY_CAP
    err = refused(["worker", "fingerprint", "--concurrency", str(cap + 1)], capsys,
                  nothing_starts)
    assert f"--concurrency {cap + 1}" in err and f"at most {cap}" in err
    assert "--concurrency" in refused(["worker", "fingerprint", "--concurrency", "0"], capsys,
                                      nothing_starts)
    # the supervisor refuses too, whoever calls it
    with pytest.raises(UsageError):
        runner.run_processes(print, lambda i: (i,), cap + 1)


def test_the_cap_follows_the_cores_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, cap in [(1, 8), (2, 8), (4, 16), (8, 32), (16, 64), (256, 64)]:
        monkeypatch.setattr(runner.os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)))
        assert runner.max_concurrency() == cap
