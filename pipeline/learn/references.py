"""Every verified resolution teaches tier 2: when a fix of a pattern was applied and held, the
error's masked headline becomes one more reference text of that pattern (embedded by the
lookup on its next refresh), so a reworded recurrence finds it semantically."""

from __future__ import annotations

from typing import Any

from pipeline.events import OutcomeEvent


class ResolutionReferences:
    """Called by the lifecycle stage after each outcome it records for the first time."""

    def __init__(self, db: Any) -> None:
        from storage.learned import LearnedRepository

        self.repo = LearnedRepository(db)

    def after_outcome(self, event: OutcomeEvent, kind: str | None) -> bool:
        """True when a new reference was stored. Raises DatabaseUnavailable / QueryError."""
        if kind != "success" or not event.fix_id or not event.error.text.strip():
            return False
        pattern_id = self.repo.pattern_of_fix(event.fix_id)
        if pattern_id is None:
            return False  # a precedent diff has no pattern: its fingerprint is its key
        from pipeline.fingerprint import fingerprint_event
        from pipeline.lookup.semantic import query_text, vector_id

        fp = fingerprint_event(event.error)
        text = query_text(event.error.text, fp.normalized)
        return self.repo.add_reference(vector_id(pattern_id, text), pattern_id, text,
                                       event.error_id)
