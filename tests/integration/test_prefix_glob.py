"""HEAL_STREAM_PREFIX may hold Redis glob characters (``* ? [ ] \\``): every SCAN MATCH built
from it is escaped, so one prefix never reads (or a cleanup deletes) another's keys as its own.
Real session Redis; ``heal status`` through its CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.guardrails.execution import ExecutionGuard, ExecutionPolicy
from pipeline.runtime import live_stages
from tests.integration._guardrails_support import Recorder

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.mark.parametrize("glob", ["{p}*", "{p}?", "{p}[0-9a-z]", "*"])
def test_a_prefix_with_glob_characters_reads_only_its_own_keys(
    tmp_path: Path, redis_url: str, database_url: str, client: redis.Redis, prefix: str,
    glob: str
) -> None:
    """QA s13 D5: `HEAL_STREAM_PREFIX='he*' heal status --json` listed the `heal` prefix's
    workflows as its own (with mangled ids), its lift commands naming the wrong keys."""
    # Given a degraded workflow and a live lifecycle worker under one prefix
    own = Settings(redis_url=redis_url, database_url=None, home=tmp_path / "a", prefix=prefix)
    ExecutionGuard(client, own, ExecutionPolicy(degrade_after=1),
                   audit=Recorder()).on_step_result("wf", "s", False, "x")
    client.set(own.key("alive", "lifecycle", "c1"), 1, ex=60)
    # and another prefix whose glob would match the first (the head of it, then `*` / `?` ...)
    other = glob.format(p=prefix[:-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(tmp_path / "b"), HEAL_REDIS_URL=redis_url,
               HEAL_DATABASE_URL=database_url, HEAL_STREAM_PREFIX=other, PYTHONPATH=str(ROOT))
    try:
        # When heal status runs under the other prefix
        done = subprocess.run([*HEAL, "status", "--json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        # Then it lists no workflow of the first prefix as its own
        assert done.returncode in (0, 1), done.stderr
        shown = json.loads(done.stdout)
        assert shown["execution"]["workflows"] == [], shown["execution"]
        # and sees none of its workers, while the first prefix still sees both
        theirs = Settings(redis_url=redis_url, database_url=None, home=tmp_path / "b",
                          prefix=other)
        assert live_stages(client, theirs) == set()
        assert live_stages(client, own) == {"lifecycle"}
        shown_own = subprocess.run(
            [*HEAL, "status", "--json"], cwd=ROOT, capture_output=True, text=True,
            timeout=120,
            env={**env, "HEAL_STREAM_PREFIX": prefix, "HEAL_HOME": str(tmp_path / "a")})
        assert [w["workflow"] for w in json.loads(shown_own.stdout)["execution"]["workflows"]] \
            == ["wf"], shown_own.stderr
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):  # (the test's own fresh prefix)
            client.delete(key)
