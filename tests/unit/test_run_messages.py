"""What `heal run` says about an outcome (producers/run.py RunSession._report)."""

from __future__ import annotations

import io
from pathlib import Path

from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent
from producers.decision import Decision
from producers.run import RunOptions, RunSession


def test_a_rollback_is_not_called_a_failed_verification(tmp_path: Path) -> None:
    # (QA report qa_life, item 11) a reverted fix had passed verification in a clean
    # worktree; it failed only once applied in the user's tree
    out = io.StringIO()
    session = RunSession(RunOptions(argv=["true"]),
                         Settings(None, None, tmp_path, "t"), client=object(), out=out)
    error = ErrorEvent(id="e1", text="boom")
    session._report(Decision(OutcomeEvent(
        id="e1:apply", error_id="e1", error=error, fix_id="fs.x/fix", status="rolled_back",
        detail="still failing after applying (exit 1); reverted by abc")))
    said = out.getvalue()
    assert said.startswith("heal: fix fs.x/fix passed verification and was applied, but the "
                           "step still failed here, so it was rolled back: still failing"), said
    assert "failed verification" not in said
