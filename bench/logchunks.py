"""Detection of the failure-explaining chunk in CI build logs (LogChunks), next to a
keyword+context baseline measured in the same run.

Scoring (the data set's README): strip ANSI escapes and collapse whitespace in the log and the
chunk; a log is *detected* when at least half of the chunk's lines (lines of 4+ characters)
appear in the texts of the error events ``heal backfill LOG --dry-run --json`` would publish
(here: the same code, ``producers.backfill.scan_file``). Recall = detected / logs; volume =
characters emitted / characters of the log. Baseline: every line matching
``error|fail|exception`` (any case) with two lines of context on each side.

Leave-one-language-out: the detector's knobs (``producers.cilog.CiOptions``: tail, context,
block, section and head lengths, the number of blocks) are chosen on a grid by the best
recall on the *other* languages whose volume stays within the baseline's, then scored on the
language left out. The in-sample figure uses the default options (the ones shipped), scored
on every log.

Usage: .venv/bin/python bench/logchunks.py [DATA_DIR] [--no-loo] [--misses]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers import cilog, logs  # noqa: E402
from producers.backfill import scan_file  # noqa: E402

DEFAULT_DIRS = [Path(__file__).resolve().parents[2] / "shared" / "data" / "logchunks-dev",
                Path("/work/shared/data/logchunks-dev")]
#: ANSI escapes; the chunks lost their ESC byte in XML, so ``[31m`` without it counts too
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\[[0-9;]*[mK]")
SPACE = re.compile(r"\s+")
KEYWORD = re.compile(r"error|fail|exception", re.IGNORECASE)


def norm_line(line: str) -> str:
    return SPACE.sub(" ", ANSI.sub("", line)).strip()


def norm_text(text: str) -> str:
    return "\n".join(n for n in (norm_line(x) for x in text.split("\n")) if n)


@dataclass
class Example:
    language: str
    repo: str
    log: Path
    chunk_lines: list[str]
    log_chars: int = 0


def load(data: Path) -> list[Example]:
    out = []
    for xml in sorted((data / "build-failure-reason").glob("*/*.xml")):
        language = xml.parent.name
        for node in ET.parse(xml).getroot():
            log = data / "logs" / f"{node.findtext('Log')}.gz"
            chunk = node.findtext("Chunk") or ""
            lines = [n for n in (norm_line(x) for x in chunk.split("\n")) if len(n) >= 4]
            if log.is_file() and lines:
                out.append(Example(language, xml.stem, log, lines))
    return out


def detected(example: Example, emitted: str) -> bool:
    hits = sum(1 for line in example.chunk_lines if line in emitted)
    return 2 * hits >= len(example.chunk_lines)


def log_text(example: Example) -> str:
    with gzip.open(example.log, "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def baseline(text: str) -> str:
    lines = text.split("\n")
    keep: set[int] = set()
    for i, line in enumerate(lines):
        if KEYWORD.search(ANSI.sub("", line)):
            keep.update(range(max(0, i - 2), min(len(lines), i + 3)))
    return norm_text("\n".join(lines[i] for i in sorted(keep)))


def heal_emitted(path: Path) -> str:
    return "\n".join(norm_text(event.text) for event, _ in scan_file(path))


class _Capture(cilog.CiLogDetector):
    """The detector, keeping each failed step's lines so other options can re-select."""

    made: list[_Capture] = []

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[cilog._Line]] = []
        _Capture.made.append(self)

    def _close(self, status: int | None, offset: int, end: int) -> cilog.CiFailure | None:
        lines = list(self._step)
        failure = super()._close(status, offset, end)
        if failure is not None:
            self.steps.append(lines)
        return failure


def scan(example: Example) -> tuple[str, bool, list[list[cilog._Line]]]:
    """What ``heal backfill --dry-run`` emits for the log (normalized), whether it is a CI
    log, and the lines of each failed step (so other options can re-select, as in
    ``LogRecords``, without scanning again)."""
    _Capture.made.clear()
    original = cilog.CiLogDetector
    setattr(logs, "CiLogDetector", _Capture)  # noqa: B010 - swap the class for one scan
    try:
        text = heal_emitted(example.log)
    finally:
        setattr(logs, "CiLogDetector", original)  # noqa: B010
    detector = _Capture.made[0]
    return text, detector.active, detector.steps


def reselect(steps: list[cilog.Analysis], opts: cilog.CiOptions) -> str:
    """What ``scan_file`` emits for a CI log under other options: only the failed steps'
    selections change (record events are suppressed in CI logs)."""
    return "\n".join(norm_text(cilog._join(found.lines, cilog.choose(found, opts)))
                      for found in steps)


def score(examples: Sequence[Example], emitted: dict[int, str]) -> tuple[float, float]:
    if not examples:
        return 0.0, 0.0
    hits = sum(1 for e in examples if detected(e, emitted[id(e)]))
    volume = sum(len(emitted[id(e)]) for e in examples) / sum(e.log_chars for e in examples)
    return hits / len(examples), volume


