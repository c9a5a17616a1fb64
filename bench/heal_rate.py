"""Heal rate on the scenario corpus: every scenario in tests/scenarios runs through
``heal run --mode auto-safe`` (embedded engines, stages in-process).

Prints per scenario what happened, then: resolution rate of the healable scenarios, wrong
fixes (a non-healable scenario whose repository changed, or an applied fix that left the
command failing) and time from failure to verified fix (outcome ts - error ts) p50/p95.
Baseline in the same run: re-running each failing command without heal (resolves nothing;
the breakages are deterministic), so the resolution ratio is heal's alone.

    python bench/heal_rate.py [--only NAME ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.events import ErrorEvent, OutcomeEvent  # noqa: E402
from tests.scenarios.catalog import (  # noqa: E402
    SCENARIOS,
    UNITTEST,
    Scenario,
    build,
    tree_state,
)

HEAL = str(Path(sys.executable).parent / "heal")


@dataclass
class Result:
    scenario: Scenario
    exit_code: int
    passes_after: bool
    changed: bool
    status: str
    fix_id: str
    heal_s: float
    fix_s: float | None
    baseline_passes: bool


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env,
                "PATH": os.environ.get("PATH", "") + os.pathsep + str(Path(HEAL).parent)}
    return subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _outcome(env: dict[str, str]) -> OutcomeEvent | None:
    from pipeline.config import Settings
    from storage.engines import connect_redis

    settings = Settings.from_env(env)
    client = connect_redis(settings)
    for _id, fields in client.xrevrange(settings.stream("outcomes"), count=10) or []:
        if fields:
            return OutcomeEvent.decode(fields[b"event"])
    return None


def _seconds(outcome: OutcomeEvent) -> float:
    import datetime as dt

    def parse(ts: str) -> dt.datetime:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))

    error: ErrorEvent = outcome.error
    return (parse(outcome.ts) - parse(error.ts)).total_seconds()


def run_one(scenario: Scenario, work: Path, home: Path) -> Result:
    _, root = build(scenario.name, work)
    before = tree_state(root)
    env = {"HEAL_HOME": str(home), "HEAL_STREAM_PREFIX": f"bench-{uuid.uuid4().hex[:8]}"}
    baseline = _run(list(scenario.command), root, env).returncode == 0
    started = time.monotonic()
    proc = _run([HEAL, "run", "--mode", "auto-safe", "--timeout", "180", "--",
                 *scenario.command], root, env)
    heal_s = time.monotonic() - started
    passes = _run(list(scenario.command), root, env).returncode == 0
    outcome = _outcome({**os.environ, **env})
    status = outcome.status if outcome else "no outcome"
    fix_s = _seconds(outcome) if outcome and outcome.status == "applied" else None
    return Result(scenario, proc.returncode, passes, tree_state(root) != before, status,
                  outcome.fix_id if outcome else "", heal_s, fix_s, baseline)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    work = args.keep or Path(tempfile.mkdtemp(prefix="heal-scenarios-"))
    home = work / ".heal-home"
    home.mkdir(parents=True, exist_ok=True)
    # the operator allows the check the scenarios' heal.toml declares (pipeline.trust)
    operator = home / "heal.toml"
    operator.write_text("[trust]\ncommands = [" + json.dumps(list(UNITTEST)) + "]\n")
    operator.chmod(0o600)
    _run([HEAL, "engines", "start"], work, {"HEAL_HOME": str(home)})
    results: list[Result] = []
    try:
        for scenario in chosen:
            r = run_one(scenario, work, home)
            results.append(r)
            kind = "healable" if scenario.healable else "not healable"
            fix = f"{r.fix_s:.1f}s" if r.fix_s is not None else "-"
            print(f"{scenario.name:<28} {kind:<13} {r.status:<12} {r.fix_id or '-':<30} "
                  f"exit {r.exit_code:<3} fix {fix:>6}  heal run {r.heal_s:5.1f}s", flush=True)
    finally:
        _run([HEAL, "engines", "stop"], work, {"HEAL_HOME": str(home)})
    healable = [r for r in results if r.scenario.healable]
    resolved = [r for r in healable if r.status == "applied" and r.passes_after]
    wrong = [r for r in results
             if (not r.scenario.healable and r.changed)
             or (r.status == "applied" and not r.passes_after)]
    times = [r.fix_s for r in resolved if r.fix_s is not None]
    base = sum(r.baseline_passes for r in healable)
    print()
    print(f"resolution: {len(resolved)}/{len(healable)} healable resolved "
          f"({100 * len(resolved) / max(1, len(healable)):.0f}%; baseline re-run without heal: "
          f"{base}/{len(healable)})")
    print(f"wrong fixes: {len(wrong)}" + (" (" + ", ".join(r.scenario.name for r in wrong) + ")"
                                          if wrong else ""))
    if times:
        print(f"failure -> verified fix: p50 {statistics.median(times):.2f}s, "
              f"p95 {pct(times, 0.95):.2f}s over {len(times)} fixes")
    print(f"not healable left unchanged: "
          f"{sum(not r.changed for r in results if not r.scenario.healable)}/"
          f"{sum(not r.scenario.healable for r in results)}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
