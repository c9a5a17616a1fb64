"""Thompson sampling over the candidate fixes' Beta posteriors: each candidate draws a
success rate from its posterior and the highest draw wins, so proven fixes are chosen most of
the time while uncertain ones still get explored. The draws are returned for the record
(``heal explain``); a seeded ``random.Random`` makes a ranking reproducible."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pipeline.lifecycle.posterior import Posterior


@dataclass(frozen=True)
class Draw:
    fix_id: str
    draw: float
    alpha: float
    beta: float


def thompson_rank(candidates: Mapping[str, Posterior], rng: random.Random) -> list[Draw]:
    """Candidates ordered best first by one posterior draw each (ties broken by id)."""
    draws = [Draw(fix_id, rng.betavariate(p.alpha, p.beta), p.alpha, p.beta)
             for fix_id, p in sorted(candidates.items())]
    return sorted(draws, key=lambda d: (-d.draw, d.fix_id))


class RankingStore(Protocol):
    def posteriors(self, fingerprint: str, fix_ids: list[str]) -> dict[str, Posterior]: ...
    def record_ranking(self, fingerprint: str, draws: list[Draw]) -> None: ...


def rank_and_record(store: RankingStore, fingerprint: str, fix_ids: list[str],
                    rng: random.Random | None = None) -> list[Draw]:
    """Rank the candidate fixes of ``fingerprint`` and record the choice with every draw
    (``fix_rankings``), for ``heal explain``. One candidate is returned as is, unrecorded."""
    if len(fix_ids) < 2:
        return [Draw(f, 1.0, 1.0, 1.0) for f in fix_ids]
    draws = thompson_rank(store.posteriors(fingerprint, fix_ids), rng or random.Random())
    store.record_ranking(fingerprint, draws)
    return draws
