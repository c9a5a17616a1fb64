"""Beta posterior of a fix's success rate (uniform Beta(1, 1) prior) and its credible bounds.

The quantile is computed here (regularized incomplete beta by Lentz's continued fraction,
inverted by bisection) so the lifecycle needs no scientific stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRIOR_ALPHA = 1.0
PRIOR_BETA = 1.0


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 3e-14
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """P(X <= x) for X ~ Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), to 1e-10."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Posterior:
    successes: int = 0
    failures: int = 0

    @property
    def alpha(self) -> float:
        return PRIOR_ALPHA + self.successes

    @property
    def beta(self) -> float:
        return PRIOR_BETA + self.failures

    @property
    def attempts(self) -> int:
        return self.successes + self.failures

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def lower(self, level: float = 0.95) -> float:
        """One-sided lower credible bound: the rate is above it with probability ``level``."""
        return beta_ppf(1.0 - level, self.alpha, self.beta)

    def upper(self, level: float = 0.95) -> float:
        return beta_ppf(level, self.alpha, self.beta)
