"""A process the failing step leaves behind (in its own session, holding the step's stdout)
defeats no timeout: the step's own exit status counts, in the RQ verification jobs and in
the apply stage's re-run (real git, Redis, RQ workers, PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from pipeline.apply.applier import Applier
from pipeline.demo.sample import break_formatting, git
from pipeline.validate.runner import run_argv
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

#: the step: ruff's format check; when it passes it leaves a detached helper holding stdout
CHECK = """\
import subprocess
import sys

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
sys.stdout.write(p.stdout + p.stderr)
sys.stdout.flush()
if p.returncode == 0:
    h = subprocess.Popen(["sleep", "60"], start_new_session=True)  # keeps our stdout
    with open(PIDS, "a") as f:
        f.write(f"{h.pid}\\n")
sys.exit(p.returncode)
"""


def _kill_helpers(pids: Path) -> None:
    for line in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def test_a_detached_helper_holding_stdout_does_not_hold_verification_or_the_re_run(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    # Given a failing step that, once fixed, leaves a helper holding its stdout for 60 s,
    # and a 10 s check timeout
    root = sample_repo(tmp_path)
    break_formatting(root)
    pids = tmp_path / "helpers.pids"
    (root / "check.py").write_text(f"PIDS = {str(pids)!r}\n" + CHECK)
    policy = (root / "heal.toml").read_text()
    (root / "heal.toml").write_text(policy.replace("[limits]\n",
                                                   "[limits]\ncheck_timeout_s = 10\n"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "check")
    try:
        started = time.monotonic()
        # When the fix is verified (RQ jobs) and applied (the step re-run in the user's tree)
        verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX))
        assert verdict.decision == "apply", verdict.reason
        after = [r for r in verdict.verification
                 if (r["phase"], r["name"]) == ("after", "failing-command")]
        assert after[0]["exit_code"] == 0 and not after[0]["timed_out"]
        assert after[0]["duration_s"] < 5
        outcome = applier.handle(verdict)
        # Then the step's own exit 0 counts: applied, not reverted as "exit 124"
        assert outcome.status == "applied", outcome.detail
        assert "failing step passes again" in outcome.detail
        assert time.monotonic() - started < 40  # the helpers live 60 s
        assert len(pids.read_text().split()) >= 2  # (they did start, in both places)
    finally:
        _kill_helpers(pids)


def test_a_timeout_with_a_detached_helper_is_reported_as_a_timeout_promptly(
        tmp_path: Path) -> None:
    # Given a command that leaves a helper holding its stdout and then hangs
    pids = tmp_path / "helpers.pids"
    script = ("import subprocess, time\n"
              "h = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
              f"open({str(pids)!r}, 'w').write(str(h.pid))\n"
              "print('working', flush=True)\n"
              "time.sleep(60)\n")
    try:
        started = time.monotonic()
        run = run_argv([sys.executable, "-c", script], str(tmp_path), 1.0)
        # Then it is killed at its timeout and reported as one (124), without waiting for
        # the helper
        assert run["timed_out"] and run["exit_code"] == 124
        assert "working" in run["tail"] and "killed after 1s timeout" in run["tail"]
        assert time.monotonic() - started < 8
    finally:
        _kill_helpers(pids)
