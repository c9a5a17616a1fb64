"""Hostile inputs are refused at pre-flight with clear reasons (real git, real Redis)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import CandidateEvent, ErrorEvent, Repo
from pipeline.policy import load_policy
from pipeline.trust.attest import attest
from pipeline.validate.preflight import Preflight
from pipeline.validate.request import FixRequest
from pipeline.validate.validator import Validator

GOOD_DIFF = ("diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
             "@@ -1 +1 @@\n-hello\n+hello world\n")


def _git(root: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "secret").mkdir(parents=True)
    (root / "README.md").write_text("hello\n")
    (root / "secret/keys.txt").write_text("k\n")
    (root / "heal.toml").write_text('[protect]\npaths = ["secret/**"]\n')
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("v\n")
    os.symlink(outside, root / "escape")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


def request(repo: Path, fix: dict[str, Any], params: dict[str, Any] | None = None,
            error_id: str = "e1") -> FixRequest:
    # signed as heal run would (the operator ran it here), so the repository is trusted
    err = attest(ErrorEvent(id=error_id, text="boom", repo=Repo(path=str(repo), commit="c1"),
                            command=("true",)), Settings.from_env())
    cand = CandidateEvent(id=f"{error_id}:lookup", error_id=error_id, error=err, fine="fp1",
                          params=params or {}, fix=fix)
    return FixRequest(cand, fix, repo, load_policy(repo / "heal.toml"))


def diff_fix(diff: str) -> dict[str, Any]:
    return {"id": "t.diff", "kind": "diff", "category": "SAFE", "rendered": {"diff": diff}}


def failed(results: list[dict[str, Any]]) -> dict[str, str]:
    return {r["name"]: r["reason"] for r in results if not r["ok"]}


def test_clean_diff_passes_every_check(repo: Path, settings: Settings,
                                       client: redis.Redis) -> None:
    results = Preflight(settings, client).run(request(repo, diff_fix(GOOD_DIFF)))
    assert failed(results) == {}
    assert {r["name"] for r in results} >= {"applies", "paths", "limits", "secrets", "breaker",
                                            "budget", "window", "dedupe"}


def test_patch_that_does_not_apply(repo: Path, settings: Settings, client: redis.Redis) -> None:
    bad = GOOD_DIFF.replace("-hello\n", "-goodbye\n")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(bad))))
    assert "patch does not apply" in reasons["applies"]


def test_dotdot_path(repo: Path, settings: Settings, client: redis.Redis) -> None:
    diff = GOOD_DIFF.replace("README.md", "../outside/victim.txt")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(diff))))
    assert "'..'" in reasons["paths"]


def test_symlink_escape(repo: Path, settings: Settings, client: redis.Redis) -> None:
    diff = GOOD_DIFF.replace("README.md", "escape/victim.txt")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(diff))))
    assert "outside the repository" in reasons["paths"]


def test_protected_path(repo: Path, settings: Settings, client: redis.Redis) -> None:
    diff = GOOD_DIFF.replace("README.md", "secret/keys.txt").replace("hello", "k")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(diff))))
    assert "protected by policy glob 'secret/**'" in reasons["paths"]


def test_git_dir_always_protected(repo: Path, settings: Settings, client: redis.Redis) -> None:
    fix = {"id": "t.cmd", "kind": "command", "category": "SAFE",
           "rendered": {"argv": ["chmod", "+x", ".git/config"]}}
    reasons = failed(Preflight(settings, client).run(request(repo, fix)))
    assert "protected" in reasons["paths"]


def test_secret_added(repo: Path, settings: Settings, client: redis.Redis) -> None:
    diff = GOOD_DIFF.replace("+hello world", "+aws = AKIAABCDEFGHIJKLMNOP")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(diff))))
    assert "aws_access_key" in reasons["secrets"]


def test_shell_string_with_error_text(repo: Path, settings: Settings,
                                      client: redis.Redis) -> None:
    fix = {"id": "t.cmd", "kind": "command", "category": "SAFE",
           "rendered": {"argv": ["sh", "-c", "rm -rf x; echo $(evil)"]}}
    req = request(repo, fix, params={"file": "x; echo $(evil)"})
    reasons = failed(Preflight(settings, client).run(req))
    assert "passes text from the error to a shell" in reasons["applies"]


def test_diff_over_the_limit(repo: Path, settings: Settings, client: redis.Redis) -> None:
    (repo / "heal.toml").write_text('[limits]\nmax_diff_lines = 1\n')
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(GOOD_DIFF))))
    assert "limits.max_diff_lines is 1" in reasons["limits"]


def test_identical_request_is_refused_but_redelivery_is_not(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    pf = Preflight(settings, client)
    assert failed(pf.run(request(repo, diff_fix(GOOD_DIFF), error_id="first"))) == {}
    assert failed(pf.run(request(repo, diff_fix(GOOD_DIFF), error_id="first"))) == {}
    reasons = failed(pf.run(request(repo, diff_fix(GOOD_DIFF), error_id="second")))
    assert "identical request" in reasons["dedupe"] and "first" in reasons["dedupe"]


def test_open_breaker_refuses(repo: Path, settings: Settings, client: redis.Redis) -> None:
    from pipeline.guardrails.breaker import CircuitBreaker

    CircuitBreaker(client, settings).force_open(reason="test")
    reasons = failed(Preflight(settings, client).run(request(repo, diff_fix(GOOD_DIFF))))
    assert "breaker" in reasons


def test_validator_turns_refusals_into_reject_verdicts(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    req = request(repo, diff_fix(GOOD_DIFF.replace("README.md", "../x")), error_id="v1")
    verdict = Validator(settings, client).validate(req.candidate)
    assert verdict.decision == "reject"
    assert verdict.reason.startswith("pre-flight refused:")
    assert "paths: path '../x' contains '..'" in verdict.reason
    assert verdict.id == "v1:validate"
