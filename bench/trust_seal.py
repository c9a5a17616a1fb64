"""Cost of sealing stage events (pipeline.trust.seal), as a ratio to what every stage already
does per event: decode and encode a contract event, measured in the same run.

    seal        HMAC-SHA256 over an encoded VerdictEvent and the seal appended (the output)
    unseal      the seal checked and stripped (the input of the next stage)
    baseline    VerdictEvent.decode + encode of the same bytes

Usage: python bench/trust_seal.py [--events N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.events import ErrorEvent, Repo, VerdictEvent  # noqa: E402
from pipeline.trust.seal import seal, unseal  # noqa: E402


def _best(fn: Callable[[], object], n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.pop("HEAL_SIGNING_KEY", None)
    home = Path(tempfile.mkdtemp(prefix="heal-seal-bench-"))
    settings = Settings(redis_url=None, database_url=None, home=home, prefix="b")
    error = ErrorEvent(id="run-1", text="ModuleNotFoundError: No module named 'yaml'\n" * 40,
                       command=("python", "-m", "pytest"), repo=Repo(path="/srv/x"))
    raw = VerdictEvent(id="run-1:validate", error_id="run-1", error=error, fine="fp",
                       fix={"id": "f", "rendered": {"argv": ["ruff", "format", "."]}},
                       decision="apply", reason="ok").encode()
    sealed = seal(settings, "verdicts", raw)
    n = args.events
    base = _best(lambda: VerdictEvent.decode(raw).encode(), n)
    t_seal = _best(lambda: seal(settings, "verdicts", raw), n)
    t_unseal = _best(lambda: unseal(settings, "verdicts", sealed), n)
    print(f"event of {len(raw)} bytes, best of 3 x {n}; load average {os.getloadavg()[0]:.1f}")
    print(f"  decode+encode (baseline)  {base * 1e6:7.1f} us")
    print(f"  seal                      {t_seal * 1e6:7.1f} us  {t_seal / base:5.2f}x baseline")
    print(f"  unseal                    {t_unseal * 1e6:7.1f} us  {t_unseal / base:5.2f}x "
          "baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
