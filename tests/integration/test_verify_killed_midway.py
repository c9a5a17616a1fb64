"""A heal process SIGKILLed mid-validation: the next verification removes its worktrees and
its heal branch, and the same request is not refused as a duplicate of one no living process
will decide (real git, Redis, RQ workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

#: the step: ruff's format check; it hangs in heal's worktrees while FLAG exists
CHECK = """\
import os
import subprocess
import sys
import time

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
if "worktrees" in os.getcwd() and os.path.exists(FLAG):
    time.sleep(60)
sys.exit(p.returncode)
"""

VALIDATE = """
import sys, redis
from pathlib import Path
from pipeline.config import Settings
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate
url, home, prefix, root, fine = sys.argv[1:]
settings = Settings(redis_url=None, database_url=None, home=Path(home), prefix=prefix)
cand = candidate(Path(root), (sys.executable, "check.py"), FORMAT_FIX, fine=fine)
Validator(settings, redis.Redis.from_url(url)).validate(cand)
"""


def _wait(condition, what: str, deadline_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting: {what}"
        time.sleep(0.2)


def test_a_validation_killed_midway_leaves_no_worktree_branch_or_dedupe_behind(
        tmp_path: Path, redis_url: str, client: redis.Redis, stage_settings: Settings,
        validator: Validator) -> None:
    # Given a validation in another heal process, hanging in its checks
    root = sample_repo(tmp_path)
    flag = tmp_path / "hang"
    flag.write_text("")
    (root / "check.py").write_text(f"FLAG = {str(flag)!r}\n" + CHECK)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "check")
    break_formatting(root)
    fine = f"fp-kill-{uuid.uuid4().hex[:8]}"
    project = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", VALIDATE, redis_url, str(stage_settings.home),
         stage_settings.prefix, str(root), fine],
        cwd=project, env={**os.environ, "PYTHONPATH": str(project)})
    try:
        _wait(lambda: git(root, "worktree", "list").count("\n") == 2
              and "heal/" in git(root, "branch", "--list"), "worktrees and a heal branch")
    finally:
        # When it is SIGKILLed with everything it started (its RQ workers, their jobs)
        family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert git(root, "worktree", "list").count("\n") == 2  # left behind
    flag.unlink()
    # Then the same request (another error, same fingerprint and fix) is verified, not
    # "skipped" as a duplicate of the dead one
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX,
                                           fine=fine))
    assert verdict.decision == "apply", verdict.reason
    [dedupe] = [c for c in verdict.preflight if c["name"] == "dedupe"]
    assert "abandoned in flight" in dedupe["reason"] and "taken over" in dedupe["reason"]
    # and the dead attempt's worktrees are gone; its branch too (only the new one is left)
    assert git(root, "worktree", "list").count("\n") == 0
    assert git(root, "branch", "--list", "heal/*").split() == [verdict.branch]
    assert not list((stage_settings.home / "worktrees").glob("*"))
