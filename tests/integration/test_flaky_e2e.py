"""Flaky failures end to end through `heal run` on the real embedded engines: a failure that
passes without any fix is recorded as flaky, never credited to a fix, lowers the fingerprint's
determinism score (explain, /api/fingerprints), and the next occurrence gets the retry
playbook instead of a code change."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import OutcomeEvent
from pipeline.fingerprint import fingerprint_text
from storage.db import Database
from storage.lifecycle import LifecycleStore
from storage.serve_queries import ServeQueries
from tests.integration._repos import git

UNFORMATTED = "x  =  1\n"



def outcomes(client: redis.Redis, settings: Settings) -> list[OutcomeEvent]:
    return [OutcomeEvent.decode(f[b"event"]) for _, f in
            client.xrange(settings.stream("outcomes"))]


def test_a_failure_that_passes_without_a_fix_is_flaky_never_credited(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], redis_url: str, database_url: str,
) -> None:
    token = "".join(random.choices(string.ascii_lowercase, k=10))  # a fingerprint of its own
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(UNFORMATTED)  # `ruff format` (the SAFE fix) changes it
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    marker = tmp_path / "passed-once"
    # Given a check that fails once, then passes on any re-run (a flake, not a formatting bug)
    # (only the line naming the token: the fine fingerprint must be this test's own, since
    # the database is shared and a flaky mark changes what every later lookup offers)
    script = (f"test -f {marker} && exit 0; touch {marker}; "
              f"echo 'Would reformat: src/app_{token}.py'; exit 1")
    argv = ["run", "--timeout", "120", "--mode", "auto-safe", "--step", "fmt", "--",
            "sh", "-c", script]

    # When heal runs it
    status = main(argv)
    err = capsys.readouterr().err
    # Then nothing is applied: the failure did not reproduce, the outcome is "flaky"
    assert "flaky" in err, err
    assert status == 0, err  # the plain re-run passed
    settings = Settings.from_env()
    client = redis.Redis.from_url(redis_url)
    (outcome,) = [o for o in outcomes(client, settings) if o.error.workflow.id == f"wf-{token}"]
    assert outcome.status == "flaky", outcome.detail
    assert git(repo, "log", "--format=%s") == "app"  # no commit reached the branch
    fine = outcome.fine
    # (keyed as the stage keyed it: the line says nothing failed, so its exit status and
    # program join it)
    assert fine == fingerprint_text(f"Would reformat: src/app_{token}.py\n", exit_code=1,
                                    command=["sh", "-c", script]).fine

    db = Database(database_url)
    try:
        store = LifecycleStore(db)
        # And no fix is credited with a success (graduation never sees it)
        assert db.fetch("SELECT * FROM fix_stats WHERE fingerprint = $1", fine) == []
        assert store.determinism(fine) < 0.5
        assert fine in store.flaky_fingerprints()
        # And the determinism score shows in /api/fingerprints' data
        assert ServeQueries(db).determinism([fine])[fine] < 0.5
        assert all("determinism" in r for r in ServeQueries(db).fingerprints(5))
    finally:
        db.close()

    # When the same failure comes back (it now reproduces on every run)
    marker.unlink()
    script2 = f"echo 'Would reformat: src/app_{token}.py'; exit 1"
    status = main(["run", "--timeout", "120", "--mode", "auto-safe", "--step", "fmt", "--",
                   "sh", "-c", script2])
    err = capsys.readouterr().err
    # Then the lookup offers the retry playbook, never the code change
    assert status == 1, err
    second = [o for o in outcomes(client, settings)
              if o.error.workflow.id == f"wf-{token}" and o.id != outcome.id]
    assert second and second[-1].fix_id == "test.flaky/fix", second[-1]
    assert second[-1].status == "suggested"  # a MODERATE playbook: never a code change
    assert git(repo, "log", "--format=%s") == "app"

    # And explain shows the determinism score
    main(["explain", fine, "--json"])
    story = json.loads(capsys.readouterr().out)
    assert story["determinism"]["flaky"] is True
    assert story["determinism"]["score"] < 0.5
    main(["explain", fine])
    assert "determinism: 0.00 (flaky" in capsys.readouterr().out
    client.close()
