"""Partitioned streams (HEAL_PARTITIONS=N) on the real embedded Redis: routing stability,
hand-off within a partition, heal run's decision on its partition, status aggregation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from pipeline.cli.status import partitioned_status
from pipeline.config import Settings
from pipeline.events import ErrorEvent, Repo
from pipeline.runtime import drain_inline
from producers.publisher import Publisher

REPOS = [f"/srv/repo-{i}" for i in range(12)]


def partitioned(redis_url: str, prefix: str, tmp_path: Path, n: int = 3) -> Settings:
    return Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix,
                    partitions=n)


def events(count: int) -> list[ErrorEvent]:
    return [ErrorEvent(id=f"ev-{i}", text=f"ERROR job {i} failed: disk quota exceeded",
                       repo=Repo(path=REPOS[i % len(REPOS)])) for i in range(count)]


def ids_in(client: redis.Redis, stream: str) -> list[str]:
    return [orjson.loads(f[b"event"])["id"] for _, f in client.xrange(stream)]


def test_one_repository_stays_in_one_partition_in_publish_order(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given 3 partitions and events of 12 repositories, interleaved
    settings = partitioned(redis_url, prefix, tmp_path)
    sent = events(120)
    # When they are published, twice (a second producer process computes the same routes)
    Publisher(client, settings).publish_many(sent)
    Publisher(client, Settings.from_env({"HEAL_REDIS_URL": redis_url,
                                         "HEAL_STREAM_PREFIX": prefix,
                                         "HEAL_PARTITIONS": "3"})).publish_many(sent)
    streams = {k: ids_in(client, f"{prefix}:errors:{{{k}}}") for k in range(3)}
    # Then every partition got events, nothing went to the unpartitioned stream
    assert all(streams.values()) and client.xlen(f"{prefix}:errors") == 0
    assert sum(len(v) for v in streams.values()) == 240
    # And all events of one repository are in one partition, in publish order
    for repo in REPOS:
        mine = [e.id for e in sent if e.repo.path == repo]
        holders = [k for k, ids in streams.items() if mine[0] in ids]
        assert len(holders) == 1
        assert [i for i in streams[holders[0]] if i in set(mine)] == mine + mine


def test_one_partition_is_todays_contract(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    Publisher(client, partitioned(redis_url, prefix, tmp_path, n=1)).publish_many(events(5))
    assert client.xlen(f"{prefix}:errors") == 5
    assert not client.keys(f"{prefix}:errors:*")


def test_stages_hand_off_within_each_partition_and_status_sums_them(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given events published over 3 partitions
    settings = partitioned(redis_url, prefix, tmp_path)
    Publisher(client, settings).publish_many(events(60))
    # When the fingerprint stage drains every partition
    assert drain_inline(settings, client, stages=["fingerprint"]) == 60
    # Then each partition's fingerprints hold exactly its own errors, once
    for k in range(3):
        errors = ids_in(client, f"{prefix}:errors:{{{k}}}")
        outputs = ids_in(client, f"{prefix}:fingerprints:{{{k}}}")
        assert sorted(f"{e}:fingerprint" for e in errors) == sorted(outputs)
    # And the dedupe markers carry their partition's hash tag (one cluster slot each)
    markers = [k.decode() for k in client.keys(f"{prefix}:done:fingerprint:*")]
    assert markers and all(m.endswith(("{0}", "{1}", "{2}")) for m in markers)
    # And status aggregates the partitions under the stream's plain name
    status = partitioned_status(client, settings, "fingerprints")
    assert status["length"] == 60 and len(status["partitions"]) == 3
    assert partitioned_status(client, settings, "errors")["groups"]["fingerprint"]["pending"] == 0


def test_heal_run_gets_its_decision_from_its_partition(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HEAL_PROGRESS")}
    env.update(heal_env, HEAL_PARTITIONS="3")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "run", "--mode", "suggest", "--", "sh", "-c",
         "echo \"ModuleNotFoundError: No module named 'yaml'\" >&2; exit 3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 3
    assert "no decision" not in done.stderr
    assert any(word in done.stderr for word in ("suggested", "escalated", "observed")), \
        done.stderr
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    prefix = heal_env["HEAL_STREAM_PREFIX"]
    assert sum(client.xlen(f"{prefix}:outcomes:{{{k}}}") for k in range(3)) == 1
    assert client.xlen(f"{prefix}:outcomes") == 0


def test_heal_worker_serves_every_partition_and_stops_on_sigterm(
    tmp_path: Path, heal_env: dict[str, str], client: redis.Redis
) -> None:
    import signal
    import time

    # Given events over 3 partitions and one `heal worker fingerprint` process
    env = {**os.environ, **heal_env, "HEAL_PARTITIONS": "3"}
    prefix = heal_env["HEAL_STREAM_PREFIX"]
    settings = Settings.from_env(env)
    Publisher(client, settings).publish_many(events(45))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", "fingerprint", "--block-ms", "200"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        # Then it drains every partition into that partition's fingerprints
        deadline = time.monotonic() + 120
        def lengths() -> list[int]:
            return [int(client.xlen(f"{prefix}:fingerprints:{{{k}}}")) for k in range(3)]
        while sum(lengths()) < 45 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(lengths()) == 45 and all(lengths())
        # And an event published later to any partition is picked up too (blocking reads
        # rotate over the partitions)
        late = [ErrorEvent(id=f"late-{i}", text="ERROR late", repo=Repo(path=REPOS[i]))
                for i in range(len(REPOS))]
        Publisher(client, settings).publish_many(late)
        while sum(lengths()) < 45 + len(late) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(lengths()) == 45 + len(late)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    assert code == 0


def _status(main: object, capsys: object) -> tuple[int, dict, str]:
    code = main(["status", "--json"])  # type: ignore[operator]
    out = capsys.readouterr()  # type: ignore[attr-defined]
    return code, orjson.loads(out.out), out.err


def test_streams_of_another_partition_layout_holding_work_fail_status(
    client: redis.Redis, heal_env: dict[str, str], monkeypatch: object, capsys: object
) -> None:
    from pipeline.cli import main

    prefix = heal_env["HEAL_STREAM_PREFIX"]
    # Given events emitted with HEAL_PARTITIONS=3, while the workers now run with 2
    Publisher(client, Settings.from_env({**heal_env, "HEAL_PARTITIONS": "3"})).publish_many(
        events(30))
    held = int(client.xlen(f"{prefix}:errors:{{2}}"))
    assert held
    monkeypatch.setenv("HEAL_PARTITIONS", "2")  # type: ignore[attr-defined]
    # Then heal status says nobody reads partition 2, with its length and what to do: exit 1
    code, status, err = _status(main, capsys)
    assert code == 1 and status["ok"] is False
    assert [s["stream"] for s in status["stranded"]["streams"]] == [f"{prefix}:errors:{{2}}"]
    assert status["stranded"]["streams"][0]["unread"] == held
    assert status["stranded"]["complete"] is True
    (problem,) = [p for p in status["problems"] if "another partition layout" in p]
    assert f"{prefix}:errors:{{2}} ({held} entries: {held} unread, 0 pending)" in problem
    assert "HEAL_PARTITIONS=3 or more" in problem and "then switch" in problem
    assert problem in err
    # And going from 3 to 1, every partition stream is named (the plain stream is empty)
    monkeypatch.setenv("HEAL_PARTITIONS", "1")  # type: ignore[attr-defined]
    code, status, _ = _status(main, capsys)
    assert code == 1
    assert [s["stream"] for s in status["stranded"]["streams"]] == [
        f"{prefix}:errors:{{{k}}}" for k in range(3)]
    assert sum(s["length"] for s in status["stranded"]["streams"]) == 30


def test_a_producer_publishing_unpartitioned_while_partitioned_is_shown_by_status(
    client: redis.Redis, heal_env: dict[str, str], monkeypatch: object, capsys: object
) -> None:
    from pipeline.cli import main

    prefix = heal_env["HEAL_STREAM_PREFIX"]
    # Given HEAL_PARTITIONS=3 and a raw producer still doing XADD <prefix>:errors
    monkeypatch.setenv("HEAL_PARTITIONS", "3")  # type: ignore[attr-defined]
    for i in range(4):
        client.xadd(f"{prefix}:errors", {"event": orjson.dumps(
            {"v": 1, "id": f"raw-{i}", "text": "boom"})})
    # And a partition stream of a larger layout that was read and acknowledged to the end
    old = f"{prefix}:errors:{{7}}"
    client.xadd(old, {"event": b"{}"})
    client.xgroup_create(old, "fingerprint", id="0")
    for entry_id, _ in client.xreadgroup("fingerprint", "c", {old: ">"})[0][1]:
        client.xack(old, "fingerprint", entry_id)
    # Then status shows the plain stream's length as a problem (nobody reads it), and not
    # the drained history
    code, status, _ = _status(main, capsys)
    assert code == 1
    assert [s["stream"] for s in status["stranded"]["streams"]] == [f"{prefix}:errors"]
    (problem,) = [p for p in status["problems"] if "another partition layout" in p]
    assert f"{prefix}:errors (4 entries: 4 unread, 0 pending): written unpartitioned" in problem
    assert "HEAL_PARTITIONS=3" in problem


def test_a_worker_warns_at_start_about_streams_of_another_layout(
    tmp_path: Path, heal_env: dict[str, str], client: redis.Redis
) -> None:
    import signal
    import time

    prefix = heal_env["HEAL_STREAM_PREFIX"]
    Publisher(client, Settings.from_env({**heal_env, "HEAL_PARTITIONS": "3"})).publish_many(
        events(30))
    # (PYTHONPATH: the heal of this checkout, whatever the venv's editable install names)
    env = {**os.environ, **heal_env, "HEAL_PARTITIONS": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", "fingerprint", "--block-ms", "200"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (client.xlen(f"{prefix}:fingerprints:{{0}}") + client.xlen(
                f"{prefix}:fingerprints:{{1}}") == 0 and time.monotonic() < deadline):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "WARNING" in err and f"{prefix}:errors:{{2}} (" in err, err
    assert "HEAL_PARTITIONS=3 or more" in err
    # the stranded partition was not read (no group was even created there)
    assert client.xinfo_groups(f"{prefix}:errors:{{2}}") == []


def _outcome(error_id: str, fine: str, status: str, detail: str) -> bytes:
    from pipeline.events import OutcomeEvent

    return OutcomeEvent(id=f"{error_id}:outcome", error_id=error_id,
                        error=ErrorEvent(id=error_id, text=f"text of {detail}"),
                        fine=fine, status=status, detail=detail).encode()


def test_explain_shows_the_newest_outcome_across_partitions(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from pipeline.operator.explain import outcome_reader

    settings = partitioned(redis_url, prefix, tmp_path)
    fine = "fp-v4:" + "a" * 16
    # Given an older outcome of the fingerprint in partition 0 and a newer one in partition 2
    # (read partition by partition, the older one came first)
    client.xadd(f"{prefix}:outcomes:{{0}}", {"event": _outcome("e-old", fine, "escalated",
                                                               "old reason")})
    client.xadd(f"{prefix}:outcomes:{{1}}", {"event": _outcome("e-other", "fp-v4:b", "applied",
                                                               "another fingerprint")})
    client.xadd(f"{prefix}:outcomes:{{2}}", {"event": _outcome("e-new", fine, "applied",
                                                               "new detail")})
    # Then explain's reader returns the newest anywhere
    newest = outcome_reader(client, settings)([fine])
    assert newest is not None
    assert (newest["error_id"], newest["detail"]) == ("e-new", "new detail")
    # And when the newer one is in the first partition, it is still the one
    client.xadd(f"{prefix}:outcomes:{{0}}", {"event": _outcome("e-newest", fine, "rolled_back",
                                                               "newest detail")})
    newest = outcome_reader(client, settings)([fine])
    assert newest is not None and newest["error_id"] == "e-newest"


def test_report_reads_escalation_reasons_from_every_partition(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from pipeline.cli.report import stream_facts

    settings = partitioned(redis_url, prefix, tmp_path)
    # Given escalations in partitions 1 and 2 (none in the plain outcomes stream), one error
    # escalated twice: first in partition 2, later in partition 0
    client.xadd(f"{prefix}:outcomes:{{1}}", {"event": _outcome("e1", "fp-v4:a", "escalated",
                                                               "no fix known")})
    client.xadd(f"{prefix}:outcomes:{{2}}", {"event": _outcome("e2", "fp-v4:b", "escalated",
                                                               "first reason")})
    client.xadd(f"{prefix}:outcomes:{{0}}", {"event": _outcome("e2", "fp-v4:b", "escalated",
                                                               "second reason")})
    client.xadd(f"{prefix}:outcomes:{{0}}", {"event": _outcome("e3", "fp-v4:c", "applied",
                                                               "not an escalation")})
    # Then heal report's reasons come from every partition, the newest per error
    assert stream_facts(settings)[0] == {"e1": "no fix known", "e2": "second reason"}


def test_an_idle_partitioned_worker_waits_on_every_partition_with_one_read(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """Idle, a worker of 64 partitions makes one non-blocking read per partition per
    block_ms and waits with one XREAD naming them all (it read every partition in turn for a
    slice of block_ms / N: 64 reads every 10 ms, idle CPU growing with N); an event then
    published to any partition is handled."""
    import threading
    import time
    from collections import Counter
    from typing import Any

    from pipeline.runtime import StageWorker, WorkerOptions
    from pipeline.runtime.noop import PassThroughHandler
    from pipeline.runtime.partitions import PartitionedWorker

    calls: Counter[str] = Counter()

    class Counting(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            calls[str(args[0]).upper()] += 1
            return super().execute_command(*args, **options)

    client = Counting.from_url(redis_url)
    settings = partitioned(redis_url, prefix, tmp_path, n=64)
    parts = [StageWorker(client, view, "fingerprint", PassThroughHandler(),
                         options=WorkerOptions(block_ms=500))
             for view in settings.partition_views()]
    worker = PartitionedWorker(parts)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while calls["XREAD"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        calls.clear()
        time.sleep(2.0)
        idle = dict(calls)
        # 2 s at block_ms 500: about 4 passes of 64 reads (the rotation made ~13,000)
        assert idle.get("XREADGROUP", 0) <= 64 * 8, idle
        assert 1 <= idle.get("XREAD", 0) <= 8, idle
        # And what arrives while it waits is handled, in every partition
        Publisher(client, settings).publish_many(events(128))
        while (sum(int(client.xlen(v.stream("fingerprints"))) for v in settings.partition_views())
               < 128 and time.monotonic() < deadline):
            time.sleep(0.05)
        assert sum(int(client.xlen(v.stream("fingerprints")))
                   for v in settings.partition_views()) == 128
    finally:
        worker.stop()
        thread.join(30)
        client.close()
    assert not thread.is_alive()


def test_heal_learn_finds_an_error_in_any_partition(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from pipeline.events import CandidateEvent
    from pipeline.learn.source import find, find_last

    settings = partitioned(redis_url, prefix, tmp_path)
    error = ErrorEvent(id="unmatched-1", text="E   weird failure", repo=Repo(path=str(tmp_path)))
    candidate = CandidateEvent(id="unmatched-1:candidate", error_id=error.id, error=error,
                               fine="fp-v4:" + "c" * 16, fix=None)
    # Given an unmatched error whose events went to partition 2 (none in the plain streams)
    client.xadd(f"{prefix}:candidates:{{2}}", {"event": candidate.encode()})
    # Then heal learn --last and heal learn ERROR_ID find it
    assert find_last(client, settings, tmp_path).error_id == "unmatched-1"
    assert find(client, settings, None, "unmatched-1").error_id == "unmatched-1"


def test_the_ci_report_finds_its_candidate_in_the_error_s_partition(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from pipeline.ci import collect
    from pipeline.events import CandidateEvent

    settings = partitioned(redis_url, prefix, tmp_path)
    error = ErrorEvent(id="ci-1", text="E   ModuleNotFoundError: No module named 'yaml'",
                       repo=Repo(path=str(tmp_path)))
    candidate = CandidateEvent(id="ci-1:candidate", error_id=error.id, error=error,
                               fine="fp-v4:" + "d" * 16, fix=None)
    client.xadd(f"{prefix}:candidates:{{1}}", {"event": candidate.encode()})
    # heal run's GitHub/GitLab summary is collected with the unpartitioned settings
    report = collect(client, settings, error, 1, None)
    assert report.candidate is not None and report.candidate.error_id == "ci-1"
