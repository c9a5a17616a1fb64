"""Online mining as template groups fill: CPU per event along a long stream of new names.

A long-running fingerprint stage keeps meeting new variable words (user, host, file and
job names) that no rule masks: each is a new token sequence of its group, so the groups
grow to their cap (``MinerConfig.max_group_size``). Mining a group costs time linear in
its size; this measures what that does to the cost per event.

The stream: the real texts of ``bench/stage_throughput.py``, then variants of them, each
with one lowercase word replaced by random letters (seeded). The Fingerprinter runs on the
in-memory store in batches of 500 (the stage's batch), and prints, per window of events,
the CPU time per event and the part of it spent mining. Two schedules, in one process:

* ``scheduled``: the default (a group mined again at every change up to
  ``exact_group_size`` sequences, then when it has grown by ``regrowth``, and once when
  full; sequences in between placed against the last mining);
* ``exact``: mined again at every change (the former schedule), over the first
  ``--exact-events`` only (it slows down as groups grow), and how many events the
  scheduled run gave the same template.

    python bench/mining_growth.py [--events 100000] [--exact-events 40000]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loghub import DEFAULT_DIR  # noqa: E402
from stage_throughput import real_texts  # noqa: E402

from pipeline.fingerprint import Fingerprinter  # noqa: E402
from pipeline.fingerprint.columns import DEFAULT_CONFIG, MinerConfig  # noqa: E402
from pipeline.fingerprint.store import MemoryTemplateStore  # noqa: E402

BATCH = 500
_WORD = re.compile(r"\b[a-z]{3,8}\b")


def stream(data: Path, count: int, seed: int = 7) -> list[str]:
    """The real texts, then variants with one lowercase word renamed, ``count`` in all."""
    texts = real_texts(data)
    rnd = random.Random(seed)
    out = texts[:count]
    while len(out) < count:
        text = rnd.choice(texts)
        words = list(_WORD.finditer(text[:300]))
        if not words:
            out.append(f"{text} {''.join(rnd.choice('abcdefghij') for _ in range(6))}")
            continue
        word = rnd.choice(words)
        renamed = "".join(rnd.choice("klmnopqrstuv") for _ in range(word.end() - word.start()))
        out.append(text[:word.start()] + renamed + text[word.end():])
    return out


def run(texts: list[str], config: MinerConfig, window: int
        ) -> tuple[list[tuple[int, float, float]], list[str], int]:
    """Per window: (events so far, CPU us per event, of which mining); every template; and
    how many times a group was mined."""
    fingerprinter = Fingerprinter(MemoryTemplateStore(), config=config)
    miner = fingerprinter.miner
    assert miner is not None
    mining = [0.0]
    prepare = miner.prepare

    def timed_prepare(sequences: object) -> None:
        start = time.process_time()
        prepare(sequences)  # type: ignore[arg-type]
        mining[0] += time.process_time() - start

    miner.prepare = timed_prepare  # type: ignore[method-assign]
    rows: list[tuple[int, float, float]] = []
    templates: list[str] = []
    start, mining[0] = time.process_time(), 0.0
    for at in range(0, len(texts), BATCH):
        batch = [(text, "") for text in texts[at:at + BATCH]]
        fingerprinter.prepare(batch)
        templates += [fingerprinter.fingerprint(text, repo).template for text, repo in batch]
        done = at + len(batch)
        if done % window == 0 or done == len(texts):
            cpu = time.process_time() - start
            size = window if done % window == 0 else done % window
            rows.append((done, cpu / size * 1e6, mining[0] / size * 1e6))
            start, mining[0] = time.process_time(), 0.0
    return rows, templates, miner.minings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--exact-events", type=int, default=40_000)
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="Loghub-2k folder")
    args = parser.parse_args()
    if not any(args.data.glob("*/*_structured_corrected.csv")):
        parser.error(f"no */*_structured_corrected.csv under {args.data}: give --data the "
                     "Loghub-2k folder (../shared/data/loghub2k)")
    texts = stream(args.data, max(args.events, args.exact_events))
    scheduled, given, minings = run(texts[:args.events], DEFAULT_CONFIG, args.window)
    exact_config = dataclasses.replace(DEFAULT_CONFIG,
                                       exact_group_size=DEFAULT_CONFIG.max_group_size)
    exact, reference, exact_minings = run(texts[:args.exact_events], exact_config, args.window)
    print(f"events  scheduled (mining)       exact (mining)   [us CPU per event, window "
          f"{args.window:,}]")
    for i, (done, cpu, mined) in enumerate(scheduled):
        line = f"{done:7,d}  {cpu:9.1f} ({mined:7.1f})"
        if i < len(exact):
            line += f"   {exact[i][1]:9.1f} ({exact[i][2]:7.1f})"
        print(line)
    prefix = len(reference)
    same = sum(a == b for a, b in zip(given[:prefix], reference, strict=True)) / prefix
    first_cpu = sum(c for _, c, _ in scheduled[:len(exact)]) / len(exact)
    exact_cpu = sum(c for _, c, _ in exact) / len(exact)
    print(f"first {prefix:,} events: exact / scheduled CPU = {exact_cpu / first_cpu:.2f}x; "
          f"groups mined {exact_minings:,} times / {minings:,} (the whole scheduled run); "
          f"same template as exact: {same:.1%}")
    print(f"scheduled: last window / first window CPU = "
          f"{scheduled[-1][1] / scheduled[0][1]:.2f}x")


if __name__ == "__main__":
    main()
