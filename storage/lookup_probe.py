"""What the lookup asks PostgreSQL about a fingerprint no detection rule knows, in one
statement: the pattern its fine and its coarse fingerprint map to, the newest learned fix
that may be offered for it, and the causal walk from it.

Asked one after another these were four round trips per new fingerprint, each a hand-off to
the database thread that costs milliseconds on a loaded machine; as one statement sent before
the embedding, PostgreSQL answers while tier 2 embeds the text (see
:meth:`pipeline.lookup.service.Lookup.lookup`). Each part asks exactly what its own
repository method asks (:meth:`storage.patterns.PatternRepository.pattern_for_fingerprint`,
:meth:`storage.lifecycle.PrecedentRepository.newest_offered`,
:meth:`storage.causal.CausalGraph.causes`); a part not wanted gets NULL or an empty list and
reads nothing.

Raises DatabaseUnavailable / QueryError like every repository (from ``result()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from storage.causal import CAUSE_ORDER, MAX_DEPTH, Cause, walk_cte
from storage.db import Database, Pending
from storage.lifecycle import newest_offered_sql

_KEYS = ("fine_pattern", "coarse_pattern", "causes")

_PROBE = walk_cte("$4", "$5") + f"""
SELECT
    (SELECT ARRAY[pattern_id, source] FROM pattern_fingerprints
     WHERE fingerprint = $1::text AND level = 'fine') AS fine_pattern,
    (SELECT ARRAY[pattern_id, source] FROM pattern_fingerprints
     WHERE fingerprint = $2::text AND level = 'coarse') AS coarse_pattern,
    ARRAY(SELECT ROW(node, confidence, path) FROM walk WHERE confidence >= $6
          ORDER BY {CAUSE_ORDER}) AS causes,
    learned.*
FROM (SELECT 1) AS one
LEFT JOIN LATERAL ({newest_offered_sql("$3::text")}) AS learned ON true
"""


@dataclass(frozen=True)
class Probe:
    """The answer: ``None`` where nothing is known (or the part was not asked)."""

    fine_pattern: str | None = None
    coarse_pattern: str | None = None
    #: the ``precedent_drafts`` row with its ``lifecycle_state``, as ``newest_offered`` gives it
    learned: dict[str, Any] | None = None
    #: start node -> its causes, most confident first (only the nodes asked)
    causes: dict[str, list[Cause]] = field(default_factory=dict)
    #: where each mapping came from (``rule`` or ``taught``), beside its pattern
    fine_source: str | None = None
    coarse_source: str | None = None


class FingerprintProbe:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, *, fine: str | None, coarse: str | None, learned_for: str | None,
              cause_nodes: Sequence[str], min_confidence: float,
              max_depth: int = MAX_DEPTH) -> Pending[Probe]:
        """Send the statement and return at once; ``result()`` gives the :class:`Probe`.
        ``None`` (or no cause nodes) leaves a part out."""
        nodes = list(dict.fromkeys(n for n in cause_nodes if n))
        pending = self.db.start_fetchrow(_PROBE, fine, coarse, learned_for, nodes, max_depth,
                                         min_confidence)
        return pending.then(lambda row: _read(row, nodes))


def _read(row: asyncpg.Record | None, nodes: list[str]) -> Probe:
    if row is None:  # (one row always comes back; kept total for the type)
        return Probe(causes={n: [] for n in nodes})
    causes: dict[str, list[Cause]] = {n: [] for n in nodes}
    for node, confidence, path in row["causes"]:
        causes[path[0]].append(Cause(node, float(confidence), tuple(path)))
    learned = None
    if row["id"] is not None:  # precedent_drafts.id is its primary key: NULL = no row
        learned = {k: v for k, v in row.items() if k not in _KEYS}
    fine, coarse = row["fine_pattern"] or (None, None), row["coarse_pattern"] or (None, None)
    return Probe(fine[0], coarse[0], learned, causes, fine_source=fine[1],
                 coarse_source=coarse[1])
