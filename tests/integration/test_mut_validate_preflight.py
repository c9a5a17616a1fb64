"""Pre-flight refusals and their reasons, check by check (real git, real Redis), for the
mutation score of pipeline/validate (issue 16): each check's verdict at its limits, the
reason the operator reads, and that a check that raises is a refusal, not a crash."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import GitError, StreamUnavailable
from pipeline.events import CandidateEvent, ErrorEvent, Repo, Workflow
from pipeline.policy import Policy, Window, load_policy
from pipeline.validate import preflight as pf_mod
from pipeline.validate.preflight import (
    CHECKS,
    Preflight,
    check_applies,
    check_budget,
    check_dedupe,
    check_limits,
    check_paths,
    check_secrets,
    check_window,
)
from pipeline.validate.request import FixRequest
from tests.integration._repos import committed_repo

DIFF = ("diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
        "@@ -1 +1 @@\n-hello\n+hello world\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return committed_repo(tmp_path / "repo", {"README.md": "hello\n", "heal.toml": ""})


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


def request(repo: Path, fix: dict[str, Any], policy: Policy | None = None,
            params: dict[str, Any] | None = None, error_id: str = "e1") -> FixRequest:
    err = ErrorEvent(id=error_id, text="boom", repo=Repo(path=str(repo), commit="c1"),
                     command=("make",), workflow=Workflow(id="wf-1", step="build"))
    cand = CandidateEvent(id=f"{error_id}:lookup", error_id=error_id, error=err, fine="fp1",
                          params=params or {}, fix=fix)
    return FixRequest(cand, fix, repo, policy or load_policy(repo / "heal.toml"))


def command(argv: Any, category: str = "SAFE") -> dict[str, Any]:
    return {"id": "c", "kind": "command", "category": category, "rendered": {"argv": argv}}


def diff(text: str | None, **extra: Any) -> dict[str, Any]:
    rendered: dict[str, Any] = {} if text is None else {"diff": text}
    return {"id": "d", "kind": "diff", "category": "SAFE", "rendered": {**rendered, **extra}}


# -- applies ---------------------------------------------------------------------------------

def test_applies(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    assert check_applies(request(repo, diff(DIFF)), pf) == (True, "git apply --check: clean")
    for empty in (None, "", "  \n"):
        assert check_applies(request(repo, diff(empty)), pf) == \
            (False, "diff fix has no rendered diff")
    ok, why = check_applies(request(repo, diff(DIFF.replace("-hello", "-bye"))), pf)
    assert not ok and why.startswith("patch does not apply: ")
    assert check_applies(request(repo, command(["ruff", "format", "."])), pf) == \
        (True, "1 argv well formed; parameters validated when rendered")
    for missing in ([], None):
        assert check_applies(request(repo, command(missing)), pf) == \
            (False, "command fix has no rendered argv")
    assert check_applies(request(repo, command(["ruff", 3])), pf) == \
        (False, "argv ['ruff', 3] must be a non-empty list of strings")
    assert check_applies(request(repo, command(["sh", "-c", "rm x.txt"]),
                                 params={"f": "x.txt"}), pf) == (
        False, "argv ['sh', '-c', 'rm x.txt'] passes text from the error to a shell; heal "
        "never does")
    assert check_applies(request(repo, {"id": "x", "kind": "magic"}), pf) == \
        (False, "fix kind 'magic' cannot be applied")


def test_applies_to_playbooks(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    steps = {"check": [{"argv": ["git", "status"]}], "act": [{"argv": ["true"]}]}
    book = {"id": "p", "kind": "playbook", "category": "MODERATE", "rendered": {"steps": steps}}
    assert check_applies(request(repo, book), pf) == \
        (True, "2 argv well formed; parameters validated when rendered")
    # a playbook with no argv steps at all is well formed (built-in actions only)
    actions = {**book, "rendered": {"steps": {"act": [{"action": "remove", "args": {}}]}}}
    assert check_applies(request(repo, actions), pf)[0] is True
    empty_step = {**book, "rendered": {"steps": {"act": [{"argv": []}]}}}
    assert check_applies(request(repo, empty_step), pf) == \
        (False, "argv [] must be a non-empty list of strings")


def test_unidiff_zero_is_passed_to_git(repo: Path, settings: Settings) -> None:
    zero = ("diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
            "@@ -1,0 +2 @@\n+added\n")
    pf = Preflight(settings, None)
    assert check_applies(request(repo, diff(zero, unidiff_zero=True)), pf)[0] is True
    assert check_applies(request(repo, diff(zero)), pf)[0] is False


# -- paths -----------------------------------------------------------------------------------

def test_paths(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    assert check_paths(request(repo, diff(DIFF)), pf) == \
        (True, "1 path(s) inside the repository, none protected")
    assert check_paths(request(repo, command(["chmod", "+x", "README.md", "x/y"])), pf) == \
        (True, "2 path(s) inside the repository, none protected")
    ok, why = check_paths(request(repo, command(["rm", "../x"])), pf)
    assert not ok and why == "path '../x' contains '..' (paths must stay inside the repository)"
    # parameters count: the rendered argv may not show a path the error supplied
    ok, why = check_paths(request(repo, command(["true"]), params={"f": "/etc/passwd"}), pf)
    assert not ok and "outside the repository" in why
    # only playbooks may touch a lock file in .git
    lock = {"id": "p", "kind": "playbook", "category": "MODERATE", "rendered": {"steps": {
        "act": [{"action": "remove", "args": {"path": ".git/index.lock"}}]}}}
    assert check_paths(request(repo, lock), pf)[0] is True
    ok, why = check_paths(request(repo, command(["rm", ".git/index.lock"])), pf)
    assert not ok and "protected by policy glob" in why
    config = {**lock, "rendered": {"steps": {"act": [{"action": "x",
                                                      "args": {"path": ".git/config"}}]}}}
    assert check_paths(request(repo, config), pf)[0] is False


# -- limits and secrets --------------------------------------------------------------------

def test_limits(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    assert check_limits(request(repo, command(["x"])), pf) == \
        (True, "checked on the realized change during verification")
    assert check_limits(request(repo, diff(DIFF)), pf) == \
        (True, "2 lines in 1 file(s), within limits")
    at_limit = Policy(max_diff_lines=2, max_files=1)
    assert check_limits(request(repo, diff(DIFF), at_limit), pf)[0] is True
    assert check_limits(request(repo, diff(DIFF), Policy(max_diff_lines=1)), pf) == \
        (False, "diff changes 2 lines; limits.max_diff_lines is 1")
    two = DIFF + DIFF.replace("README.md", "b.txt")
    assert check_limits(request(repo, diff(two), Policy(max_files=1)), pf) == \
        (False, "diff touches 2 files; limits.max_files is 1")


def test_secrets(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    assert check_secrets(request(repo, command(["x"])), pf) == \
        (True, "checked on the realized change during verification")
    assert check_secrets(request(repo, diff(DIFF)), pf) == (True, "no secrets added")
    leaky = DIFF.replace("+hello world", "+k = AKIAABCDEFGHIJKLMNOP\n+-----BEGIN PRIVATE KEY-----")
    assert check_secrets(request(repo, diff(leaky)), pf) == \
        (False, "diff adds what looks like a secret: aws_access_key, private_key")


# -- budget, window, dedupe -----------------------------------------------------------------

def test_budget(repo: Path, settings: Settings, client: redis.Redis) -> None:
    from pipeline.guardrails.budget import Budget

    assert check_budget(request(repo, diff(DIFF)), Preflight(settings, None)) == \
        (True, "no Redis client: budget not consulted")
    (repo / "heal.toml").write_text("[budget]\nfix_applications = 2\n")
    req = request(repo, diff(DIFF))
    pf = Preflight(settings, client)
    budget = Budget(client, settings, req.policy.limits.budget())
    budget.record("fix_applications", 1.5)
    assert check_budget(req, pf) == (True, "budget available")
    budget.record("fix_applications", 1)  # spent past the limit (recorded, not asked)
    assert check_budget(req, pf) == \
        (False, "daily budget for fix_applications used up (2.5 of 2)")


def test_budget_counts_llm_tokens_only_with_the_llm_judge(repo: Path, settings: Settings,
                                                          client: redis.Redis) -> None:
    from pipeline.guardrails.budget import Budget

    (repo / "heal.toml").write_text("[budget]\nllm_tokens = 10\n")
    req = request(repo, diff(DIFF))
    Budget(client, settings, req.policy.limits.budget()).record("llm_tokens", 11)
    pf = Preflight(settings, client)
    assert check_budget(req, pf)[0] is True
    llm = dataclasses.replace(req.policy, llm=dataclasses.replace(req.policy.llm, enabled=True))
    assert check_budget(request(repo, diff(DIFF), llm), pf) == \
        (False, "daily budget for llm_tokens used up (11 of 10)")


def test_window(repo: Path, settings: Settings) -> None:
    pf = Preflight(settings, None)
    assert check_window(request(repo, diff(DIFF)), pf) == (True, "no change windows set")
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    always = Policy(windows=(Window(days, dt.time(0, 0), dt.time(23, 59, 59, 999999)),))
    assert check_window(request(repo, diff(DIFF), always), pf) == (True, "change window open")
    never = Policy(windows=(Window((), dt.time(0, 0), dt.time(23, 59)),))
    assert check_window(request(repo, diff(DIFF), never), pf) == \
        (False, "outside every change window in heal.toml [[windows]]")


def test_dedupe(repo: Path, settings: Settings, client: redis.Redis) -> None:
    assert check_dedupe(request(repo, diff(DIFF)), Preflight(settings, None)) == \
        (True, "no Redis client: duplicate requests not detected")
    pf = Preflight(settings, client)
    off = Policy(dedupe_minutes=0)
    assert check_dedupe(request(repo, diff(DIFF), off), pf) == \
        (True, "dedupe off (limits.dedupe_minutes = 0)")
    assert check_dedupe(request(repo, diff(DIFF), off, error_id="e2"), pf)[0] is True
    first = request(repo, diff(DIFF), Policy(dedupe_minutes=1.5))
    assert check_dedupe(first, pf) == (True, "first request for this fingerprint and fix")
    key = pf.dedupe_key(first)
    assert key == settings.key("validate", "request", first.request_key)
    assert client.get(key) == b"e1" and 80 < int(client.ttl(key)) <= 90
    assert check_dedupe(first, pf) == (True, "redelivery of the same request")
    other = request(repo, diff(DIFF), Policy(dedupe_minutes=1.5), error_id="e2")
    assert check_dedupe(other, pf) == (
        False, "identical request (same fingerprint and fix) still in flight for error e1 "
        "within 1.5 min")


def test_dedupe_says_what_it_found_decided_or_a_replay_of_the_same_error(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    # Given a request that was decided (the validator released its in-flight mark)
    pf = Preflight(settings, client)
    first = request(repo, diff(DIFF), Policy(dedupe_minutes=1.5))
    assert check_dedupe(first, pf)[0] is True
    client.delete(pf.inflight_key(first))
    # When another error asks for the same fix, or a replay copy of the first one does
    other = request(repo, diff(DIFF), Policy(dedupe_minutes=1.5), error_id="e2")
    copy = request(repo, diff(DIFF), Policy(dedupe_minutes=1.5), error_id="e1~replay-T")
    # Then the refusal says the request was decided, not that it is in flight
    assert check_dedupe(other, pf) == (
        False, "identical request (same fingerprint and fix) already decided for error e1 "
        "within 1.5 min")
    assert check_dedupe(copy, pf) == (
        False, "already handled as e1 (this is a replay of e1), decided within 1.5 min "
        "(heal explain shows its outcome)")


def test_dedupe_ttl_never_below_a_second(repo: Path, settings: Settings,
                                         client: redis.Redis) -> None:
    pf = Preflight(settings, client)
    req = request(repo, diff(DIFF), Policy(dedupe_minutes=0.001))
    assert check_dedupe(req, pf)[0] is True
    assert int(client.ttl(pf.dedupe_key(req))) == 1


def test_dedupe_redis_down_is_stream_unavailable(repo: Path, settings: Settings,
                                                 dead_redis: redis.Redis) -> None:
    with pytest.raises(StreamUnavailable, match="dedupe check: Redis unreachable"):
        check_dedupe(request(repo, diff(DIFF)), Preflight(settings, dead_redis))


# -- the runner of the checks ----------------------------------------------------------------

def test_breaker_without_a_client_and_closed(repo: Path, settings: Settings,
                                             client: redis.Redis) -> None:
    assert pf_mod.check_breaker(request(repo, diff(DIFF)), Preflight(settings, None)) == \
        (True, "no Redis client: breaker not consulted")
    assert pf_mod.check_breaker(request(repo, diff(DIFF)), Preflight(settings, client)) == \
        (True, "breaker: closed")


def test_open_breaker_reason(repo: Path, settings: Settings, client: redis.Redis) -> None:
    from pipeline.guardrails.breaker import CircuitBreaker

    CircuitBreaker(client, settings).force_open(reason="operator says stop")
    ok, why = pf_mod.check_breaker(request(repo, diff(DIFF)), Preflight(settings, client))
    assert not ok and why.startswith("breaker") and "operator says stop" in why


def test_run_reports_every_check_in_order_with_its_duration(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    results = Preflight(settings, client).run(request(repo, diff(DIFF)))
    assert [r["name"] for r in results] == list(CHECKS)
    assert list(CHECKS) == ["applies", "paths", "declared", "limits", "secrets", "breaker",
                            "budget", "window", "dedupe"]
    for r in results:  # how long each took, in seconds to the millisecond
        assert r["ok"] is True and isinstance(r["duration_s"], float)
        assert 0 <= r["duration_s"] < 60 and r["duration_s"] == round(r["duration_s"], 3)
    assert any(r["duration_s"] > 0 for r in results)  # git apply --check takes a moment


def test_a_check_that_raises_a_heal_error_is_a_refusal(repo: Path, settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(req: FixRequest, pf: Preflight) -> tuple[bool, str]:
        raise GitError("git is broken here")

    monkeypatch.setitem(CHECKS, "applies", broken)
    results = {r["name"]: r for r in Preflight(settings, None).run(request(repo, diff(DIFF)))}
    assert results["applies"]["ok"] is False
    assert results["applies"]["reason"] == "git is broken here"
    assert results["limits"]["ok"] is True


def test_an_acl_refusal_of_the_dedupe_check_stops_the_checks_not_a_failed_check(
        repo: Path, settings: Settings, client: redis.Redis, redis_url: str) -> None:
    """A Redis ACL refusal of the dedupe check was caught with every HealError as that
    check's failure: the fix was rejected ("preflight failed") for a refusal that no fix
    causes, and the verdict recorded. It stops the checks (AccessRefused: the stage stops)."""
    from urllib.parse import urlsplit, urlunsplit

    from pipeline.errors import AccessRefused

    # Given a Redis user refused SET (which the dedupe marker needs)
    user = f"noset-pf-{settings.prefix[-8:]}"
    client.acl_setuser(user, enabled=True, passwords=["+pw-noset-pf"], keys=["*"],
                       channels=["*"], commands=["+@all", "-set"], reset=True)
    parts = urlsplit(redis_url)
    refused = redis.Redis.from_url(urlunsplit(parts._replace(
        netloc=f"{user}:pw-noset-pf@{parts.netloc.rsplit('@', 1)[-1]}")))
    try:
        # When the pre-flight checks run, the refusal is raised, saying what to grant
        with pytest.raises(AccessRefused, match=r"grant \+set"):
            Preflight(settings, refused).run(request(repo, diff(DIFF)))
    finally:
        refused.close()
        client.acl_deluser(user)
