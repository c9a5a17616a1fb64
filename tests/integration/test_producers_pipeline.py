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
    expected = {"applied": "applied and verified", "suggested": "suggested",
                "escalated": "escalated to a human", "observed": "observed only",
                "rolled_back": "was rolled back"}.get(outcomes[0].status, outcomes[0].status)
    decision = done.stderr.split("published run-", 1)[1]
    assert expected in decision, done.stderr
