"""The in-memory twin of the recursive CTE (used offline) walks edges like the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.causal import walk_edges
from pipeline.lookup.service import Lookup
from storage.cache import LocalCache


def test_walks_to_transitive_causes_most_confident_first() -> None:
    edges = [("disk", "db", 0.9), ("db", "api", 0.8), ("dns", "api", 0.6)]
    causes = walk_edges(edges, ["api"])
    assert [(c.node, round(c.confidence, 2), c.path) for c in causes] == [
        ("db", 0.8, ("api", "db")),
        ("disk", 0.72, ("api", "db", "disk")),
        ("dns", 0.6, ("api", "dns")),
    ]
    assert [c.node for c in walk_edges(edges, ["api"], min_confidence=0.7)] == ["db", "disk"]


def test_cycles_do_not_loop() -> None:
    causes = walk_edges([("a", "b", 1.0), ("b", "a", 1.0)], ["a"])
    assert [c.path for c in causes] == [("a", "b")]


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_is_bounded(depth: int) -> None:
    edges = [(str(i + 1), str(i), 1.0) for i in range(5)]
    assert len(walk_edges(edges, ["0"], max_depth=depth)) == depth


def test_the_lookup_walks_a_node_set_as_the_union_of_each_nodes_walk(tmp_path: Path) -> None:
    # (the lookup memoizes walks per start node, so the probe's walk from a new fingerprint
    # also serves tier 3's walk from that fingerprint and a pattern)
    edges = [("disk", "db", 0.9), ("db", "api", 0.8), ("dns", "api", 0.6), ("db", "web", 0.95),
             ("api", "web", 0.5), ("cdn", "web", 0.7)]
    cache = LocalCache.at_home(tmp_path)
    cache.put_edges(edges)
    lookup = Lookup(load_catalog(), cache)  # offline: walked over the cached edges
    for nodes in (["api"], ["api", "web"], ["web", "api", "web"], ["cdn"], []):
        expected = walk_edges(edges, list(dict.fromkeys(nodes)), 0.5)  # (as SQL's ANY)
        assert set(lookup._causes(nodes)) == set(expected)
        assert [(c.confidence, len(c.path), c.node) for c in lookup._causes(nodes)] == [
            (c.confidence, len(c.path), c.node) for c in expected]
    cache.close()
