"""Top-1 of `heal diagnose` on the real tool outputs (tests/fixtures/errors), in-sample and
leave-one-pattern-out, next to tier 1 alone and tier 2 alone measured in the same run.

    full path   what `heal diagnose --offline --json` does for each text: fingerprint it,
                then the Lookup over the seeds (tier 1 rules and fingerprints, tier 2 on the
                local cache's vectors, tier 3), nothing recorded
    tier 1      the same Lookup without an embedder
    tier 2      the same Lookup with every detection rule removed (seeds' examples only)

In-sample: top-1 right / texts, and logic bugs (tests/fixtures/errors/_logic_bugs) answered
with a SAFE or MODERATE fix (must be 0).
Leave one pattern out: for each pattern P, the seeds without P (its rules and references
removed); P's texts come from an error heal never heard of, so the right answer is none.
Counted: texts answered with another pattern (wrong), and of those with a SAFE or MODERATE
fix (wrong and applicable).

Usage: python bench/top1.py   (no engines; the embedding model is loaded offline)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.fingerprint import fingerprint_text  # noqa: E402
from pipeline.lookup.catalog import Catalog, load_catalog  # noqa: E402
from pipeline.lookup.semantic import Embedder  # noqa: E402
from pipeline.lookup.service import Lookup  # noqa: E402
from pipeline.lookup.setup import _prepare_vectors  # noqa: E402
from storage.cache import LocalCache  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "errors"
Answer = tuple[str | None, str | None]  # (pattern id, fix category)


def make(catalog: Catalog, cache: LocalCache, embedder: Embedder | None,
         seeds: Catalog | None = None) -> Callable[[str], Answer]:
    """A Lookup over ``catalog``; with ``seeds`` it stores their reference vectors in the
    cache first (once: later Lookups search the cached vectors, filtered by their catalog)."""
    lookup = Lookup(catalog, cache, None, embedder, seeds=catalog)
    if embedder is not None and seeds is not None:
        lookup.prepare_vectors = lambda: _prepare_vectors(lookup, seeds, embedder)

    def ask(text: str) -> Answer:
        fp = fingerprint_text(text)
        r = lookup.lookup(error_id="bench", text=text, fine=fp.fine, coarse=fp.coarse,
                          headline=fp.normalized, fp_params=fp.params, record=False)
        return r.pattern_id, (r.fix or {}).get("category")

    return ask


def main() -> None:
    texts = [(p.parent.name, p.read_text(encoding="utf-8", errors="replace"))
             for p in sorted(FIXTURES.glob("*/*.txt"))]
    seeds = load_catalog()
    embedder = Embedder()
    no_rules = Catalog(dataclasses.replace(p, rules=()) for p in seeds.patterns.values())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        os.environ["HEAL_HOME"] = home
        cache = LocalCache(Path(home) / "cache.sqlite3")
        paths = {"full path": make(seeds, cache, embedder, seeds),
                 "tier 1": make(seeds, cache, None),
                 "tier 2": make(no_rules, cache, embedder)}
        labelled = [(label, text) for label, text in texts if not label.startswith("_")]
        logic = [text for label, text in texts if label == "_logic_bugs"]
        print(f"{len(labelled)} texts of {len({label for label, _ in labelled})} patterns, "
              f"{len(logic)} logic bugs")
        for name, ask in paths.items():
            right = sum(ask(text)[0] == label for label, text in labelled)
            bad = sum(ask(text)[1] in ("SAFE", "MODERATE") for text in logic)
            print(f"in-sample  {name:<9} top-1 {right}/{len(labelled)} "
                  f"({right / len(labelled):.3f}); logic bugs with a SAFE/MODERATE fix {bad}")
        for name, use_embedder, base in (("full path", True, seeds), ("tier 1", False, seeds),
                                         ("tier 2", True, no_rules)):
            wrong = applicable = 0
            for pid in sorted({label for label, _ in labelled}):
                without = Catalog(p for p in base.patterns.values() if p.id != pid)
                ask = make(without, cache, embedder if use_embedder else None)
                for label, text in labelled:
                    if label != pid:
                        continue
                    got, category = ask(text)
                    wrong += got is not None
                    applicable += got is not None and category in ("SAFE", "MODERATE")
            n = len(labelled)
            print(f"leave-one-pattern-out {name:<9} abstained {n - wrong}/{n} "
                  f"({(n - wrong) / n:.3f}); answered with another pattern {wrong} "
                  f"(with a SAFE/MODERATE fix {applicable})")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
