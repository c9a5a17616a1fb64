"""Attack 9: a forged event names a registered repository with a real failure text. Its
command is not run, so nothing shows the failure exists there: passing checks must not be
called "original failure gone" nor apply a fix by themselves. And a ``[trust] repos`` glob
``/dir/*`` registers the folders in ``/dir``, not everything below it. Real embedded engines,
the stages through the real runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import TESTS_ARGV
from pipeline.runtime import drain_inline
from pipeline.trust.operator import path_glob_match
from tests.security._support import (
    heal_state,
    hostile_event,
    verdict_of,
    victim_repo,
    wait_outcome,
    write_operator,
    xadd_raw,
)

POLICY = ('mode = "auto-safe"\n[[verify.checks]]\nname = "tests"\n'
          f'argv = {list(TESTS_ARGV)!r}\ntimeout_s = 60\n').replace("'", '"')


@pytest.fixture
def env(heal_env: dict[str, str], redis_url: str) -> tuple[Settings, redis.Redis]:
    return Settings.from_env(), redis.Redis.from_url(redis_url)


def test_checks_alone_never_apply_a_fix_for_a_forged_event(
        tmp_path: Path, env: tuple[Settings, redis.Redis],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a registered repository in auto-safe whose checks the operator allows
    settings, client = env
    root = victim_repo(tmp_path, POLICY)
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{root.resolve()}"]\n'
        f'commands = [{list(TESTS_ARGV)!r}]\n'.replace("'", '"'))))
    before = heal_state(root)
    pwned = tmp_path / "PWNED"
    # When an untrusted producer sends a real failure text of it with a command of its own
    event = hostile_event(root, pwned, mode="auto")
    xadd_raw(client, settings, "errors", event)
    drain_inline(settings, client)
    outcome = wait_outcome(client, settings, event["id"], timeout_s=5)
    verdict = verdict_of(client, settings, event["id"])
    assert outcome is not None and verdict is not None
    # Then the checks ran, the command did not, and the fix is only suggested, saying why
    names = {(r["phase"], r["name"]) for r in verdict.verification}
    assert names == {("before", "tests"), ("after", "tests")}, verdict.verification
    assert not pwned.exists()
    assert verdict.decision == "suggest", verdict.reason
    assert "original failure gone" not in verdict.reason
    assert "no run of the failing command showed the failure" in verdict.reason
    assert "the failing command was not re-run" in verdict.reason
    assert outcome.status == "suggested"
    assert heal_state(root)[0] == before[0], "a fix was committed on the user's branch"


def test_a_trust_repos_star_does_not_reach_below_its_folder(
        tmp_path: Path, env: tuple[Settings, redis.Redis],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an operator registering "<tmp>/*" and a repository three levels below <tmp>
    settings, client = env
    root = victim_repo(tmp_path / "deep" / "a", 'mode = "auto-safe"\n')
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{tmp_path.resolve()}/*"]\n')))
    before = heal_state(root)
    # When an event names it
    event = hostile_event(root, tmp_path / "PWNED")
    xadd_raw(client, settings, "errors", event)
    drain_inline(settings, client)
    verdict = verdict_of(client, settings, event["id"])
    # Then it is not registered: diagnosed only, nothing changed
    assert verdict is not None and verdict.decision == "observe", verdict
    assert "not registered" in verdict.reason
    assert heal_state(root) == before
    # ("**" as a whole component is what reaches any depth)
    assert path_glob_match(str(root), f"{tmp_path}/**")
    assert path_glob_match(str(root), f"{tmp_path}/**/victim")
    assert path_glob_match(str(tmp_path / "x"), f"{tmp_path}/*")
    assert not path_glob_match(str(root), f"{tmp_path}/*")
    assert not path_glob_match(str(root), f"{tmp_path}/*victim")
