"""Mutation score of the modules that decide what heal does on its own.

mutmut (3.x) mutates every function of the chosen modules (operators, constants, calls,
returns) and runs, for each mutant, the tests that executed that function; a mutant that no
test notices "survived". The score is the share of mutants the tests kill:

    score = (killed + timeout) / (all mutants - accepted survivors)

Accepted survivors are equivalent mutants (no observable difference), listed one per line
with a reason in ``bench/mutation_survivors.txt`` (``mutant-name  # why``); every other
survivor counts against the score and is printed.

The run happens in a copy of the tracked tree (mutmut writes ``mutants/`` there), against one
embedded Redis and one embedded PostgreSQL started here for the whole run (through
``HEAL_REDIS_URL`` / ``HEAL_DATABASE_URL``), so a mutant's tests do not pay an engine start.

    python bench/mutation.py [--modules GLOB ...] [--tests PATH ...] [--max-children N]
                             [--check] [--keep DIR]

The last line reads ``mutation score X% (killed K of N)``; ``--check`` exits 1 below 85%.
It is long (tens of minutes on two cores) and not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the safety-critical path: what heal applies, refuses, rolls back and hands off on its own
DEFAULT_MODULES = [
    "pipeline/apply/*.py",
    "pipeline/validate/*.py",
    "pipeline/guardrails/*.py",
    "pipeline/lifecycle/*.py",
    "pipeline/runtime/handoff.py",
    "pipeline/runtime/reclaim.py",
    "pipeline/runtime/deadletter.py",
]
#: tests that exercise those modules; the long drills (SIGKILL, scenarios, demo, default
#: engines) are left out: they add minutes per mutant and kill nothing the others miss
DEFAULT_TESTS = ["tests/unit", "tests/integration", "tests/security"]
DESELECT = ["slow"]
SURVIVORS_FILE = ROOT / "bench" / "mutation_survivors.txt"
THRESHOLD = 85.0
KILLED = {"killed", "timeout"}
#: not a verdict: the run ended before these mutants were tried
UNCHECKED = {"not checked"}


@dataclass
class Tally:
    by_status: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, status: str) -> None:
        self.by_status.setdefault(status, []).append(name)

    def count(self, *statuses: str) -> int:
        return sum(len(self.by_status.get(s, [])) for s in statuses)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_status.values())


def accepted_survivors(path: Path = SURVIVORS_FILE) -> dict[str, str]:
    """``mutant-name -> reason`` from the accepted-survivors file; a line without a reason is
    refused (an equivalent mutant must say why it is one)."""
    accepted: dict[str, str] = {}
    if not path.exists():
        return accepted
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: an accepted survivor needs '# reason'")
        accepted[name.strip()] = reason.strip()
    return accepted


def score(tally: Tally, accepted: dict[str, str]) -> tuple[float, int, int, list[str]]:
    """(score %, killed, counted mutants, unaccepted survivors)."""
    killed = tally.count(*KILLED)
    survivors = [n for s, names in tally.by_status.items() if s not in KILLED | UNCHECKED
                 for n in names]
    unaccepted = sorted(n for n in survivors if n not in accepted)
    counted = killed + len(unaccepted)
    return (100.0 * killed / counted if counted else 0.0), killed, counted, unaccepted


def copy_tree(dest: Path) -> None:
    """The tracked files as they are in the work tree (uncommitted edits included)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def write_config(work: Path, modules: list[str], tests: list[str]) -> None:
    existing = [t for t in tests if (work / t).exists()]
    lines = [
        "", "[tool.mutmut]",
        'source_paths = ["pipeline/", "consumers/", "producers/", "storage/", "seeds/"]',
        f"only_mutate = {modules!r}".replace("'", '"'),
        f"pytest_add_cli_args_test_selection = {existing!r}".replace("'", '"'),
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not slow"]',
        'process_isolation = "forkserver"',
    ]
    with (work / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def start_engines(home: Path) -> dict[str, str]:
    """One embedded Redis and PostgreSQL for the whole run; returns the env pointing at them."""
    import asyncio

    import asyncpg

    from storage.embedded import EmbeddedPostgres, EmbeddedRedis

    redis_server, postgres = EmbeddedRedis(home), EmbeddedPostgres(home)
    with redis_server.leases.locked():
        redis_url = redis_server.ensure_running()
    with postgres.leases.locked():
        db_url = postgres.ensure_running()

    async def extension() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()

    asyncio.run(extension())
    return {"HEAL_REDIS_URL": redis_url, "HEAL_DATABASE_URL": db_url}


def stop_engines(home: Path) -> None:
    from storage.embedded import EmbeddedPostgres, EmbeddedRedis

    for server in (EmbeddedRedis(home), EmbeddedPostgres(home)):
        with server.leases.locked():
            server.stop()


def run_mutmut(work: Path, env: dict[str, str], max_children: int) -> Tally:
    mutmut = str(Path(sys.executable).parent / "mutmut")
    if not Path(mutmut).exists():
        raise SystemExit("mutmut is not installed: .venv/bin/pip install -e '.[bench]'")
    full_env = {**os.environ, **env}
    started = time.monotonic()
    log = work / "mutmut-run.log"
    with log.open("w") as out:
        proc = subprocess.run([mutmut, "run", "--max-children", str(max_children)], cwd=work,
                              env=full_env, stdout=out, stderr=subprocess.STDOUT, check=False)
    print(f"mutmut run: exit {proc.returncode} after {time.monotonic() - started:.0f} s "
          f"(log: {log})", file=sys.stderr)
    listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=full_env,
                             capture_output=True, text=True, check=False).stdout
    tally = Tally()
    for line in listing.splitlines():
        m = re.match(r"^\s+(\S+): (.+)$", line)
        if m:
            tally.add(m[1], m[2].strip())
    if tally.total == 0:
        raise SystemExit(f"mutmut produced no results; see {log}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=DEFAULT_MODULES,
                        help="globs of the files to mutate (default: the safety-critical path)")
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS,
                        help="test paths mutmut may choose from (default: %(default)s)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when the score is below {THRESHOLD:.0f}%%")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args(argv)

    accepted = accepted_survivors()
    work = args.keep or Path(tempfile.mkdtemp(prefix="heal-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="heal-mutation-engines-"))
    copy_tree(work)
    write_config(work, args.modules, args.tests)
    env = start_engines(home)
    try:
        tally = run_mutmut(work, env, args.max_children)
    finally:
        stop_engines(home)
        shutil.rmtree(home, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    pct, killed, counted, unaccepted = score(tally, accepted)
    for status in sorted(tally.by_status):
        print(f"{status:>12}: {len(tally.by_status[status])}")
    survivors = [n for s, names in tally.by_status.items() if s not in KILLED | UNCHECKED
                 for n in names]
    print(f"accepted survivors (equivalent mutants): {sum(n in accepted for n in survivors)}")
    for name in unaccepted:
        print(f"survived: {name}")
    unchecked = tally.count(*UNCHECKED)
    if unchecked:
        print(f"warning: {unchecked} mutants were not checked (the run ended early): "
              "the score covers the others only", file=sys.stderr)
    print(f"mutation score {pct:.1f}% (killed {killed} of {counted})")
    return 1 if args.check and (pct < THRESHOLD or unchecked) else 0


if __name__ == "__main__":
    raise SystemExit(main())
