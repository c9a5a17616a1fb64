"""Determinism score of a fingerprint: 0 flaky, 1 deterministic.

Two signals: (1) outcomes of the same step on the same commit: a deterministic failure fails
every time on a given commit, a flaky one passes and fails on identical code; (2) the spread
of the intervals between occurrences: a deterministic error recurs on every run (regular
intervals, coefficient of variation near 0), a flaky one strikes at random (Poisson-like,
coefficient of variation near 1 or above).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

FLAKY_BELOW = 0.5


def evidence(commit: str, ok: bool | None, status: str) -> list[tuple[str, bool]]:
    """The (commit, passed) results one recorded outcome contributes: a ``flaky`` outcome is
    a failure and a pass of the same commit (it passed on a plain re-run, nothing changed);
    an ``escalated`` one is a failure that held (so a fingerprint once marked flaky becomes
    deterministic again when its failures keep reproducing), and so are a fix that failed or
    was rolled back (the failure reproduced). An ``applied`` one is none: the step passed
    because heal changed the code, which says nothing of the commit passing unchanged (read
    as a pass of the commit, a fix that worked made its own error look flaky, and the fix's
    successes stopped counting)."""
    if not commit or status == "applied":
        return []
    if status == "flaky":
        return [(commit, False), (commit, True)]
    if status == "escalated":
        return [(commit, False)]
    return [] if ok is None else [(commit, bool(ok))]


def commit_consistency(results: Iterable[tuple[str, bool]]) -> float | None:
    """Share of commits (seen at least twice) whose runs all agreed; None without evidence."""
    by_commit: dict[str, set[bool]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for commit, ok in results:
        by_commit[commit].add(ok)
        counts[commit] += 1
    judged = [c for c in by_commit if counts[c] >= 2]
    if not judged:
        return None
    return sum(len(by_commit[c]) == 1 for c in judged) / len(judged)


def interval_regularity(timestamps: Iterable[float]) -> float | None:
    """1 / (1 + CV²) of the gaps between occurrences; None with fewer than 3 occurrences."""
    ts = sorted(timestamps)
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    if len(gaps) < 2:
        return None
    mean = statistics.fmean(gaps)
    if mean <= 0:
        return 1.0
    cv = statistics.pstdev(gaps) / mean
    return 1.0 / (1.0 + cv * cv)


def determinism_score(
    results: Iterable[tuple[str, bool]], timestamps: Iterable[float]
) -> float:
    """Weighted blend (same-commit evidence counts more); 1.0 when nothing is known."""
    consistency = commit_consistency(results)
    regularity = interval_regularity(timestamps)
    if consistency is None and regularity is None:
        return 1.0
    if consistency is None:
        return round(regularity or 0.0, 3)
    if regularity is None:
        return round(consistency, 3)
    return round(0.7 * consistency + 0.3 * regularity, 3)


def is_flaky(score: float) -> bool:
    """Flaky errors get a retry fix instead of code changes."""
    return score < FLAKY_BELOW
