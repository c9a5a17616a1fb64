"""The decision report of a failure ``heal run`` never published (it was interrupted, or the
engines could not be reached): kept apart from :mod:`producers.run`, which imports the CI
report only once a command failed (a passing command starts fast)."""

from __future__ import annotations

from typing import Any

from pipeline.ci.report import RunReport


class UnpublishedReport(RunReport):
    """A report whose event reached no stream: ``error_id`` null in the decision JSON and
    ``decision.json``, empty in the step outputs and ``heal.env`` (there is nothing to look
    up: its event's id is "")."""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "error_id": None}
