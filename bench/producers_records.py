"""Record assembly throughput (the code `heal watch` and `heal backfill` run per line).

Baseline, measured in the same run: splitting the same bytes into decoded lines (the least any
log reader does). Reported: lines/s of the baseline, of record assembly, and of assembly +
error classification + event building (`scan_file`, what `backfill --dry-run` does), and the
ratio of each to the baseline. Input: every Loghub-2k log under DATA_DIR concatenated, plus
real multi-line reports (Python/Java tracebacks) interleaved so the multi-line rules run; the
same lines relayed by ``docker compose`` (three services' ``api-N  | `` prefixes, taking turns
block by block: one assembler per source) are assembled too, and their time per line printed
as a ratio to the plain log's. Times are the process's CPU time (steadier than wall time on
the shared machine).

    .venv/bin/python bench/producers_records.py [DATA_DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from producers.backfill import scan_file
from producers.records import LineSplitter, Record, RecordAssembler

TRACE = (
    "2024-01-01 10:00:01 ERROR request failed\n"
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3, in <module>\n'
    "    main()\n"
    "KeyError: 'x'\n"
    "java.lang.IllegalStateException: boom\n"
    "\tat com.acme.App.run(App.java:10)\n"
    "Caused by: java.io.IOException: disk\n"
    "\t... 2 more\n"
)


def corpus(data_dir: Path, repeat: int) -> bytes:
    logs = sorted(data_dir.glob("*/*_2k.log"))
    if not logs:
        sys.exit(f"no Loghub *_2k.log files under {data_dir}")
    parts = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        for i in range(0, len(lines), 50):
            parts.append("".join(lines[i:i + 50]) + TRACE)
    return "".join(parts).encode() * repeat


def relayed(data: bytes) -> bytes:
    """The same lines as ``docker compose`` relays three services' logs: each block of 50
    log lines and its reports (59 lines) under one service's ``api-N  | `` prefix, the
    services taking turns block by block."""
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(f"api-{i // 59 % 3}  | {line}" for i, line in enumerate(lines)).encode()


def rate(label: str, lines: int, seconds: float, base: float | None) -> float:
    per_s = lines / seconds
    ratio = f"  ({per_s / base:.2f}x baseline)" if base else ""
    print(f"{label:<44} {per_s:>12,.0f} lines/s{ratio}")
    return per_s


def _whole(splitter: LineSplitter, data: bytes) -> Iterator[tuple[str, int, int, int]]:
    """Every line of ``data`` as backfill reads a file: ``feed``, then ``finish``."""
    yield from splitter.feed(data)
    yield from splitter.finish()


def assemble_lines(data: bytes) -> list[Record]:
    """Every record of ``data``: its lines fed to one assembler, flushed at the end (what
    the backfill scanner does, without its CI-log detection and event building)."""
    assembler = RecordAssembler()
    records: list[Record] = []
    for number, (line, start, end, cut) in enumerate(_whole(LineSplitter(), data), 1):
        records += assembler.feed(line, start, end, number, cut)
    return records + assembler.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", nargs="?", default="/work/shared/data/loghub2k")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = corpus(Path(args.data_dir), args.repeat)
    n = data.count(b"\n")

    t = time.process_time()
    lines = [line.decode("utf-8", "replace") for line in data.split(b"\n")[:n]]
    assert len(lines) == n
    base = rate("baseline: split + decode lines", n, time.process_time() - t, None)

    t = time.process_time()
    records = assemble_lines(data)
    plain = rate("record assembly", n, time.process_time() - t, base)
    compose = relayed(data)
    t = time.process_time()
    assemble_lines(compose)
    per_s = rate("record assembly, relayed (compose prefixes)", n, time.process_time() - t, base)
    print(f"{'  relayed per line vs plain assembly':<44} {plain / per_s:>12.2f}x the time")

    with tempfile.NamedTemporaryFile(suffix=".log") as fh:
        fh.write(data)
        fh.flush()
        t = time.process_time()
        events = sum(1 for _ in scan_file(Path(fh.name)))
        rate("assembly + classification + events (backfill)", n, time.process_time() - t, base)
    print(f"{n:,} lines -> {len(records):,} records -> {events:,} error events")


if __name__ == "__main__":
    main()
