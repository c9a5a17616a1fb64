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
Each pytest session (one per mutant) still gets a database of its own on that server
(tests/conftest.py), so no session sees rows an earlier one left: a copy of a template database
migrated once per run (``CREATE DATABASE ... TEMPLATE``, HEAL_TEST_TEMPLATE_DATABASE), instead
of an empty database each session migrates again. A mutant's tests run fastest first (by the
coverage pass's durations), so a killed mutant stops at the cheapest test that notices it.

    python bench/mutation.py [--groups GROUP ...] [--modules GLOB ...] [--sample F --seed N]
                             [--tests PATH ...] [--max-children N] [--check] [--keep DIR]

Mutants are made first, the sample drawn from their names, then ONE ``mutmut run`` of the
sampled mutants of all chosen groups (apply, validate, guardrails, lifecycle, runtime): the
coverage pass (every selected test once, unmutated: it must pass, or the run stops with exit 1
and no score) and mutmut's fork server are paid once. Each group is reported with its own
score, then the total, the time spent (in all, per phase, per mutant) and, for a sample, the
95% (Wilson) interval. The last line reads ``mutation score X% (killed K of N)``.

The whole set is about 8,300 mutants, hours on two cores, so by default a fixed pseudo-random
share is tried (``--sample``, default 0.02, about 175 mutants: at the 10-16 s a mutant of the
heavier groups costs here, under an hour on the 2-core machine when it is not shared; the share
is the same on every run with the same ``--seed``; ``--sample 1`` for all). ``--check`` exits 1 when
- the score is below 85%: for the whole set the score itself; for a sample the LOWER BOUND of
  its 95% interval (then the full score is at least 85% with 97.5% confidence; the point
  estimate of a few hundred mutants passes a true 83% about a third of the time, which is not
  a check of ">= 85%"),
- mutants were left unchecked, or
- an accepted survivor is stale: listed in ``bench/mutation_survivors.txt`` but no longer made
  (a changed function renumbers its mutants: the name may now be another mutant) or now killed.
The accepted survivors of the chosen groups are run on every run, sampled or not, to find the
stale ones (they never count in the score). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import math
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

#: the safety-critical path: what heal applies, refuses, rolls back and hands off on its own,
#: in groups that can be run (and are reported) one at a time
GROUPS: dict[str, list[str]] = {
    "apply": ["pipeline/apply/*.py"],
    "validate": ["pipeline/validate/*.py"],
    "guardrails": ["pipeline/guardrails/*.py"],
    "lifecycle": ["pipeline/lifecycle/*.py"],
    "runtime": ["pipeline/runtime/handoff.py", "pipeline/runtime/reclaim.py",
                "pipeline/runtime/deadletter.py"],
}
DEFAULT_MODULES = [glob for globs in GROUPS.values() for glob in globs]
#: tests that exercise those modules; the long drills (SIGKILL, scenarios, demo, default
#: engines) are left out: they add minutes per mutant and kill nothing the others miss
DEFAULT_TESTS = ["tests/unit", "tests/integration", "tests/security"]
DESELECT = ["slow"]
#: tests of the engines themselves (starting and stopping embedded servers in subprocesses):
#: they call none of the mutated modules, so they cannot kill a mutant, and under load their
#: start-up deadlines are what fails the coverage pass (which then scores nothing)
IGNORE = ["tests/integration/test_engines_postgres.py", "tests/integration/test_engines_redis.py"]
SURVIVORS_FILE = ROOT / "bench" / "mutation_survivors.txt"
THRESHOLD = 85.0
#: the default share of the mutants tried: about 175 of 8,700, under an hour on the 2-core
#: machine when no other mutation run shares it (bench/README.md has the measured costs)
DEFAULT_SAMPLE = 0.02
#: the database every pytest session of the run copies (see make_template)
TEMPLATE_DATABASE = "heal_mutation_template"
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


def _accepted_lines(path: Path) -> list[tuple[str, str, str]]:
    """(name, pin, reason) per entry: ``mutant-name[@pin]  # reason``."""
    entries: list[tuple[str, str, str]] = []
    if not path.exists():
        return entries
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: an accepted survivor needs '# reason'")
        name, _, pin = name.strip().partition("@")
        entries.append((name, pin, reason.strip()))
    return entries


