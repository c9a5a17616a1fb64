"""Learning causal edges from runs (tier 3's evidence).

When heal applies the fix of pattern A and the failing step then passes, every other known
error in that same run's output disappeared with it: their patterns B get an observation
"A causes B" (``causal_edges``, one more ``evidence`` each time; the confidence after n
observations is n / (n + 2), so two runs make an edge usable by the lookup's walk, which
needs 0.5). A later error B whose own pattern has no usable fix then gets A's fix through
tier 3, and validation still has to prove it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.events import OutcomeEvent
from pipeline.lookup.catalog import Catalog
from pipeline.lookup.causal import LEARN_PRIOR

log = logging.getLogger("heal.lifecycle.causes")

#: the error text examined for other errors (the tail, where tools print them)
TEXT_TAIL = 20_000


class EdgeStore(Protocol):
    def observe(self, cause: str, effect: str, prior: int = LEARN_PRIOR) -> float: ...


@dataclass
class CauseLearner:
    catalog: Catalog
    graph: EdgeStore
    _pattern_of_fix: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pattern_of_fix = {p.fix.id: p.id for p in self.catalog.patterns.values()}

    def after_outcome(self, event: OutcomeEvent) -> list[tuple[str, str, float]]:
        """Record the edges one applied outcome proves; returns (cause, effect, confidence)."""
        if event.status != "applied":
            return []
        cause = self._pattern_of_fix.get(event.fix_id)
        if cause is None:
            return []
        text = event.error.text[-TEXT_TAIL:]
        effects = sorted(p.id for p in self.catalog.patterns.values()
                         if p.id != cause and p.detect(text) is not None)
        learned = []
        for effect in effects:
            learned.append((cause, effect, self.graph.observe(cause, effect, LEARN_PRIOR)))
            log.info("causal edge %s -> %s observed (confidence %.2f)", *learned[-1])
        return learned