#: the knobs re-chosen leave-one-language-out; the others keep their shipped values
GRID = [cilog.CiOptions(tail_lines=t, context=c, block_lines=b, section_lines=s, head_lines=h,
                        max_blocks=m)
        for t, c, b, s, h, m in itertools.product((20, 30, 50), (1, 2, 3), (25, 50), (0, 150),
                                                  (0, 2), (8, 12))]


def describe(opts: cilog.CiOptions) -> str:
    return (f"tail={opts.tail_lines} context={opts.context} block={opts.block_lines} "
            f"section={opts.section_lines} head={opts.head_lines} blocks={opts.max_blocks}")


def run_grid(examples: Sequence[Example], default: dict[int, str],
             scans: dict[int, tuple[bool, list[list[cilog._Line]]]],
             ) -> dict[cilog.CiOptions, dict[int, str]]:
    grid: dict[cilog.CiOptions, dict[int, str]] = {o: {} for o in GRID}
    shipped = cilog.CiOptions()
    for e in examples:
        active, lines = scans[id(e)]
        steps = [cilog.analyze(step, shipped.run_keep, shipped.routine_min) for step in lines]
        for opts in GRID:
            grid[opts][id(e)] = (reselect(steps, opts) if active
                                 else default[id(e)])
    return grid


def leave_one_language_out(examples: Sequence[Example], by_lang: dict[str, list[Example]],
                           base: dict[int, str], ours: dict[int, str],
                           scans: dict[int, tuple[bool, list[list[cilog._Line]]]],
                           ) -> tuple[dict[int, str], dict[str, int]]:
    """For each language: the grid's options with the best recall on the other languages
    within their baseline's volume, applied to the language left out. Returns what is
    emitted for each log and how often each option set was chosen."""
    grid = run_grid(examples, ours, scans)
    # whether each log is detected and how much is emitted, once per option set
    tables = [{id(e): (detected(e, grid[o][id(e)]), len(grid[o][id(e)])) for e in examples}
              for o in GRID]
    loo: dict[int, str] = {}
    picks: dict[str, int] = {}
    for lang, group in by_lang.items():
        rest = [e for e in examples if e.language != lang]
        _, rest_bv = score(rest, base)
        rest_chars = sum(e.log_chars for e in rest)
        scored = []
        for k, table in enumerate(tables):
            hits = sum(table[id(e)][0] for e in rest)
            chars = sum(table[id(e)][1] for e in rest)
            scored.append(((hits / len(rest), chars / rest_chars), k))
        fits = [(r, -v, -k) for (r, v), k in scored if v <= rest_bv]
        best = max(fits or [(r, -v, -k) for (r, v), k in scored])
        chosen = GRID[-best[2]]
        picks[describe(chosen)] = picks.get(describe(chosen), 0) + 1
        for e in group:
            loo[id(e)] = grid[chosen][id(e)]
    return loo, picks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--no-loo", action="store_true", help="in-sample figures only")
    parser.add_argument("--misses", action="store_true", help="list logs heal misses")
    args = parser.parse_args(argv)
    data = args.data or next((d for d in DEFAULT_DIRS if d.is_dir()), DEFAULT_DIRS[0])
    examples = load(data)
    for e in examples:
        e.log_chars = len(norm_text(log_text(e)))
    started = time.perf_counter()
    base = {id(e): baseline(log_text(e)) for e in examples}
    base_s = time.perf_counter() - started
    started = time.perf_counter()
    ours: dict[int, str] = {}
    scans: dict[int, tuple[bool, list[list[cilog._Line]]]] = {}
    for e in examples:
        text, active, steps = scan(e)
        ours[id(e)] = text
        scans[id(e)] = (active, steps)
    heal_s = time.perf_counter() - started
    by_lang: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_lang[e.language].append(e)
    print(f"{len(examples)} logs, {len(by_lang)} languages ({data})")
    print(f"{'language':<14} {'n':>3}  {'base rec':>8} {'base vol':>8}  "
          f"{'heal rec':>8} {'heal vol':>8}")
    for lang, group in sorted(by_lang.items()):
        br, bv = score(group, base)
        hr, hv = score(group, ours)
        print(f"{lang:<14} {len(group):>3}  {br:8.3f} {bv:8.3f}  {hr:8.3f} {hv:8.3f}")
    br, bv = score(examples, base)
    hr, hv = score(examples, ours)
    print(f"{'in-sample':<14} {len(examples):>3}  {br:8.3f} {bv:8.3f}  {hr:8.3f} {hv:8.3f}")
    if args.misses:
        for e in examples:
            if not detected(e, ours[id(e)]):
                print("miss", e.language, e.log)
    if not args.no_loo:
        loo, picks = leave_one_language_out(examples, by_lang, base, ours, scans)
        lr, lv = score(examples, loo)
        print(f"{'leave-1-lang':<14} {len(examples):>3}  {br:8.3f} {bv:8.3f}  "
              f"{lr:8.3f} {lv:8.3f}")
        for text, count in sorted(picks.items(), key=lambda p: -p[1]):
            print(f"  chosen for {count} of {len(by_lang)} languages: {text}")
    print(f"time: baseline {base_s:.1f}s, heal {heal_s:.1f}s "
          f"({heal_s / max(base_s, 1e-9):.1f}x the baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
