"""Calibrate the tier 2 threshold on labelled real error texts (tests/fixtures/errors).

For each text: embed its normalized fingerprint headline, find the nearest seed reference
per pattern,
and record (similarity of the best pattern, whether it is the right one). Logic-bug texts
(folder ``_logic_bugs``) are negatives: any pattern at or above the threshold is wrong.
The report gives, per candidate threshold, precision and recall of tier 2 on its own
(tier 1 switched off), so the chosen threshold is a measured trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.lookup.catalog import Catalog
from pipeline.lookup.semantic import Embedder, MemoryIndex, best_per_pattern, query_text

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "errors"


@dataclass(frozen=True)
class Sample:
    label: str | None  # None: a logic bug, no pattern is right
    predicted: str
    similarity: float


def measure(catalog: Catalog, embedder: Embedder, root: Path = FIXTURES) -> list[Sample]:
    from pipeline.fingerprint import fingerprint_text
    from pipeline.lookup.setup import reference_texts

    refs = reference_texts(catalog)
    vectors = embedder.embed([t for _, _, t in refs])
    index = MemoryIndex([(i, p, t, v) for (i, p, t), v in zip(refs, vectors, strict=True)])
    paths = sorted(root.glob("*/*.txt"))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    queries = [query_text(t, fingerprint_text(t).normalized) for t in texts]
    out = []
    for path, vector in zip(paths, embedder.embed(queries), strict=True):
        best = best_per_pattern(index.search(vector, 15))[0]
        label = None if path.parent.name.startswith("_") else path.parent.name
        out.append(Sample(label, best.pattern_id, best.similarity))
    return out


def table(samples: Sequence[Sample], thresholds: Sequence[float]) -> list[dict[str, float]]:
    rows = []
    for t in thresholds:
        answered = [s for s in samples if s.similarity >= t]
        right = [s for s in answered if s.label == s.predicted]
        positives = [s for s in samples if s.label is not None]
        logic_answered = [s for s in answered if s.label is None]
        rows.append({
            "threshold": t,
            "answered": len(answered),
            "precision": len(right) / len(answered) if answered else 1.0,
            "recall": len(right) / len(positives) if positives else 0.0,
            "logic_bugs_matched": len(logic_answered),
        })
    return rows


def main() -> None:  # pragma: no cover - run by hand: python -m pipeline.lookup.calibrate
    from pipeline.lookup.catalog import load_catalog

    samples = measure(load_catalog(), Embedder())
    logic = max((s.similarity for s in samples if s.label is None), default=0.0)
    print(f"{len(samples)} texts; best logic-bug similarity {logic:.3f}")
    for row in table(samples, [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]):
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))


if __name__ == "__main__":  # pragma: no cover
    main()
