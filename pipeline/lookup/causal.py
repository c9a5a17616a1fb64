"""Tier 3: walk "A causes B" edges from an error to a root cause whose fix is known.

The walk runs in PostgreSQL as a recursive CTE (``storage.causal``); offline, the same walk
runs here over the edges mirrored in the local cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from pipeline.lookup.catalog import SEEDS_DIR, Catalog
from pipeline.yamlload import safe_load
from storage.causal import MAX_DEPTH, Cause

SEED_EDGES = SEEDS_DIR / "causal" / "edges.yaml"
#: a learned edge's confidence after n observations: n / (n + 2) (two make it usable: 0.5)
LEARN_PRIOR = 2


def load_seed_edges(catalog: Catalog, path: Path = SEED_EDGES) -> list[tuple[str, str, float]]:
    """The seeded (cause, effect, confidence) edges between known patterns.

    Raises:
        ConfigError: unreadable file, an unknown pattern id or a confidence outside (0, 1].
    """
    try:
        doc = safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read causal edges: {exc}") from exc
    edges = []
    for i, raw in enumerate(doc.get("edges") or []):
        cause, effect = str(raw.get("cause", "")), str(raw.get("effect", ""))
        confidence = raw.get("confidence")
        for name, node in (("cause", cause), ("effect", effect)):
            if node not in catalog.patterns:
                raise ConfigError(f"{path.name}: edges[{i}].{name} {node!r} is not a pattern id")
        if cause == effect:
            raise ConfigError(f"{path.name}: edges[{i}]: an error cannot cause itself")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not (
                0 < confidence <= 1):
            raise ConfigError(f"{path.name}: edges[{i}].confidence {confidence!r} must be in "
                              "(0, 1]")
        edges.append((cause, effect, float(confidence)))
    return edges


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
