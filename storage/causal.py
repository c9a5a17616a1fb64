"""Causal edges "cause causes effect" with a confidence, walked with a recursive CTE.

Nodes are pattern ids or fingerprints. Raises DatabaseUnavailable / QueryError.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database

MAX_DEPTH = 6


def walk_cte(nodes: str, max_depth: str) -> str:
    """The recursive walk from the effects ``nodes`` (a text[] placeholder) towards their
    causes, multiplying confidences, at most ``max_depth`` (a placeholder) edges deep; ``path``
    lists the nodes from the effect to the cause; the cycle check keeps a bad edge set from
    looping. Shared by :meth:`CausalGraph.causes` and the lookup's probe."""
    return f"""
WITH RECURSIVE walk(node, confidence, path, depth) AS (
    SELECT e.cause, e.confidence, ARRAY[e.effect, e.cause], 1
    FROM causal_edges e WHERE e.effect = ANY({nodes}::text[])
  UNION ALL
    SELECT e.cause, w.confidence * e.confidence, w.path || e.cause, w.depth + 1
    FROM causal_edges e JOIN walk w ON e.effect = w.node
    WHERE w.depth < {max_depth} AND NOT e.cause = ANY(w.path)
)
"""


#: the order of causes: most confident first, then the longer chain (the deeper root cause)
CAUSE_ORDER = "confidence DESC, depth DESC, node"

_ROOTS = walk_cte("$1", "$2") + f"""SELECT node, confidence, path FROM walk
WHERE confidence >= $3
ORDER BY {CAUSE_ORDER}
"""


@dataclass(frozen=True)
class Cause:
    node: str
    confidence: float
    path: tuple[str, ...]


class CausalGraph:
    def __init__(self, db: Database) -> None:
        self.db = db

    def seed(self, edges: list[tuple[str, str, float]]) -> int:
        """Insert seeded edges that are not there yet (never lowers learned evidence)."""
        added = 0
        for cause, effect, confidence in edges:
            row = self.db.fetchval(
                "INSERT INTO causal_edges (cause, effect, confidence) VALUES ($1, $2, $3)"
                " ON CONFLICT (cause, effect) DO NOTHING RETURNING cause",
                cause, effect, confidence)
            added += row is not None
        return added

    def observe(self, cause: str, effect: str, prior: int = 2) -> float:
        """One more observation that fixing ``cause`` cleared ``effect``, in one statement:
        after n observations the confidence is n / (n + prior), unless it was already higher
        (a seeded edge). Returns the confidence now stored. Raises ValueError for a self-loop.
        """
        if cause == effect:
            raise ValueError("an error cannot cause itself")
        value = self.db.fetchval(
            """INSERT INTO causal_edges (cause, effect, confidence)
               VALUES ($1, $2, 1.0 / (1 + $3::int))
               ON CONFLICT (cause, effect) DO UPDATE SET evidence = causal_edges.evidence + 1,
                   confidence = GREATEST(causal_edges.confidence,
                       (causal_edges.evidence + 1)::float8 / (causal_edges.evidence + 1 + $3))
               RETURNING confidence""", cause, effect, prior)
        return float(value)

    def causes(self, nodes: list[str], min_confidence: float = 0.0,
               max_depth: int = MAX_DEPTH) -> list[Cause]:
        """Every (transitive) cause of any of ``nodes``, most confident first."""
        rows = self.db.fetch(_ROOTS, nodes, max_depth, min_confidence)
        return [Cause(r["node"], float(r["confidence"]), tuple(r["path"])) for r in rows]

    def edges(self) -> list[tuple[str, str, float]]:
        return [(r["cause"], r["effect"], float(r["confidence"]))
                for r in self.db.fetch("SELECT cause, effect, confidence FROM causal_edges")]
