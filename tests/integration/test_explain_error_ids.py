"""`heal explain` reached from what an operator has in hand (QA report qa_expl, D4 D5 D9 D12):
an error id (the one `heal run` prints), a dead-lettered event, a cut-down echo of a huge
name, the lookup's own reason for a miss, the current state of a fix, one order throughout.
Real embedded engines; the CLI runs this checkout's code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.fingerprint import ALGORITHM_VERSION
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.runtime.drain import drain_inline
from storage.db import Database
from storage.lifecycle import LifecycleStore

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _heal(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env, check=False)


def test_a_dead_lettered_event_is_explained_by_its_error_id_and_listed(
        heal_env: dict[str, str]) -> None:
    # Given an event with no text and a malformed one carrying a terminal escape, both
    # dead-lettered by the fingerprint stage
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    error_id = f"dead-{_word()}"
    client.xadd(settings.stream("errors"), {"event": json.dumps({"v": 1, "id": error_id})})
    client.xadd(settings.stream("errors"), {"event": b"{not json \x1b]0;PWNED\x07"})
    drain_inline(settings, client, stages=["fingerprint"])
    assert client.xlen(settings.stream("dead")) == 2

    # When the operator explains its error id, Then heal says it was dead-lettered, by which
    # stage, when and why, and what to do (not "never seen by the pipeline")
    done = _heal(["explain", error_id])
    assert done.returncode == 0, done.stderr
    assert "never seen" not in done.stdout + done.stderr
    assert f"error {error_id} (dead-lettered" in done.stdout
    assert "why: dead-lettered by the fingerprint stage at " in done.stdout
    assert "what to do: " in done.stdout and "reason: " in done.stdout
    story = json.loads(_heal(["explain", error_id, "--json"]).stdout)
    assert story["level"] == "dead-lettered" and story["fingerprint"] is None
    (letter,) = story["dead_letters"]
    assert letter["error_id"] == error_id and letter["stage"] == "fingerprint"
    assert letter["reason"] and letter["ts"]

    # and `heal explain --dead` lists both with their reasons, newest first, the raw bytes
    # shown visibly (no escape sequence reaches the terminal)
    listed = _heal(["explain", "--dead"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("    reason: ") == 2 and error_id in listed.stdout
    assert "\x1b" not in listed.stdout and "PWNED" in listed.stdout
    letters = json.loads(_heal(["explain", "--dead", "--json"]).stdout)["dead_letters"]
    assert [d["error_id"] for d in letters] == ["", error_id]
    assert "\x1b]0;PWNED" in letters[0]["event"]  # (JSON keeps the bytes, escaped)
    assert _heal(["explain", "--dead", "--limit", "1", "--json"]).stdout.count('"reason"') == 1
    bad = _heal(["explain", "--dead", "--limit", "0"])
    assert bad.returncode == 2 and "--limit must be at least 1" in bad.stderr


def test_heal_run_names_the_fingerprint_and_explain_takes_its_error_id(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    # Given a failure heal knows no pattern for, run under `heal run`
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    word = _word()
    done = _heal(["run", "--timeout", "120", "--", sys.executable, "-c",
                  f"import sys; sys.stderr.write('{word} frobnicator exploded'); sys.exit(3)"],
                 cwd=repo)
    assert done.returncode == 3, done.stderr
    # Then its decision line names the fingerprint, as `heal explain` takes it
    named = re.search(r"\[fingerprint ([0-9a-f]{12}): `heal explain \1`\]", done.stderr)
    assert named, done.stderr
    error_id = re.search(r"published (\S+)", done.stderr)
    assert error_id, done.stderr

    # When the operator explains the error id `heal run` printed, Then it is the story of
    # that fingerprint
    shown = _heal(["explain", error_id.group(1), "--json"])
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert story["fingerprint"].split(":", 1)[1].startswith(named.group(1))
    assert story["error_id"] == error_id.group(1)
    # and a miss carries the lookup's own reason, read back from the candidates stream
    assert story["lookup"]["paths"] == [] and story["lookup"]["miss_reason"]
    text = _heal(["explain", named.group(1)]).stdout
    assert f"no pattern matched: {story['lookup']['miss_reason'][:40]}" in text


def test_a_huge_name_is_cut_in_the_message(heal_env: dict[str, str]) -> None:
    done = _heal(["explain", "a" * 100_000])
    assert done.returncode == 1 and "no record of fingerprint or error id" in done.stderr
    assert "(cut: 100000 characters)" in done.stderr and len(done.stderr) < 1000
    assert "Traceback" not in done.stderr


@pytest.fixture
def service(db: Database, redis_url: str, tmp_path: Path, prefix: str) -> LifecycleService:
    # (as the lifecycle and apply stages audit: into the file and PostgreSQL's table)
    settings = Settings(redis_url, None, tmp_path, prefix)
    client = redis.Redis.from_url(redis_url)
    audit = AuditLog(settings, db=db, redis_client=client)
    breaker = CircuitBreaker(client, settings, audit=audit)
    return LifecycleService(LifecycleStore(db), breaker, audit,
                            LifecyclePolicy(automate_threshold=0.8, min_attempts=5))


def _outcome(fp: str, fix_id: str, status: str, n: int, detail: str = "") -> OutcomeEvent:
    error = ErrorEvent(id=f"{fp}-{n}", text="boom", workflow=Workflow(id="nightly", step="lint"),
                       repo=Repo(commit="c1"))
    return OutcomeEvent(id=f"{fp}-{n}:apply", error_id=error.id, error=error, fine=fp,
                        fix_id=fix_id, status=status, detail=detail)


def test_explain_tells_the_present_once_and_newest_first(
        service: LifecycleService, db: Database, heal_env: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a fix quarantined by a rollback, a later escalation saying it is QUARANTINED,
    # and then `heal unquarantine`
    digits = uuid.uuid4().hex[:16]
    fp, fix = f"{ALGORITHM_VERSION}:{digits}", f"fix-{uuid.uuid4().hex[:8]}"
    pattern = f"p-{_word()}"
    db.execute("INSERT INTO patterns (id) VALUES ($1)", pattern)
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category) VALUES ($1, $2, 'command',"
               " 'SAFE')", fix, pattern)
    db.execute("INSERT INTO occurrences (error_id, pattern_id, fine, tier, score)"
               " VALUES ($1, $2, $3, 1, 1.0)", f"e-{digits}", pattern, fp)
    service.handle(_outcome(fp, fix, "applied", 1))
    service.handle(_outcome(fp, fix, "rolled_back", 2))
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    withheld = (f"matched {pattern}, but its fix {fix} is QUARANTINED, so it is not offered; "
                f"`heal unquarantine {fp}` lets it be validated again")
    client.xadd(settings.stream("outcomes"),
                {"event": _outcome(fp, "", "escalated", 3, withheld).encode()})
    assert main(["unquarantine", digits]) == 0
    capsys.readouterr()

    story = json.loads(_heal(["explain", digits, "--json"]).stdout)
    # Then the why line tells the fix's state now (as the candidate fixes below it do)
    assert f"fix {fix} is DRAFT now" in story["why"], story["why"]
    assert "lets it be validated again" not in story["why"]
    # and transitions are newest first, as attempts and outcomes are
    assert [t["dst"] for t in story["transitions"]] == ["DRAFT", "QUARANTINED"]
    text = _heal(["explain", digits]).stdout
    assert "lifecycle (newest first):" in text and "outcomes (newest first):" in text

    # Given the fingerprint ignored, Then its why is printed once
    assert main(["ignore", digits]) == 0
    text = _heal(["explain", digits]).stdout
    assert text.count("why:") == 1 and text.count("ignored by a person") == 1, text


def test_explain_shows_the_breaker_trip_a_rollback_of_the_fingerprint_made(
        service: LifecycleService, db: Database, heal_env: dict[str, str]) -> None:
    # Given two rollbacks of one fingerprint in one step: the second opens the breaker
    fp = f"{ALGORITHM_VERSION}:{uuid.uuid4().hex[:16]}"
    service.handle(_outcome(fp, f"fix-{_word()}", "rolled_back", 1))
    service.handle(_outcome(fp, f"fix-{_word()}", "rolled_back", 2))
    # When the operator explains it, Then the trip is part of its story
    story = json.loads(_heal(["explain", fp, "--json"]).stdout)
    opened = [b for b in story["breaker"] if b["to"] == "OPEN"]
    assert opened and {b["error_id"] for b in opened} == {f"{fp}-2"}, story["breaker"]
    assert {b["scope"] for b in opened} >= {"step:nightly/lint"}
    text = _heal(["explain", fp]).stdout
    assert ("breaker at step:nightly/lint: CLOSED -> OPEN" in text
            and f"made by the rollback of error {fp}-2" in text), text


def test_attempts_and_outcomes_of_one_fingerprint_name_their_repository(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    # Given one error (a missing module: a suggested fix, so an attempt) in two repositories
    module = f"heal_missing_{_word()}"
    repos = []
    for name in ("one", "two"):
        repo = tmp_path / name
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        done = _heal(["run", "--timeout", "120", "--", sys.executable, "-c", f"import {module}"],
                     cwd=repo)
        assert done.returncode == 1, done.stderr
        repos.append(str(repo.resolve()))
    fp = re.search(r"\[fingerprint (\w+)", done.stderr)
    assert fp, done.stderr
    # When the operator explains it, Then each attempt and outcome names its repository
    # (other tests of the session met the same missing-module fingerprint in their own
    # repositories: every record names one, and these two are this test's)
    story = json.loads(_heal(["explain", fp.group(1), "--json"]).stdout)
    for records in (story["attempts"], story["outcomes"]):
        assert all(r["repo"] for r in records), records
        mine = str(tmp_path.resolve())
        ours = sorted(r["repo"] for r in records if r["repo"].startswith(mine))
        assert ours == sorted(repos), records
    text = _heal(["explain", fp.group(1)]).stdout
    assert all(text.count(f"repo {r}") == 2 for r in repos), text
