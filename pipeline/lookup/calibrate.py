"""Calibrate the tier 2 threshold on labelled real error texts (tests/fixtures/errors).

For each text: embed its normalized fingerprint headline, find the nearest seed reference
per pattern, and record (the best pattern, whether it is the right one, and the similarity
tier 2 would answer it by: that of its most similar reference sharing a word of evidence with
the text, 0 when none does). Logic-bug texts
(folder ``_logic_bugs``) are negatives: any pattern at or above the threshold is wrong.
The report gives, per candidate threshold, precision and recall of tier 2 on its own
(tier 1 switched off), so the chosen threshold is a measured trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.lookup.catalog import Catalog
from pipeline.lookup.semantic import (
    Embedder,
    MemoryIndex,
    Neighbour,
    agreeing,
    best_per_pattern,
    evidence,
    query_text,
)

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "errors"


@dataclass(frozen=True)
class Sample:
    label: str | None  # None: a logic bug, no pattern is right
    predicted: str
    similarity: float


def measure_both(catalog: Catalog, embedder: Embedder, root: Path = FIXTURES
                 ) -> tuple[list[Sample], list[Sample]]:
    """(in-sample, held-out) samples. Held out: each text against an index *without its own
    pattern's references*, i.e. as an error of a pattern nobody wrote: any answer is wrong
    (label None). A text without evidence (:func:`evidence`) is abstained on (similarity 0),
    as the lookup does."""
    from pipeline.fingerprint import fingerprint_text
    from pipeline.lookup.setup import reference_texts

    refs = reference_texts(catalog)
    vectors = embedder.embed([t for _, _, t in refs])
    rows = [(i, p, t, v) for (i, p, t), v in zip(refs, vectors, strict=True)]
    index = MemoryIndex(rows)
    without: dict[str, MemoryIndex] = {}
    paths = sorted(root.glob("*/*.txt"))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    queries = [query_text(t, fingerprint_text(t).normalized) for t in texts]
    inside, held_out = [], []
    for path, query, vector in zip(paths, queries, embedder.embed(queries), strict=True):
        label = None if path.parent.name.startswith("_") else path.parent.name
        if not evidence(query):
            inside.append(Sample(label, "", 0.0))
            held_out.append(Sample(None, "", 0.0))
            continue
        best = _answer(query, index.search(vector, 15))
        inside.append(Sample(label, best.pattern_id, best.similarity))
        if label is None:
            held_out.append(Sample(None, best.pattern_id, best.similarity))
            continue
        if label not in without:
            without[label] = MemoryIndex([r for r in rows if r[1] != label])
        other = _answer(query, without[label].search(vector, 15))
        held_out.append(Sample(None, other.pattern_id, other.similarity))
    return inside, held_out


def _answer(query: str, hits: list[tuple[str, float, str]]) -> Neighbour:
    """The nearest pattern, with the similarity tier 2 answers it by: that of its most similar
    reference sharing evidence with the query (0 when none does: tier 2 never answers it)."""
    best = best_per_pattern(hits)[0]
    support = agreeing(query, hits, best.pattern_id)
    return Neighbour(best.pattern_id, support.similarity if support else 0.0, best.text)


GRID = [round(0.5 + 0.025 * i, 3) for i in range(17)]  # 0.50 .. 0.90
MARGIN = 0.025


def choose(inside: Sequence[Sample], held_out: Sequence[Sample],
           grid: Sequence[float] = GRID) -> float:
    """The lowest threshold with no logic bug within a grid step (0.025) of it (the rule the
    shipped threshold follows). ``held_out`` is not used to choose: what tier 2 does with texts of
    unknown patterns at that threshold is the price, reported next to it."""
    del held_out
    for t in grid:
        if not any(s.label is None and s.similarity >= t - MARGIN for s in inside):
            return t
    return grid[-1]


@dataclass(frozen=True)
class LopoRow:
    pattern: str
    threshold: float
    right: int  # texts of the pattern answered with it (its references present)
    texts: int
    wrong_unknown: int  # texts answered with another pattern when its own is unknown


def leave_one_pattern_out(inside: Sequence[Sample], held_out: Sequence[Sample],
                          labels: Sequence[str | None]) -> list[LopoRow]:
    """For each pattern: the threshold chosen on the *other* patterns' texts (and the logic
    bugs), scored on this pattern's texts."""
    rows = []
    for pattern in sorted({x for x in labels if x is not None}):
        mine = [i for i, x in enumerate(labels) if x == pattern]
        rest = [i for i, x in enumerate(labels) if x != pattern]
        t = choose([inside[i] for i in rest], [held_out[i] for i in rest])
        right = sum(1 for i in mine
                    if inside[i].predicted == pattern and inside[i].similarity >= t)
        wrong = sum(1 for i in mine if held_out[i].predicted and held_out[i].similarity >= t)
        rows.append(LopoRow(pattern, t, right, len(mine), wrong))
    return rows


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

    samples, held_out = measure_both(load_catalog(), Embedder())
    logic = max((s.similarity for s in samples if s.label is None), default=0.0)
    print(f"{len(samples)} texts; best logic-bug similarity {logic:.3f}")
    for row in table(samples, [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.725, 0.75, 0.8]):
        unknown = [s for s in held_out if s.predicted]
        wrong = sum(1 for s in unknown if s.similarity >= row["threshold"])
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()),
              f" unknown-pattern texts answered={wrong}/{len(unknown)}")
    print(f"in-sample choice: {choose(samples, held_out):.3f}")
    rows = leave_one_pattern_out(samples, held_out, [s.label for s in samples])
    right = sum(r.right for r in rows)
    texts = sum(r.texts for r in rows)
    wrong = sum(r.wrong_unknown for r in rows)
    spread = sorted({r.threshold for r in rows})
    print(f"leave-one-pattern-out: thresholds chosen {spread}; tier 2 alone right on "
          f"{right}/{texts} ({right / max(texts, 1):.2f}); texts of an unknown pattern "
          f"answered wrongly {wrong}/{texts} ({wrong / max(texts, 1):.2f})")


if __name__ == "__main__":  # pragma: no cover
    main()
