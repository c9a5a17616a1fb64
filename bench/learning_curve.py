"""Learning curve: a replayed sequence of recurring failures, some resolved by a person with
``heal learn`` (the Teacher path), looked up by the real lookup (tiers 1 and 2, embedded
PostgreSQL with pgvector) against the same sequence without learning (seeds only) in the same
run.

Reports the share of failures heal resolved on its own (a taught fix of the right kind
offered; a wrong one is counted separately) in the first third of the sequence against the
last third, and the time to fix: a person's resolution takes ``--human-minutes`` (simulated,
said so), heal's takes the measured lookup time.

    .venv/bin/python bench/learning_curve.py [--events 90] [--teach 0.5] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import Settings  # noqa: E402
from pipeline.fingerprint import fingerprint_text  # noqa: E402
from pipeline.learn.fixes import command_fix  # noqa: E402
from pipeline.learn.source import TaughtError  # noqa: E402
from pipeline.learn.teach import Lesson, Teacher  # noqa: E402
from pipeline.lookup.service import Lookup  # noqa: E402
from pipeline.lookup.setup import build_lookup  # noqa: E402

# recurring failure kinds the seeds do not know; {p} a path, {n}/{m} numbers, {h} a host
KINDS = {
    "cache": ("CacheCorruptError: cache {p}/idx.bin checksum mismatch at offset {n}",
              "rebuild-cache --force"),
    "license": ("LicenseServerError: license server {h}:27000 refused seat {n} of {m}",
                "renew-license-lease"),
    "fixture": ("FixtureDriftError: fixture {p}/snap_{n}.json is {m} revisions behind schema",
                "regen-fixtures"),
    "shard": ("ShardRebalanceError: shard {n} of index {p} stuck in RELOCATING for {m}s",
              "reroute-shards --retry-failed"),
    "token": ("ArtifactTokenError: artifact token for {h} expired {n} minutes ago",
              "refresh-artifact-token"),
    "schema": ("MigrationLockError: migration lock on {p}/schema.db held by pid {n} for {m}s",
               "release-migration-lock"),
    "quota": ("BuildQuotaError: build minutes quota reached ({n}/{m}) for runner pool {h}",
              "switch-runner-pool"),
    "locale": ("LocaleCompileError: locale catalog {p}/messages.po has {n} fuzzy entries",
               "compile-locales --fix-fuzzy"),
}
REWORDED = {  # a different wording of the same problem (tier 2's job)
    "cache": "CacheCorruptError: checksum mismatch in cache index {p}/idx.bin (offset {n})",
    "license": "LicenseServerError: seat {n}/{m} refused by the license server {h}:27000",
    "token": "ArtifactTokenError: the artifact token for {h} has expired ({n} minutes ago)",
}


def _text(rng: random.Random, kind: str, reworded: bool) -> str:
    template = REWORDED[kind] if reworded and kind in REWORDED else KINDS[kind][0]
    line = rng.randint(1, 90)
    values = {"p": f"/srv/{rng.choice(['ci', 'build', 'w'])}{rng.randint(1, 99)}/"
                   f"{rng.choice(['app', 'svc', 'core'])}",
              "n": rng.randint(1, 5000), "m": rng.randint(2, 90),
              "h": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"}
    return f"Traceback (most recent call last):\n  File \"job.py\", line {line}, " \
           f"in run\n{template.format(**values)}\n"


def sequence(n: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text): recurring kinds, a few frequent ones (Zipf-like), some reworded."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [1 / (i + 1) for i in range(len(kinds))]
    return [(k, _text(rng, k, rng.random() < 0.2))
            for k in rng.choices(kinds, weights=weights, k=n)]


def replay(lookup: Lookup, teacher: Teacher | None, events: list[tuple[str, str]],
           teach_share: float, human_s: float, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    fixes: dict[str, set[str]] = {}  # kind -> the fix ids taught for it
    rows: list[dict[str, object]] = []
    for i, (kind, text) in enumerate(events):
        fp = fingerprint_text(text)
        started = time.perf_counter()
        result = lookup.lookup(error_id=f"lc-{seed}-{i}", text=text, fine=fp.fine,
                               coarse=fp.coarse, headline=fp.normalized, record=False)
        took = time.perf_counter() - started
        offered = (result.fix or {}).get("id")
        right = offered is not None and offered in fixes.get(kind, set())
        row: dict[str, object] = {"kind": kind, "auto": right, "tier": result.tier,
                                  "wrong": offered is not None and not right
                                  and str(offered).startswith("learned."),
                                  "time_s": took if right else None}
        if not right and teacher is not None and rng.random() < teach_share:
            taught = teacher.teach(Lesson(TaughtError(f"lc-{seed}-{i}", text, fp.fine),
                                          command_fix(KINDS[kind][1]), source="bench"))
            fixes.setdefault(kind, set()).add(taught.fix_id)
            lookup.refresh_taught()  # what a running lookup stage does every 30 s
            row["time_s"] = human_s
        rows.append(row)
    return rows


def _third(rows: list[dict[str, object]], which: int) -> list[dict[str, object]]:
    k = len(rows) // 3
    return rows[:k] if which == 0 else rows[-k:]


def _share(rows: list[dict[str, object]]) -> float:
    return sum(1 for r in rows if r["auto"]) / len(rows) if rows else 0.0


def _mean_fix(rows: list[dict[str, object]]) -> float | None:
    times = [float(r["time_s"]) for r in rows if r["time_s"] is not None]  # type: ignore[arg-type]
    return statistics.fmean(times) if times else None


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else (f"{seconds * 1000:.1f} ms" if seconds < 1
                                          else f"{seconds / 60:.1f} min")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=90)
    ap.add_argument("--teach", type=float, default=0.5,
                    help="share of unresolved failures a person teaches (default 0.5)")
    ap.add_argument("--human-minutes", type=float, default=30.0,
                    help="simulated time a person takes to resolve one (default 30)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from storage.engines import open_database

    with tempfile.TemporaryDirectory(prefix="heal-bench-learning-") as home:
        # embedded engines of its own (stopped below), or HEAL_DATABASE_URL when set
        os.environ["HEAL_HOME"] = home
        settings = Settings.from_env()
        db = open_database(settings)
        try:
            events = sequence(args.events, args.seed)
            human_s = args.human_minutes * 60
            base = replay(build_lookup(settings, db, warm=0), None, events, 0.0, human_s,
                          args.seed)
            lookup = build_lookup(settings, db, warm=0)
            rows = replay(lookup, Teacher(db), events, args.teach, human_s, args.seed)
        finally:
            db.close()
            from pipeline.cli import main as heal

            heal(["engines", "stop"])
    first, last = _third(rows, 0), _third(rows, 1)
    tiers = statistics.multimode([r["tier"] for r in rows if r["auto"]] or [None])
    print(f"learning curve: {len(rows)} failures of {len(KINDS)} recurring kinds "
          f"(20% reworded), {args.teach:.0%} of the unresolved ones taught with heal learn")
    print(f"  resolved by heal on its own: first third {_share(first):.1%}, last third "
          f"{_share(last):.1%} (same sequence without learning, seeds only: "
          f"{_share(_third(base, 0)):.1%} / {_share(_third(base, 1)):.1%})")
    print(f"  by tier: tier 1 {sum(1 for r in rows if r['auto'] and r['tier'] == 1)}, "
          f"tier 2 {sum(1 for r in rows if r['auto'] and r['tier'] == 2)} "
          f"(most common {tiers}); wrong taught fixes offered: "
          f"{sum(1 for r in rows if r['wrong'])}")
    print(f"  mean time to fix (a person: {args.human_minutes:g} min simulated; heal: the "
          f"measured lookup): first third {_fmt(_mean_fix(first))}, last third "
          f"{_fmt(_mean_fix(last))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
