"""What a lookup answers: the pattern, the tier, the score, why, the path, and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LookupResult:
    pattern_id: str | None
    tier: int | None
    score: float
    reason: str
    path: tuple[str, ...] = ()
    fix: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: the fixture-independent facts behind the answer (neighbours, guard verdict...)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        return self.pattern_id is not None

    def match_dict(self) -> dict[str, Any]:
        """The ``match`` field of a CandidateEvent (``ignored`` only when `heal ignore` said so)."""
        match = {
            "pattern_id": self.pattern_id,
            "tier": self.tier,
            "score": round(self.score, 4),
            "reason": self.reason,
            "path": list(self.path),
        }
        if self.details.get("ignored"):
            match["ignored"] = True
        if self.details.get("via"):
            match["via"] = self.details["via"]  # "coarse": a learned coarse mapping only
        return match


def unmatched(reason: str, **details: Any) -> LookupResult:
    return LookupResult(None, None, 0.0, reason, details=details)
