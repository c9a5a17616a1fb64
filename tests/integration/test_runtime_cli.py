"""``heal worker`` and ``heal up`` as a user runs them: real processes, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.runtime import live_stages, loader

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_and_unbuilt_stages_are_clear_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["worker", "nope"]) == 2
    assert "unknown stage 'nope'; the stages are: fingerprint" in capsys.readouterr().err
    monkeypatch.setitem(loader.STAGES, "ghost", ("errors", "fingerprints"))
    assert main(["worker", "ghost"]) == 1
    assert "stage ghost is not built yet" in capsys.readouterr().err
    assert main(["up", "--stages", "ghost"]) == 1
    assert "stage ghost is not built yet" in capsys.readouterr().err


def test_bad_options_say_what_to_change(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "fingerprint", "--retention", "forever"]) == 2
    assert "age:7d" in capsys.readouterr().err
    assert main(["worker", "fingerprint", "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err


@pytest.fixture
def worker_env(tmp_path: Path, redis_url: str, prefix: str) -> dict[str, str]:
    """Redis only: the runtime's commands need no database."""
    return {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
            "HEAL_STREAM_PREFIX": prefix}


def run_until_handled(argv: list[str], worker_env: dict[str, str], count: int) -> None:
    pytest.importorskip("consumers.fingerprint", reason="the fingerprint stage is not built")
    client = redis.Redis.from_url(worker_env["HEAL_REDIS_URL"])
    prefix = worker_env["HEAL_STREAM_PREFIX"]
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        event = {"v": 1, "id": f"cli-{i}", "text": f"ModuleNotFoundError: No module named 'm{i}'"}
        pipe.xadd(f"{prefix}:errors", {"event": orjson.dumps(event)})
    pipe.execute()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         *argv], cwd=ROOT,
        env={**os.environ, **worker_env}, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while client.xlen(f"{prefix}:fingerprints") < count:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker did not handle the events"
            time.sleep(0.1)
        settings = Settings.from_env(worker_env)
        assert "fingerprint" in live_stages(client, settings)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert live_stages(client, settings) == set()
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM reaches the worker processes too
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    ids = {orjson.loads(f[b"event"])["error_id"] for _, f in
           client.xrange(f"{prefix}:fingerprints")}
    assert ids == {f"cli-{i}" for i in range(count)}
    assert client.xpending(f"{prefix}:errors", "fingerprint")["pending"] == 0


def test_heal_worker_with_two_processes_handles_everything_and_stops_on_sigterm(
    worker_env: dict[str, str]
) -> None:
    run_until_handled(["worker", "fingerprint", "--concurrency", "2", "--block-ms", "200"],
                      worker_env, 200)


def test_heal_up_runs_the_stages_and_stops_on_sigterm(worker_env: dict[str, str]) -> None:
    run_until_handled(["up", "--stages", "fingerprint", "--block-ms", "200"], worker_env, 50)


def spawned_children(parent: int) -> set[int]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(parent)],
                         capture_output=True, text=True, check=False).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line}


def test_a_crashed_worker_process_is_restarted(worker_env: dict[str, str]) -> None:
    pytest.importorskip("consumers.fingerprint", reason="the fingerprint stage is not built")
    client = redis.Redis.from_url(worker_env["HEAL_REDIS_URL"])
    prefix = worker_env["HEAL_STREAM_PREFIX"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", "fingerprint", "--concurrency", "2", "--block-ms", "200"],
        cwd=ROOT, env={**os.environ, **worker_env}, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while len(list(client.scan_iter(f"{prefix}:alive:*"))) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        first = spawned_children(proc.pid)
        assert len(first) == 2
        os.kill(min(first), signal.SIGKILL)
        while len(spawned_children(proc.pid) - first) < 1:
            assert time.monotonic() < deadline, "the crashed worker was not restarted"
            time.sleep(0.1)
        event = {"v": 1, "id": "after-restart", "text": "OSError: disk full"}
        client.xadd(f"{prefix}:errors", {"event": orjson.dumps(event)})
        while client.xlen(f"{prefix}:fingerprints") < 1:
            assert time.monotonic() < deadline, "the restarted workers did not handle it"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM reaches the worker processes too
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_worker_processes_stop_when_their_supervisor_is_killed(
    worker_env: dict[str, str]
) -> None:
    pytest.importorskip("consumers.fingerprint", reason="the fingerprint stage is not built")
    client = redis.Redis.from_url(worker_env["HEAL_REDIS_URL"])
    prefix = worker_env["HEAL_STREAM_PREFIX"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", "fingerprint", "--concurrency", "2", "--block-ms", "200"],
        cwd=ROOT, env={**os.environ, **worker_env}, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while len(list(client.scan_iter(f"{prefix}:alive:*"))) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    children = spawned_children(proc.pid)
    proc.kill()
    proc.wait(10)
    while any(Path(f"/proc/{pid}/cmdline").exists()
              and Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children):
        assert time.monotonic() < deadline, "orphaned worker processes kept running"
        time.sleep(0.1)
    assert list(client.scan_iter(f"{prefix}:alive:*")) == []  # they stopped cleanly
