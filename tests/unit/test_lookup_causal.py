"""The in-memory twin of the recursive CTE (used offline) walks edges like the database."""

from __future__ import annotations

import pytest

from pipeline.lookup.causal import walk_edges


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
