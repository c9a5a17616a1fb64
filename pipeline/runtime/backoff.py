"""Capped exponential backoff, used for handler retries and for Redis reconnects."""

from __future__ import annotations


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, requested: float | None = None
) -> float:
    """Delay before try ``attempt + 1``: ``requested`` (from ``Retry(delay=)``) when given,
    else ``base * 2**(attempt-1)``; always capped by ``cap_s``."""
    if requested is not None and requested >= 0:
        return min(requested, cap_s)
    exponent = min(max(attempt - 1, 0), 32)  # avoids float overflow on absurd attempt counts
    return min(base_s * (2.0**exponent), cap_s)