def accepted_survivors(path: Path = SURVIVORS_FILE) -> dict[str, str]:
    """``mutant-name -> reason`` from the accepted-survivors file; a line without a reason is
    refused (an equivalent mutant must say why it is one)."""
    return {name: reason for name, _, reason in _accepted_lines(path)}


def accepted_pins(path: Path = SURVIVORS_FILE) -> dict[str, str]:
    """``mutant-name -> pin`` of the entries written ``name@pin``: the digest of the mutant's
    code (:func:`mutant_digest`), so an entry whose name now denotes another mutant (mutmut
    numbers a function's mutants in order: editing the function renumbers them) is stale."""
    return {name: pin for name, pin, _ in _accepted_lines(path) if pin}


def mutant_digest(work: Path, name: str) -> str | None:
    """The first 10 hex digits of sha256 over the code of mutant ``name`` as mutmut wrote it
    (``mutants/<module path>.py``, function ``<last part of the name>``), None if not found."""
    import ast

    module, _, function = name.rpartition(".")
    path = work / "mutants" / (module.replace(".", "/") + ".py")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return hashlib.sha256(ast.unparse(node).encode()).hexdigest()[:10]
    return None


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
    # mutmut runs the tests in work/mutants/: copy what the tests read besides the sources
    # (README.md, bench/, deploy/, .ci/, ...)
    skip = {"pipeline", "consumers", "producers", "storage", "seeds", "tests",
            "pyproject.toml", "mutants", ".git", ".venv"}
    also_copy = sorted(p.name + ("/" if p.is_dir() else "") for p in work.iterdir()
                       if p.name not in skip and not p.name.startswith("mutmut-"))
    lines = [
        "", "[tool.mutmut]",
        'source_paths = ["pipeline/", "consumers/", "producers/", "storage/", "seeds/"]',
        f"only_mutate = {modules!r}".replace("'", '"'),
        f"also_copy = {also_copy!r}".replace("'", '"'),
        f"pytest_add_cli_args_test_selection = {existing!r}".replace("'", '"'),
        # each pytest session gets a fresh database on the run's PostgreSQL (tests/conftest.py),
        # so tests reading tables every prefix shares see no rows of an earlier mutant's run
        "pytest_add_cli_args = " + str(["-p", "no:cacheprovider", "-x", "-q", "-m", "not slow",
                                         *(f"--ignore={path}" for path in IGNORE)]
                                        ).replace("'", '"'),
        'process_isolation = "forkserver"',
    ]
    with (work / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with (work / "tests" / "conftest.py").open("a", encoding="utf-8") as f:
        f.write(STATS_GUARD + ORDER_FASTEST_FIRST)


#: appended to the copy's tests/conftest.py. While a mutant is tested, its tests run fastest
#: first (by the durations of the coverage pass), so a killed mutant stops (``-x``) at the
#: cheapest test that notices it; a survivor runs them all either way. mutmut's fork server
#: passes a mutant's tests in no particular order (its plain fork runner sorts them the same way).
ORDER_FASTEST_FIRST = """

def pytest_collection_modifyitems(session, config, items):  # added by bench/mutation.py
    import json
    import os
    from pathlib import Path

    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:
        stats = Path(__file__).resolve().parents[1] / "mutmut-stats.json"
        durations = json.loads(stats.read_text(encoding="utf-8"))["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))


def pytest_unconfigure(config):  # added by bench/mutation.py
    # mutmut's fork server records no time per mutant: the seconds since this process forked
    import os

    path = os.environ.get("HEAL_MUTATION_TIMES")
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if path and "__mutmut_" in mutant:
        import time

        import psutil

        took = time.time() - psutil.Process().create_time()
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{mutant}\\t{took:.3f}\\n")
"""

#: appended to the copy's tests/conftest.py. While mutmut measures which tests reach which
#: function ("stats"), a heal the tests start as a subprocess (heal run, the CI action) would
#: run the same bookkeeping in a folder without mutmut's configuration and fail; the marker
#: stays in this process only, so subprocesses run the plain code. (While a mutant is tested,
#: subprocesses do inherit it: a mutant the CLI tests notice counts as killed.)
STATS_GUARD = """

_HEAL_COVERAGE_PASS = []  # added by bench/mutation.py


def pytest_sessionstart(session):  # added by bench/mutation.py
    import os

    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        from mutmut.mutation import trampoline

        trampoline._mutant_under_test = "stats"
        del os.environ["MUTANT_UNDER_TEST"]
        _HEAL_COVERAGE_PASS.append(True)


def pytest_runtest_logreport(report):  # added by bench/mutation.py
    # mutmut shows nothing of a coverage pass that failed: say which test failed, and how
    import os

    path = os.environ.get("HEAL_MUTATION_FAILURES")
    if path and report.failed and _HEAL_COVERAGE_PASS:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{report.nodeid} ({report.when})\\n{report.longreprtext[-4000:]}\\n\\n")
"""


def sampled(name: str, fraction: float, seed: int) -> bool:
    """A fixed pseudo-random share of the mutants, the same on every run with the same seed
    (uniform over all mutants, so the sampled score estimates the full one)."""
    if fraction >= 1:
        return True
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


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


def make_template(server_url: str, migrations: Path) -> str:
    """A database on the run's server holding the vector extension and every migration of the
    copied tree, made once; each pytest session mutmut starts gets its own copy of it
    (``CREATE DATABASE ... TEMPLATE``, tests/conftest.py through HEAL_TEST_TEMPLATE_DATABASE)
    instead of migrating an empty database again. Returns its name."""
    from storage.db import Database
    from storage.migrate import migrate
    from storage.scratch import with_database

    admin = Database(server_url, min_size=1, max_size=1)
    try:
        admin.execute(f'CREATE DATABASE "{TEMPLATE_DATABASE}"')
        db = Database(with_database(server_url, TEMPLATE_DATABASE), min_size=1, max_size=1)
        try:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            migrate(db, migrations)
        finally:
            db.close()
        # no session may connect to it: a connected template cannot be copied
        admin.execute(f'ALTER DATABASE "{TEMPLATE_DATABASE}" WITH ALLOW_CONNECTIONS false')
    finally:
        admin.close()
    return TEMPLATE_DATABASE


def stop_engines(home: Path) -> None:
    from storage.embedded import EmbeddedPostgres, EmbeddedRedis

    for server in (EmbeddedRedis(home), EmbeddedPostgres(home)):
        with server.leases.locked():
            server.stop()


def mutant_glob(module_glob: str) -> str:
    """The mutmut mutant-name pattern of a file glob: ``pipeline/apply/*.py`` ->
    ``pipeline.apply.*`` (mutants are named ``pipeline.apply.applier.x_name__mutmut_3``)."""
    return module_glob.removesuffix(".py").removesuffix("*").replace("/", ".").rstrip(".") + ".*"


def group_of(name: str, groups: dict[str, list[str]]) -> str | None:
    for group, globs in groups.items():
        if any(fnmatch.fnmatchcase(name, mutant_glob(g)) for g in globs):
            return group
    return None


#: how bench/mutation.py drives mutmut (3.8): ``generate`` makes the mutants only (mutmut has
#: no command for that; its names are needed to draw the sample before anything runs);
#: otherwise mutmut's own CLI. When the run is the first in its folder, the coverage pass
#: ("stats") runs every selected test unmutated and mutmut stops unless all pass, so mutmut's
#: second unmutated run of the chosen mutants' tests ("clean tests") is skipped: it would
#: repeat minutes of the same check.
DRIVER = """
import sys
from pathlib import Path

import mutmut.__main__ as cli

if sys.argv[1] == "generate":
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    stats = cli.create_mutants(int(sys.argv[2]))
    print(f"{stats.mutated} files mutated")
else:
    if not Path("mutants/mutmut-stats.json").exists():
        from mutmut.workers.isolation import ForkServerRunner

        ForkServerRunner.run_clean_tests = lambda self, tests: 0
    cli.cli(sys.argv[1:])
"""


def _mutmut(work: Path, env: dict[str, str], log: Path, *args: str) -> tuple[int, float]:
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed: .venv/bin/pip install -e '.[bench]'") from None
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=work, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, time.monotonic() - started


def _results(work: Path, env: dict[str, str]) -> dict[str, str]:
    """``mutant-name -> status`` of every mutant mutmut made (``not checked`` until tried)."""
    log = work / "mutmut-results.txt"
    _mutmut(work, env, log, "results", "--all", "true")
    found: dict[str, str] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^\s+(\S+): (.+)$", line)
        if m:
            found[m[1]] = m[2].strip()
    return found


def _durations(path: Path) -> dict[str, float]:
    """``mutant-name -> seconds`` its pytest process took, fork to exit (written by the hook
    bench/mutation.py adds to the copy's tests/conftest.py)."""
    found: dict[str, float] = {}
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, seconds = line.partition("\t")
        try:
            found[name] = float(seconds)
        except ValueError:
            continue
    return found


@dataclass
class Run:
    """What one run measured: each group's tally, the accepted survivors' statuses (tried
    whether sampled or not, to find stale entries) and where the time went."""

    tallies: dict[str, Tally]
    accepted_status: dict[str, str]
    seconds: dict[str, float]
    mutant_seconds: dict[str, float]
    #: the code digest of each accepted survivor that was made (see accepted_pins)
    digests: dict[str, str] = field(default_factory=dict)


def run_mutmut(work: Path, env: dict[str, str], max_children: int,
               groups: dict[str, list[str]], fraction: float, seed: int,
               accepted: dict[str, str]) -> Run:
    """Mutants are made first (to draw the sample from their names); then one ``mutmut run``
    of the sampled mutants of every group, plus the accepted survivors of those groups
    (checked to still survive): the coverage pass, mutmut's fork server and its checks are paid
    once, not per group. Each group is then reported on its own."""
    full_env = {**os.environ, **env, "HEAL_MUTATION_FAILURES": str(work / "mutmut-failures.txt"),
                "HEAL_MUTATION_TIMES": str(work / "mutmut-times.tsv")}
    Path(full_env["HEAL_MUTATION_TIMES"]).unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    code, seconds["make mutants"] = _mutmut(work, full_env, work / "mutmut-generate.log",
                                            "generate", str(max_children))
    if code != 0:
        raise SystemExit(f"mutmut could not make the mutants; see {work}/mutmut-generate.log")
    print(f"mutants made: {seconds['make mutants']:.0f} s", file=sys.stderr, flush=True)
    made = _results(work, full_env)
    chosen: dict[str, list[str]] = {group: [] for group in groups}
    for name in made:
        group = group_of(name, groups)
        if group is not None and sampled(name, fraction, seed):
            chosen[group].append(name)
    if not any(chosen.values()):
        raise SystemExit(f"mutmut made no mutants; see {work}/mutmut-generate.log")
    in_scope = {n for n in accepted if group_of(n, groups) is not None}
    sample = {n for names in chosen.values() for n in names}
    targets = sorted(sample | (in_scope & made.keys()))
    if fraction >= 1:
        targets = [mutant_glob(g) for globs in groups.values() for g in globs]
    log = work / "mutmut-run.log"
    print(f"running {len(sample)} sampled mutants"
          f"{f' and {len(targets) - len(sample)} accepted survivors' if fraction < 1 else ''}"
          f" (log: {log})", file=sys.stderr, flush=True)
    code, seconds["coverage pass and mutants"] = _mutmut(
        work, full_env, log, "run", "--max-children", str(max_children), *targets)
    if code != 0:
        # an unmutated test failed in the coverage pass, or mutmut itself failed: no verdict
        # of this run could be trusted
        failures = Path(full_env["HEAL_MUTATION_FAILURES"])
        failed = failures.read_text(encoding="utf-8") if failures.exists() else ""
        raise SystemExit(f"mutmut run failed (exit {code}); see {log}"
                         + (f"\nthe unmutated tests failed in the coverage pass:\n{failed}"
                            if failed else ""))
    statuses = _results(work, full_env)
    tallies = {group: Tally() for group in groups}
    for group, names in chosen.items():
        for name in names:
            tallies[group].add(name, statuses.get(name, "not checked"))
    accepted_status = {n: statuses.get(n, "not generated") for n in in_scope}
    digests = {n: mutant_digest(work, n) or "" for n in in_scope if n in made}
    return Run(tallies, accepted_status, seconds,
               _durations(Path(full_env["HEAL_MUTATION_TIMES"])), digests)


def stale_accepted(accepted_status: dict[str, str], digests: dict[str, str] | None = None,
                   pins: dict[str, str] | None = None) -> list[str]:
    """Accepted survivors that no longer are: not made any more, now killed by a test, or
    (when pinned) now another mutant. Each one is a line of the list to remove or review."""
    digests, pins = digests or {}, pins or {}
    stale = []
    for name, status in sorted(accepted_status.items()):
        if status in KILLED or status == "not generated":
            stale.append(f"{name} ({status})")
        elif name in pins and digests.get(name) != pins[name]:
            stale.append(f"{name} (now another mutant: code digest {digests.get(name) or '?'}, "
                         f"listed {pins[name]})")
    return stale


def wilson(killed: int, counted: int) -> tuple[float, float]:
    """95% Wilson interval of a sampled score, in percent."""
    z, p = 1.96, killed / counted
    centre = (p + z * z / (2 * counted)) / (1 + z * z / counted)
    half = z * math.sqrt(p * (1 - p) / counted + z * z / (4 * counted * counted)) \
        / (1 + z * z / counted)
    return 100 * (centre - half), 100 * (centre + half)


def interval(killed: int, counted: int) -> str:
    """95% Wilson interval of a sampled score, as printed."""
    if not counted:
        return ""
    low, high = wilson(killed, counted)
    return f", 95% interval {low:.0f}-{high:.0f}%"


def check_passes(killed: int, counted: int, sample: bool) -> tuple[bool, str]:
    """``--check``: the whole set passes when its score is at least 85%; a sample when the
    lower bound of its 95% interval is (the full score is then at least 85% with 97.5%
    confidence; a sample's point estimate alone passes a true 83% about a third of the time
    at a few hundred mutants)."""
    if not counted:
        return False, "no mutant was scored"
    if not sample:
        pct = 100.0 * killed / counted
        return pct >= THRESHOLD, f"score {pct:.1f}% vs {THRESHOLD:.0f}%"
    low, _ = wilson(killed, counted)
    return low >= THRESHOLD, f"lower bound of the 95% interval {low:.1f}% vs {THRESHOLD:.0f}%"


def report(label: str, tally: Tally, accepted: dict[str, str], sample: bool
           ) -> tuple[float, int, int]:
    pct, killed, counted, unaccepted = score(tally, accepted)
    survivors = [n for s, names in tally.by_status.items() if s not in KILLED | UNCHECKED
                 for n in names]
    statuses = ", ".join(f"{s} {len(n)}" for s, n in sorted(tally.by_status.items()))
    print(f"{label}: {pct:.1f}% (killed {killed} of {counted}"
          f"{interval(killed, counted) if sample else ''}; {statuses}; accepted equivalent "
          f"survivors {sum(n in accepted for n in survivors)})")
    for name in unaccepted:
        print(f"  survived: {name}")
    return pct, killed, counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", nargs="+", choices=sorted(GROUPS), default=list(GROUPS),
                        help="module groups to mutate, reported one by one (default: all)")
    parser.add_argument("--modules", nargs="+",
                        help="globs of the files to mutate instead of --groups, as one group")
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS,
                        help="test paths mutmut may choose from (default: %(default)s)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 below {THRESHOLD:.0f}%% (a sample: the lower bound of its "
                             "95%% interval), when mutants were left unchecked, or when an "
                             "accepted survivor is stale")
    parser.add_argument("--sample", type=float, default=DEFAULT_SAMPLE, metavar="FRACTION",
                        help="try only this share of the mutants, a fixed pseudo-random one "
                             "per --seed; 1 for all of them, hours on two cores "
                             "(default: %(default)s, under an hour here)")
    parser.add_argument("--seed", type=int, default=0, help="which sample (default: 0)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args(argv)
    if not 0 < args.sample <= 1:
        parser.error("--sample is a fraction in (0, 1]")

    groups = {"modules": args.modules} if args.modules else {g: GROUPS[g] for g in args.groups}
    accepted = accepted_survivors()
    work = args.keep or Path(tempfile.mkdtemp(prefix="heal-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="heal-mutation-engines-"))
    started = time.monotonic()
    copy_tree(work)
    write_config(work, [g for globs in groups.values() for g in globs], args.tests)
    try:
        env = start_engines(home)
        env["HEAL_TEST_TEMPLATE_DATABASE"] = make_template(
            env["HEAL_DATABASE_URL"], work / "storage" / "migrations")
        run = run_mutmut(work, env, args.max_children, groups, args.sample, args.seed, accepted)
    finally:
        stop_engines(home)
        # as root the embedded PostgreSQL keeps its data beside the folder (storage/embedded.py)
        for leftover in (home, Path(f"{home}.pg")):
            shutil.rmtree(leftover, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return summarize(run, accepted, args, time.monotonic() - started)


def summarize(run: Run, accepted: dict[str, str], args: argparse.Namespace,
              wall: float) -> int:
    """Print each group's score, the total, stale entries, the time spent and the check;
    returns the exit code."""
    sample = args.sample < 1
    total = Tally()
    for group, tally in run.tallies.items():
        names = [n for ns in tally.by_status.values() for n in ns]
        spent = sum(run.mutant_seconds.get(n, 0.0) for n in names)
        report(f"{group} ({spent:.0f} s of mutant sessions)", tally, accepted, sample)
        for status, names in tally.by_status.items():
            for name in names:
                total.add(name, status)
    pct, killed, counted, _ = score(total, accepted)
    survivors = [n for s, names in total.by_status.items() if s not in KILLED | UNCHECKED
                 for n in names]
    print(f"accepted survivors (equivalent mutants, not counted): "
          f"{sum(n in accepted for n in survivors)}; score counting them as survivors: "
          f"{100.0 * killed / (killed + len(survivors)) if survivors or killed else 0.0:.1f}%")
    pins = accepted_pins()
    stale = stale_accepted(run.accepted_status, run.digests, pins)
    for entry in stale:
        print(f"stale accepted survivor (remove or review it in {SURVIVORS_FILE.name}): {entry}")
    for name in sorted(run.accepted_status.keys() - pins.keys()):
        if run.digests.get(name):
            print(f"unpinned accepted survivor (write it as {name}@{run.digests[name]} so a "
                  "renumbered name is caught)")
    unchecked = total.count(*UNCHECKED)
    if unchecked:
        print(f"warning: {unchecked} mutants were not checked (the run ended early): "
              "the score covers the others only", file=sys.stderr)
    tried_names = {n for ns in total.by_status.values() for n in ns} | run.accepted_status.keys()
    tried = [run.mutant_seconds[n] for n in tried_names if n in run.mutant_seconds]
    phases = ", ".join(f"{phase} {took:.0f} s" for phase, took in run.seconds.items())
    print(f"time: {wall:.0f} s in all ({phases}); {len(tried)} mutants "
          f"tried, {sum(tried) / max(len(tried), 1):.1f} s each on average (pytest session, "
          f"fork to exit), "
          f"{args.max_children} at a time")
    if sample:
        print(f"sample: {args.sample:g} of the mutants (seed {args.seed})"
              f"{interval(killed, counted)}")
    passed, why = check_passes(killed, counted, sample)
    if args.check:
        verdict = "pass" if passed and not unchecked and not stale else "FAIL"
        print(f"check: {verdict} ({why}; unchecked {unchecked}; stale accepted {len(stale)})")
    print(f"mutation score {pct:.1f}% (killed {killed} of {counted})")
    return 1 if args.check and (not passed or unchecked or stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
