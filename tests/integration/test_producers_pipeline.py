"""``heal run`` through the real stages in-process (no workers running): the error is
published, the pipeline runs inline, and a decision is printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from pipeline.events import ErrorEvent, OutcomeEvent


def test_heal_run_drains_the_real_pipeline_inline(
    heal_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    heal = str(Path(sys.executable).parent / "heal")
    done = subprocess.run(
        [heal, "run", "--timeout", "60", "--", sys.executable, "-c",
         "import heal_no_such_module_xyz"],
        cwd=repo, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 1, done.stderr  # nothing was applied: the command's own status
    assert "No module named 'heal_no_such_module_xyz'" in done.stderr
    assert "published run-" in done.stderr
    client = redis.Redis.from_url(redis_url)
    prefix = heal_env["HEAL_STREAM_PREFIX"]
    (entry,) = client.xrange(f"{prefix}:errors")
    error = ErrorEvent.decode(entry[1][b"event"])
    outcomes = [OutcomeEvent.decode(f[b"event"]) for _, f in client.xrange(f"{prefix}:outcomes")]
    assert [o.error_id for o in outcomes] == [error.id]
    # default mode `suggest`: the known pattern's fix is offered, never applied on its own,
    # and the decision printed is that one
    assert outcomes[0].status == "suggested", outcomes[0]
    assert outcomes[0].fix_id == "python.module_not_found/fix"
    decision = done.stderr.split("published run-", 1)[1]
    assert "suggested fix python.module_not_found/fix" in decision, done.stderr
    assert "apply with: heal apply" in decision
