"""The "before" and "after" copies of a check run in parallel can collide (a suite binding a
fixed port): a run that would count against the fix is run again alone before the verdict,
so a correct fix is not rejected for the collision, and a real regression still is (real
git, Redis, RQ workers)."""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline.demo.sample import break_formatting, break_side_effect_import, git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import (
    FORMAT_FIX,
    LINT_FIX,
    candidate,
    sample_repo,
)

PORT_TEST = """\
import socket
import time
import unittest


class P(unittest.TestCase):
    def test_server(self):
        s = socket.socket()
        s.bind(("127.0.0.1", {port}))
        s.listen()
        time.sleep(2)
        s.close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_check_that_loses_a_fixed_port_to_its_other_copy_does_not_reject_a_good_fix(
        tmp_path: Path, validator: Validator) -> None:
    # Given a suite that passes alone but binds a fixed port for 2 s
    root = sample_repo(tmp_path)
    (root / "tests/test_port.py").write_text(PORT_TEST.format(port=_free_port()))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "port test")
    break_formatting(root)
    # When a correct formatting fix is verified (both copies of the suite run at once)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    # Then it is approved: the suite passes with the fix when run alone
    assert verdict.decision == "apply", verdict.reason
    runs = {(r["phase"], r["name"]): r for r in verdict.verification}
    assert runs[("after", "tests")]["exit_code"] == 0
    # (the "before" copy may be the one that lost the port: a check failing before the fix
    # does not count against it, so it is not run again; its failure is the collision itself)
    before = runs[("before", "tests")]
    assert before["exit_code"] == 0 or "Address already in use" in before["tail"], before
    if "interference" in verdict.reason:  # the collision happened (timing): it was settled
        assert "tests (" in verdict.reason and "alone counts" in verdict.reason


def test_a_real_regression_is_still_claimed_after_running_it_alone(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_side_effect_import(root)
    verdict = validator.validate(candidate(root, ("ruff", "check", "."), LINT_FIX))
    assert verdict.decision == "reject"
    assert "breaks checks that passed before: tests" in verdict.reason
    after = [r for r in verdict.verification if (r["phase"], r["name"]) == ("after", "tests")]
    assert after[0]["tail"].startswith("[heal: run again alone; beside the other runs it exited")
