"""`heal worker` / `heal up` refuse values that would hurt, with exit 2 and what to change,
before they start anything (no engine, no process, no thread)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.runtime import runner
from pipeline.runtime.options import MAX_BACKOFF_S, MAX_CLAIM_IDLE_MS, WorkerOptions


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


@pytest.mark.parametrize("stages, said", [
    ("lookup,lookup", "names lookup more than once"),
    ("fingerprint, lookup ,fingerprint", "names fingerprint more than once"),
    ("", "names no stage"),
    (" , ,", "names no stage"),
])
def test_heal_up_refuses_an_empty_or_repeated_stage_list(
    stages: str, said: str, capsys: pytest.CaptureFixture[str], nothing_starts: Path
) -> None:
    assert said in refused(["up", "--stages", stages], capsys, nothing_starts)


@pytest.mark.parametrize("command", [["worker", "fingerprint"], ["up"]])
@pytest.mark.parametrize("option, value, said", [
    ("--backoff-base", "nan", "--backoff-base is out of range"),
    ("--backoff-base", "-1", "--backoff-base is out of range"),
    ("--backoff-base", "0", "--backoff-base is out of range"),
    ("--backoff-base", "inf", "--backoff-base is out of range"),
    ("--backoff-cap", "inf", "--backoff-cap is out of range"),
    ("--backoff-cap", "-inf", "--backoff-cap is out of range"),
    ("--backoff-cap", "nan", "--backoff-cap is out of range"),
    ("--backoff-cap", str(MAX_BACKOFF_S * 2), "--backoff-cap is out of range"),
    ("--backoff-cap", "0.1", "is more than --backoff-cap"),  # the default base is 0.5
    ("--dedupe-ttl", "-1", "must be 0 (off) or more"),
    ("--claim-idle-ms", "0", "--claim-idle-ms is out of range"),
    ("--claim-idle-ms", str(MAX_CLAIM_IDLE_MS + 1), "--claim-idle-ms is out of range"),
    ("--batch", "0", "--batch is out of range"),
    ("--block-ms", "0", "--block-ms is out of range"),
    ("--max-deliveries", "0", "--max-deliveries is out of range"),
])
def test_worker_options_out_of_range_are_refused(
    command: list[str], option: str, value: str, said: str,
    capsys: pytest.CaptureFixture[str], nothing_starts: Path,
) -> None:
    assert said in refused([*command, f"{option}={value}"], capsys, nothing_starts)


def test_every_float_option_is_checked() -> None:
    """Each float field the CLIs set is refused when not finite (a new one must be too)."""
    from pipeline.runtime.cliargs import _FIELDS

    floats = [name for name in _FIELDS.values()
              if isinstance(getattr(WorkerOptions(), name), float)]
    assert floats == ["backoff_base_s", "backoff_cap_s"]
    for name in floats:
        for bad in (math.nan, math.inf, -math.inf, -1.0, 0.0):
            with pytest.raises(UsageError):
                WorkerOptions(**{name: bad}).validate()


def test_values_in_range_are_accepted() -> None:
    WorkerOptions(dedupe_ttl_s=0, backoff_base_s=0.01, backoff_cap_s=MAX_BACKOFF_S,
                  claim_idle_ms=MAX_CLAIM_IDLE_MS).validate()
    WorkerOptions(backoff_base_s=2.0, backoff_cap_s=2.0).validate()
