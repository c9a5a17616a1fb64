"""`heal demo` end to end on the real engines: every breakage ends as the demo promises."""

from __future__ import annotations

import pytest

from pipeline.cli import main


def test_heal_demo_end_to_end(heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]
                              ) -> None:
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "6/6 as expected" in out
    assert "detected 6, fixed and verified 4, rolled back 1, escalated 1" in out
    # the rollback is explained by the verification evidence
    assert "the fix breaks checks that passed before: tests" in out
    assert "verify failing-command: exit 1 before, 0 with the fix" in out
    # and it runs again with the same result (its database and streams are its own)
    assert main(["demo"]) == 0
    assert "6/6 as expected" in capsys.readouterr().out
