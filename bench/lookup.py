"""Lookup latency and throughput, each against a baseline measured in the same run.

    tier 1 (cache)   p50/p99 of Lookup.lookup for fingerprints known to the local SQLite
                     cache but not yet to the process (so every call reads SQLite);
                     baselines: a bare dict lookup and a bare SQLite primary-key SELECT
    tier 2 (new fp)  p50/p99 of Lookup.lookup for never-seen fingerprints (fine and coarse)
                     that no rule knows: PostgreSQL asked about them (mappings, learned fix,
                     causal walk) + embedding (all-MiniLM-L6-v2, CPU) + pgvector HNSW top-k;
                     baselines: a bare SQL round trip and a bare embedding, sampled before
                     and after
    threads          (only when asked) p50/p99 of the bare embedding with 1 BLAS thread, the
                     lean runtime's setting, against 2, interleaved in blocks of 10 queries
    stage            events/s of the lookup stage handler as the runtime drives it (decode
                     a batch of 100 FingerprintEvents, prepare it, then per event: lookup,
                     build and encode CandidateEvent) for known fingerprints, with this
                     process's CPU per event; baseline: decode + encode of the same bytes
                     with no lookup; and the same with the runtime's per-batch
                     ``before_handoff`` (the outbox written to SQLite once per batch, before
                     the hand-off) against the writes flushed every 256 ops, interleaved;
                     then the stage listening for PostgreSQL's change notices (the per-batch
                     check) against the same with the check replaced by nothing, interleaved,
                     and what the batch after a notice costs (its caches re-read)

Runs against HEAL_DATABASE_URL when set, else the embedded PostgreSQL; the cache lives in
a temporary HEAL_HOME. Usage: python bench/lookup.py [--n N] [--n2 N2] [--only PART,...]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumers.lookup import LookupHandler  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.events import ErrorEvent, FingerprintEvent  # noqa: E402
from pipeline.lookup.service import Lookup  # noqa: E402
from pipeline.lookup.setup import build_lookup  # noqa: E402
from storage.cache import LocalCache  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.engines import open_database  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "errors"
#: events per batch in the stage part (the runtime's default XREADGROUP count)
BATCH = 100


def timings(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def show(name: str, values: list[float], base: list[float] | None, target_ms: float | None) -> None:
    p50, p99 = pct(values, 0.5) * 1e3, pct(values, 0.99) * 1e3
    line = f"{name:<34} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms"
    if base is not None:
        line += (f"  ({p99 / (pct(base, 0.99) * 1e3):7.2f}x baseline p99, "
                 f"{p50 / (pct(base, 0.5) * 1e3):.2f}x p50)")
    if target_ms is not None:
        line += f"  target p99 < {target_ms} ms: {'OK' if p99 < target_ms else 'MISSED'}"
    print(line)


def known_texts() -> list[str]:
    return [p.read_text() for p in sorted(FIXTURES.glob("*/*.txt")) if "_logic" not in str(p)]


def bench_tier1(lookup: Lookup, home: Path, n: int) -> None:
    texts = known_texts()
    fps = [f"bench:{uuid.uuid4().hex}" for _ in range(n)]
    # learn each fingerprint once (rules), then look it up from a fresh process-like Lookup
    for i, fp in enumerate(fps):
        lookup.lookup(error_id=f"warm-{i}", text=texts[i % len(texts)], fine=fp, coarse="",
                      record=False)
    cold = Lookup(lookup.catalog, LocalCache.at_home(home), db=None, embedder=None)
    result = timings(lambda i: cold.lookup(error_id=f"t1-{i}", text=texts[i % len(texts)],
                                           fine=fps[i], coarse="", record=False), n)
    mapping = {fp: "x" for fp in fps}
    bare_dict = timings(lambda i: mapping.get(fps[i]), n)
    conn = sqlite3.connect(str(home / "lookup-cache.sqlite3"))
    bare_sql = timings(lambda i: conn.execute(
        "SELECT pattern_id FROM fingerprints WHERE fingerprint = ? AND level = 'fine'",
        (fps[i],)).fetchone(), n)
    show("baseline: dict lookup", bare_dict, None, None)
    show("baseline: SQLite PK select", bare_sql, None, None)
    show("tier 1 from the SQLite cache", result, bare_sql, 1.0)


def bench_tier2(lookup: Lookup, n: int) -> None:
    assert lookup.embedder is not None and lookup.db is not None
    db = lookup.db
    lookup.embedder.embed(["warm up"])
    words = ["disk", "cache", "socket", "worker", "queue",
             "broker", "schema", "token", "shard", "replica"]
    texts = [f"Unusual failure {uuid.uuid4().hex[:6]}: the {words[i % 10]} stopped answering "
             f"after {i} attempts" for i in range(n)]
    sql = timings(lambda i: db.fetchval("SELECT 1"), n)
    emb = timings(lambda i: lookup.embedder.embed([texts[i] + " x"]), n)  # type: ignore[union-attr]
    # a fingerprint event always carries a coarse fingerprint too (both new here)
    result = timings(lambda i: lookup.lookup(
        error_id=f"t2-{i}", text=texts[i], fine=f"bench2:{uuid.uuid4().hex}",
        coarse=f"bench2c:{uuid.uuid4().hex}", record=False), n)
    emb_after = timings(lambda i: lookup.embedder.embed([texts[i] + " y"]), n)  # type: ignore[union-attr]
    emb = emb + emb_after  # the embedding baseline sampled before and after the tier 2 run
    tiers = {lookup.lookup(error_id="q", text=t, fine="", coarse="", record=False).tier
             for t in texts[:5]}
    show("baseline: SQL round trip", sql, None, None)
    show("baseline: one embedding", emb, None, None)
    show("tier 2 for a new fingerprint", result, emb, 30.0)
    print(f"{'':<34} (tiers answered for these texts: {sorted(map(str, tiers))})")


def bench_threads(lookup: Lookup, n: int) -> None:
    """The bare embedding with 1 BLAS thread (the lean runtime's setting) against 2,
    interleaved in blocks of 10 queries, so load from other processes hits both alike."""
    from threadpoolctl import threadpool_limits

    assert lookup.embedder is not None
    embedder = lookup.embedder
    embedder.embed(["warm up"])
    words = ["disk", "cache", "socket", "worker", "queue"]
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, float] = {1: 0.0, 2: 0.0}
    for block in range(0, n, 10):
        for threads in (1, 2) if block % 20 == 0 else (2, 1):
            with threadpool_limits(threads, "blas"):
                for i in range(block, block + 10):
                    text = f"Odd failure {uuid.uuid4().hex[:6]}: the {words[i % 5]} hung ({i})"
                    started, used = time.perf_counter(), time.process_time()
                    embedder.embed([text])
                    times[threads].append(time.perf_counter() - started)
                    cpu[threads] += time.process_time() - used
    show("one embedding, 1 BLAS thread", times[1], None, None)
    show("one embedding, 2 BLAS threads", times[2], times[1], None)
    print(f"{'':<34} CPU per query: 1 thread {cpu[1] / len(times[1]) * 1e3:.2f} ms, "
          f"2 threads {cpu[2] / len(times[2]) * 1e3:.2f} ms; load average "
          f"{os.getloadavg()[0]:.1f}")


def stage_events(texts: list[str], n: int, tag: str) -> list[bytes]:
    """``n`` encoded FingerprintEvents of 500 known fingerprints, error ids ``{tag}{i}``."""
    raws = []
    for i in range(n):
        # a fine fingerprint is a function of its text: the same key always carries the same
        # text (500 known fingerprints over the fixture texts); error ids of their own per
        # side, so each side's outbox ops are new
        fine = f"stage:{i % 500}"
        error = ErrorEvent(id=f"{tag}{i}", text=texts[(i % 500) % len(texts)])
        raws.append(FingerprintEvent(id=f"{tag}{i}:fingerprint", error_id=f"{tag}{i}",
                                     error=error, fine=fine, coarse="",
                                     version="fp-v1").encode())
    return raws


def run_stage(handler: LookupHandler, chunk: range, raws: list[bytes],
              settle: Callable[[], None] | None) -> None:
    """As the runtime drives a stage: decode a batch, prepare it, handle each event, and
    (``settle``) make the batch's writes durable before its hand-off."""
    prepare = getattr(handler, "prepare", None)  # (a tree before batch preparation has none)
    for start in range(chunk.start, chunk.stop, BATCH):
        events = [handler.decode(raws[i]) for i in range(start, min(start + BATCH, chunk.stop))]
        if prepare is not None:
            prepare(events)
        for event in events:
            for out in handler.handle(event):
                out.encode()
        if settle is not None:
            settle()


def bench_stage(lookup: Lookup, n: int) -> None:
    texts = known_texts()
    raws, flushed_raws = stage_events(texts, n, "e"), stage_events(texts, n, "f")
    handler = LookupHandler(lookup)
    for raw in raws[:500]:  # learn the 500 fingerprints once
        handler.handle(handler.decode(raw))
    # the runtime's call before each batch's hand-off (a tree before it has none): the
    # batch's writes to the SQLite outbox, one transaction per batch
    before_handoff = getattr(handler, "before_handoff", None)

    def stage(chunk: range) -> None:
        run_stage(handler, chunk, raws, None)

    def stage_flushed(chunk: range) -> None:
        run_stage(handler, chunk, flushed_raws, before_handoff)

    def baseline(chunk: range) -> None:
        for i in chunk:
            FingerprintEvent.decode(raws[i]).encode()

    # interleaved rounds, so load from other processes hits both sides alike; wall time and
    # this process's CPU time (PostgreSQL's own CPU is not in it)
    base_s = stage_s = base_cpu = stage_cpu = flushed_s = flushed_cpu = 0.0
    rounds = 10
    for r in range(rounds):
        chunk = range(r * n // rounds, (r + 1) * n // rounds)
        start, cpu = time.perf_counter(), time.process_time()
        baseline(chunk)
        base_s += time.perf_counter() - start
        base_cpu += time.process_time() - cpu
        lookup.flush()  # each side starts with an empty buffer
        start, cpu = time.perf_counter(), time.process_time()
        stage(chunk)
        stage_s += time.perf_counter() - start
        stage_cpu += time.process_time() - cpu
        if before_handoff is not None:
            lookup.flush()
            start, cpu = time.perf_counter(), time.process_time()
            stage_flushed(chunk)
            flushed_s += time.perf_counter() - start
            flushed_cpu += time.process_time() - cpu
    base_rate, rate = n / base_s, n / stage_s
    lookup.flush()
    print(f"{'baseline: decode + encode':<34} {base_rate:10.0f} events/s  "
          f"CPU {base_cpu / n * 1e6:6.1f} us/event")
    print(f"{'lookup stage, known fingerprints':<34} {rate:10.0f} events/s  "
          f"CPU {stage_cpu / n * 1e6:6.1f} us/event  ({base_rate / rate:.2f}x baseline cost, "
          f"{stage_cpu / base_cpu:.2f}x its CPU)  target >= 20000/s: "
          f"{'OK' if rate >= 20000 else 'MISSED'}")
    if before_handoff is not None:
        flushed_rate = n / flushed_s
        print(f"{'same, outbox flushed per batch':<34} {flushed_rate:10.0f} events/s  "
              f"CPU {flushed_cpu / n * 1e6:6.1f} us/event  ({rate / flushed_rate:.3f}x the "
              f"time, {flushed_cpu / stage_cpu:.3f}x the CPU of the stage flushed every "
              f"256 ops, as the runtime drove it before)")


def bench_changes(lookup: Lookup, db: Database, n: int) -> None:
    """What hearing changes costs the stage (issue: a lesson was invisible to a running worker
    for up to 30 s): the stage on known fingerprints listening for PostgreSQL's notices (one
    integer comparison per batch) vs the same with the per-batch check replaced by nothing,
    interleaved; then the batch that follows a notice (its caches re-read) vs one without."""
    texts = known_texts()
    raws = stage_events(texts, n, "c")
    handler = LookupHandler(lookup)
    listening = lookup.hear_changes()
    for raw in raws[:500]:
        handler.handle(handler.decode(raw))
    spent = {True: [0.0, 0.0], False: [0.0, 0.0]}  # checked? -> [wall s, CPU s]
    rounds = 10
    for r in range(rounds):
        chunk = range(r * n // rounds, (r + 1) * n // rounds)
        for checked in ((True, False) if r % 2 else (False, True)):  # alternate who is first
            lookup.flush()
            if not checked:
                lookup.reload_if_changed = lambda: False  # type: ignore[method-assign]
            try:
                start, cpu = time.perf_counter(), time.process_time()
                run_stage(handler, chunk, raws, None)
                spent[checked][0] += time.perf_counter() - start
                spent[checked][1] += time.process_time() - cpu
            finally:
                if not checked:
                    del lookup.reload_if_changed
    (checked_s, checked_cpu), (unchecked_s, unchecked_cpu) = spent[True], spent[False]
    lookup.flush()
    print(f"{'stage listening for changes':<34} {n / checked_s:10.0f} events/s  "
          f"CPU {checked_cpu / n * 1e6:6.1f} us/event  ({checked_s / unchecked_s:.3f}x the time, "
          f"{checked_cpu / unchecked_cpu:.3f}x the CPU of the stage without the per-batch "
          f"check; listening: {listening})")
    if not listening:
        return
    batch = [handler.decode(raw) for raw in raws[:BATCH]]
    quiet: list[float] = []
    after_notice: list[float] = []
    for _ in range(5):
        start = time.perf_counter()
        handler.prepare(batch)
        quiet.append(time.perf_counter() - start)
        heard = lookup._notices
        db.execute("NOTIFY heal_lookup, 'bench'")
        deadline = time.monotonic() + 5
        while lookup._notices == heard and time.monotonic() < deadline:
            time.sleep(0.001)
        start = time.perf_counter()
        handler.prepare(batch)
        after_notice.append(time.perf_counter() - start)
    print(f"{'prepare after a notice (reload)':<34} {statistics.median(after_notice) * 1e3:8.2f}"
          f" ms per change (median of 5; a batch's prepare without one "
          f"{statistics.median(quiet) * 1e3:.3f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="samples for tier 1 and the stage")
    parser.add_argument("--n2", type=int, default=200, help="samples for tier 2")
    parser.add_argument("--only", default="tier1,tier2,stage",
                        help="comma-separated parts to run (tier1, tier2, stage, threads)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    home = Path(tempfile.mkdtemp(prefix="heal-bench-lookup-"))
    # removed at exit, after the embedded engines registered later have stopped (atexit runs
    # last-registered first): each run used to leave ~45 MB of PostgreSQL data behind
    atexit.register(shutil.rmtree, home, True)
    env = dict(os.environ)
    env.setdefault("HEAL_HOME", str(home / "engines"))
    settings = Settings.from_env(env)
    db = open_database(settings)
    try:
        cache_settings = Settings.from_env({**env, "HEAL_HOME": str(home)})
        lookup = build_lookup(cache_settings, db)
        if "tier1" in parts:
            bench_tier1(lookup, home, args.n)
        if "tier2" in parts:
            bench_tier2(lookup, args.n2)
        if "stage" in parts:
            bench_stage(lookup, args.n * 4)
            bench_changes(lookup, db, args.n * 4)
        if "threads" in parts:
            bench_threads(lookup, args.n2)
    finally:
        db.close()


if __name__ == "__main__":
    main()
