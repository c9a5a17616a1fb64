"""Tier 3: walk "A causes B" edges from an error to a root cause whose fix is known.

The walk runs in PostgreSQL as a recursive CTE (``storage.causal``); offline, the same walk
runs here over the edges mirrored in the local cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from storage.causal import MAX_DEPTH, Cause


def walk_edges(edges: Iterable[tuple[str, str, float]], nodes: Sequence[str],
               min_confidence: float = 0.0, max_depth: int = MAX_DEPTH) -> list[Cause]:
    """The in-memory twin of the recursive CTE: every transitive cause, most confident first."""
    by_effect: dict[str, list[tuple[str, float]]] = {}
    for cause, effect, confidence in edges:
        by_effect.setdefault(effect, []).append((cause, confidence))
    found: list[Cause] = []
    frontier: list[tuple[str, float, tuple[str, ...]]] = [(n, 1.0, (n,)) for n in nodes]
    for _ in range(max_depth):
        step = []
        for node, confidence, path in frontier:
            for cause, weight in by_effect.get(node, ()):
                if cause in path:
                    continue  # a cycle in the edges: never loop
                item = (cause, confidence * weight, (*path, cause))
                step.append(item)
                if item[1] >= min_confidence:
                    found.append(Cause(*item))
        frontier = step
    return sorted(found, key=lambda c: (-c.confidence, -len(c.path), c.node))
