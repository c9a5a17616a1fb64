"""Numeric HEAL_* settings go through one checked parser (pipeline/envnumbers.py): a value that
is not a finite number in its range is refused when the command starts, exit 2, naming the
variable, the value as written and the range (QA s19b, defect 2: HEAL_SWEEP_INTERVAL_S=inf
killed the lifecycle timer thread with a bare traceback while the worker ran on; -3, abc
and nan were silently replaced). A background thread of a worker that dies anyway is logged
and stops the worker (exit 1) instead of leaving it running without that thread's work."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline import envnumbers
from pipeline.errors import ConfigError, HealError
from pipeline.runtime import runner

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    # engines nobody listens on: a setting that is not refused shows as an outage (exit 1)
    base.update(PYTHONPATH=str(ROOT), HEAL_HOME=str(tmp_path / "home"),
                HEAL_REDIS_URL="redis://127.0.0.1:1", HEAL_DATABASE_URL="postgresql://127.0.0.1:1/h")
    return subprocess.run([*HEAL, *args], env={**base, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("value", ["inf", "1e300", "-3", "abc", "nan", "0", "0.5", "86401",
                                   " 300", "3_0", "\u0663"])
def test_a_bad_sweep_interval_stops_the_lifecycle_worker_at_start(tmp_path: Path,
                                                                  value: str) -> None:
    # When a lifecycle worker starts with HEAL_SWEEP_INTERVAL_S that is no finite number of
    # seconds in range (before: inf killed the timer thread, -3/abc/nan were replaced)
    done = _heal(tmp_path, "worker", "lifecycle", HEAL_SWEEP_INTERVAL_S=value)
    # Then it is refused before any work, exit 2, naming the variable, value and range
    assert done.returncode == 2, done
    assert f"HEAL_SWEEP_INTERVAL_S={value!r}: must be a number of seconds from 1 to 86400" \
        in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done


def test_every_command_checks_the_numeric_settings(tmp_path: Path) -> None:
    # a setting read by one stage is still checked by every command (heal status on a host
    # whose environment the workers share says so at once)
    done = _heal(tmp_path, "status", HEAL_SWEEP_INTERVAL_S="inf")
    assert done.returncode == 2, done
    assert "HEAL_SWEEP_INTERVAL_S='inf'" in done.stderr, done.stderr


@pytest.mark.parametrize("value, number", [("", 300.0), ("1", 1.0), ("2.5", 2.5),
                                           ("86400", 86400.0)])
def test_good_sweep_intervals_are_taken(value: str, number: float) -> None:
    assert envnumbers.SWEEP_INTERVAL_S.parse(value) == number


def test_every_numeric_setting_has_a_finite_range() -> None:
    for setting in envnumbers.ALL:
        assert setting.low <= setting.default <= setting.high, setting
        with pytest.raises(ConfigError, match=setting.variable):
            setting.parse("inf")


class _IdleWorker:
    """A stage worker that waits until stopped (run_threads' view of one)."""

    stage = "lifecycle"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.client = None
        self.settings = None

    def run(self) -> None:
        self._stop.wait(30)

    def stop(self) -> None:
        self._stop.set()

    def finish(self) -> None:
        pass


class _NoHeartbeat:
    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> _NoHeartbeat:
        return self

    def stop(self) -> None:
        pass


def test_a_background_thread_that_dies_stops_the_worker(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # Given a running worker whose background thread dies of an uncaught exception
    monkeypatch.setattr(runner, "Heartbeat", _NoHeartbeat)
    monkeypatch.setattr(runner, "install_stop_signals", lambda on_stop: None)
    monkeypatch.setattr(runner, "_warn_other_layouts", lambda workers: None)
    worker = _IdleWorker()
    before = threading.excepthook

    def die() -> None:
        raise OverflowError("cannot convert float infinity to integer")

    threading.Timer(0.3, lambda: threading.Thread(target=die, name="heal-test-timer").start()
                    ).start()
    # Then the worker stops with an error naming the thread (exit 1), and the log says so
    with pytest.raises(HealError, match="background thread heal-test-timer died: OverflowError"):
        runner.run_threads([worker])  # type: ignore[list-item]
    assert "background thread heal-test-timer died" in caplog.text
    assert threading.excepthook is before  # restored once it stopped
