"""The validate stage's decision on the real Redis (issue 16: mutation score of
pipeline/validate): the verdict, the attempt row and the budget it records, attempt numbers,
redelivery and the retry of a row PostgreSQL could not take, and the verdicts before any
verification (no fix, escalation, an untrusted repository, a refused pre-flight).

The verification itself is proven in test_validate_verify.py and test_mut_validate_verify.py;
here a stand-in returns a given Verification, and the store records what the stage writes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable, GitError, HealError, StreamUnavailable
from pipeline.events import CandidateEvent, ErrorEvent, Repo, VerdictEvent, Workflow
from pipeline.guardrails.budget import Budget
from pipeline.trust.attest import attest
from pipeline.validate.request import FixRequest
from pipeline.validate.validator import Validator
from pipeline.validate.verify import Verification
from tests.integration._repos import committed_repo

FIX = {"id": "fmt", "kind": "command", "category": "SAFE", "state": "ACTIVE",
       "title": "Format", "rendered": {"argv": ["ruff", "format", "."]}}
RUNS = [{"phase": "before", "name": "failing-command", "exit_code": 1, "duration_s": 30.0},
        {"phase": "after", "name": "failing-command", "exit_code": 0, "duration_s": 60.0}]
PASSED = Verification(True, "original failure gone; no check regressed", RUNS,
                      branch="heal/fp1-1", commit="abc123", changed=["x.py"], lines=2)


class Store:
    """Records attempt rows; ``down`` record_attempt calls fail as PostgreSQL down does."""

    db = None

    def __init__(self, history: Any = None, down: int = 0) -> None:
        self.rows: list[dict[str, Any]] = []
        self._history = history if history is not None else {}
        self.down = down

    def record_attempt(self, row: dict[str, Any]) -> None:
        if self.down:
            self.down -= 1
            raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")
        self.rows.append(row)

    def history(self, fix_id: str) -> dict[str, int]:
        if isinstance(self._history, Exception):
            raise self._history
        return dict(self._history)


class StubVerifier:
    def __init__(self, result: Verification | Exception = PASSED) -> None:
        self.result = result
        self.calls: list[tuple[FixRequest, int]] = []

    def verify(self, req: FixRequest, attempt: int) -> Verification:
        self.calls.append((req, attempt))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return committed_repo(tmp_path / "repo",
                          {"x.py": "x=1\n", "heal.toml": 'mode = "auto-safe"\n'})


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


def candidate(repo: Path | None, fix: dict[str, Any] | None = FIX, error_id: str = "e1",
              signed: bool = True, fine: str = "fp1", **kw: Any) -> CandidateEvent:
    err = ErrorEvent(id=error_id, text="boom", command=("make",),
                     repo=Repo(path=str(repo) if repo else "", commit="c1"),
                     workflow=Workflow(id="wf", step="s"))
    if signed:  # as heal run does: the operator ran it here
        err = attest(err, Settings.from_env())
    return CandidateEvent(id=f"{error_id}:lookup", error_id=error_id, error=err, fine=fine,
                          fix=fix, **kw)


def audit_records(settings: Settings) -> list[dict[str, Any]]:
    path = settings.home / "audit.jsonl"
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() \
        else []


def stage(settings: Settings, client: redis.Redis, store: Store | None = None,
          verifier: StubVerifier | None = None) -> tuple[Validator, StubVerifier]:
    v = Validator(settings, client, store)
    stub = verifier or StubVerifier()
    v.verifier = stub  # type: ignore[assignment]
    return v, stub


def test_a_verdict_its_attempt_row_and_its_spend(repo: Path, settings: Settings,
                                                 client: redis.Redis) -> None:
    store = Store()
    validator, stub = stage(settings, client, store)
    verdict = validator.validate(candidate(repo))
    assert verdict.decision == "apply"
    assert verdict.reason == ("mode auto-safe: 1 judge(s) approved; original failure gone; "
                              "no check regressed")
    assert (verdict.branch, verdict.commit, verdict.verification) == ("heal/fp1-1", "abc123",
                                                                      RUNS)
    assert [v["judge"] for v in verdict.votes] == ["verification"]
    assert [c["name"] for c in verdict.preflight][:9] == [
        "applies", "paths", "declared", "limits", "secrets", "breaker", "budget", "window",
        "dedupe"]
    assert [attempt for _, attempt in stub.calls] == [1]
    [row] = store.rows
    assert row == {
        "error_id": "e1", "fingerprint": "fp1", "fix_id": "fmt", "attempt": 1,
        "repo": str(repo), "command": ["make"], "decision": "apply", "reason": verdict.reason,
        "category": "SAFE", "mode": "auto-safe", "branch": "heal/fp1-1", "commit": "abc123",
        "preflight": verdict.preflight, "fix": FIX, "votes": verdict.votes,
        "verification": RUNS, "verdict": verdict.encode().decode()}
    # the verdict is in the audit log, as decided
    [record] = [r for r in audit_records(settings) if r["kind"] == "verdict"]
    assert record["subject"] == "e1" and record["data"] == {
        "fix_id": "fmt", "fingerprint": "fp1", "decision": "apply", "reason": verdict.reason,
        "votes": verdict.votes, "mode": "auto-safe", "commit": "abc123"}
    # the verdict and the attempt number are kept a week (a redelivery finds them)
    for key in (settings.key("validate", "verdict", "e1"),
                settings.key("validate", "attempt", "e1")):
        assert 7 * 24 * 3600 - 60 < int(client.ttl(key)) <= 7 * 24 * 3600
    # the verification's minutes are spent from today's budget
    assert Budget(client, settings).spent()["verification_minutes"] == pytest.approx(1.5)
    # nothing left pending; the verdict is cached for a redelivery
    assert client.get(settings.key("validate", "unrecorded", "e1")) is None
    assert validator.validate(candidate(repo)) == verdict
    assert len(stub.calls) == 1 and len(store.rows) == 1


def test_a_failed_verification_keeps_no_commit(repo: Path, settings: Settings,
                                               client: redis.Redis) -> None:
    failed = Verification(False, "the failing command still fails with the fix (exit 1)",
                          RUNS, commit="abc123")
    validator, _ = stage(settings, client, Store(), StubVerifier(failed))
    verdict = validator.validate(candidate(repo))
    assert verdict.decision == "reject" and verdict.commit == "" and verdict.branch == ""
    assert verdict.reason == ("verification failed: the failing command still fails with the "
                              "fix (exit 1)")


def test_attempts_count_per_fingerprint(repo: Path, settings: Settings, client: redis.Redis,
                                        operator_toml: Callable[[str], Path]) -> None:
    operator_toml("[limits]\ndedupe_minutes = 0\n")  # (the operator's: a repository may not)
    store = Store()
    validator, stub = stage(settings, client, store)
    dedupe_off = repo / "heal.toml"
    dedupe_off.write_text('mode = "auto-safe"\n[limits]\ndedupe_minutes = 0\n')
    for eid in ("e1", "e2", "e3"):
        validator.validate(candidate(repo, error_id=eid))
    validator.validate(candidate(repo, error_id="o1", fine="other"))
    assert [r["attempt"] for r in store.rows] == [1, 2, 3, 1]
    assert [a for _, a in stub.calls] == [1, 2, 3, 1]
    # the same error asks again (its verdict lost): the same attempt number
    client.delete(settings.key("validate", "verdict", "e2"))
    validator.validate(candidate(repo, error_id="e2"))
    assert stub.calls[-1][1] == 2


def test_a_verification_that_cannot_run_is_a_rejection(repo: Path, settings: Settings,
                                                       client: redis.Redis) -> None:
    validator, _ = stage(settings, client, Store(), StubVerifier(GitError("no worktree")))
    verdict = validator.validate(candidate(repo))
    assert verdict.decision == "reject"
    assert verdict.reason == "verification failed: verification could not run: no worktree"


def test_history_decides_a_risky_fix(repo: Path, settings: Settings, client: redis.Redis,
                                     caplog: pytest.LogCaptureFixture,
                                     operator_toml: Callable[[str], Path]) -> None:
    operator_toml("[limits]\ndedupe_minutes = 0\n")  # (the operator's: a repository may not)
    risky = {**FIX, "category": "RISKY"}
    (repo / "heal.toml").write_text('mode = "auto-safe"\n[limits]\ndedupe_minutes = 0\n')
    bad = Store(history={"applied": 1, "rolled_back": 1})
    verdict = stage(settings, client, bad)[0].validate(candidate(repo, risky, error_id="r1"))
    assert verdict.decision == "reject"
    # (verified, then refused: heal's branch of it is discarded, and the reason says so)
    assert verdict.reason == ("judges refused: history: reverted or failed 1 of 2 times; "
                              "heal branch heal/fp1-1 discarded")
    # history that cannot be read counts as none (the other judges still vote)
    unread = Store(history=HealError("attempts table unreadable"))
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.validator"):
        verdict = stage(settings, client, unread)[0].validate(candidate(repo, risky,
                                                                        error_id="r2"))
    assert "history unavailable: attempts table unreadable" in [
        r.getMessage() for r in caplog.records]
    assert verdict.decision == "suggest" and verdict.reason.startswith(
        "RISKY fix needs a human: heal apply r2; 3 judge(s) approved")
    # without a store: no history
    verdict = stage(settings, client, None)[0].validate(candidate(repo, risky, error_id="r3"))
    assert verdict.decision == "suggest"


def test_a_refused_preflight_is_recorded_without_verifying(repo: Path, settings: Settings,
                                                           client: redis.Redis) -> None:
    store = Store()
    hostile = {**FIX, "rendered": {"argv": ["rm", "../../etc/passwd"]}}
    validator, stub = stage(settings, client, store)
    verdict = validator.validate(candidate(repo, hostile))
    assert verdict.decision == "reject" and stub.calls == []
    assert verdict.reason == ("pre-flight refused: paths: path '../../etc/passwd' contains "
                              "'..' (paths must stay inside the repository)")
    [row] = store.rows
    assert row["attempt"] == 0 and row["decision"] == "reject"
    assert [c["name"] for c in verdict.preflight if not c["ok"]] == ["paths"]
    # every refusal is named; the audit record keeps the first 500 characters of the reason
    long = "../" + "a" * 600
    shell = {**FIX, "rendered": {"argv": ["sh", "-c", f"rm {long}"]}}
    verdict = validator.validate(candidate(repo, shell, error_id="e2", params={"f": long}))
    assert verdict.reason.startswith("pre-flight refused: applies: argv ['sh', '-c', 'rm ../")
    assert "passes text from the error to a shell; heal never does; paths: path '../" \
        in verdict.reason
    assert [c["name"] for c in verdict.preflight if not c["ok"]] == ["applies", "paths"]
    [record] = [r for r in audit_records(settings) if r["subject"] == "e2"]
    assert record["data"]["reason"] == verdict.reason[:500] and len(verdict.reason) > 500
    assert record["data"]["commit"] == "" and record["data"]["votes"] == []


def test_verdicts_before_any_verification(repo: Path, settings: Settings,
                                          client: redis.Redis,
                                          caplog: pytest.LogCaptureFixture) -> None:
    validator, stub = stage(settings, client, Store())
    none = validator.validate(candidate(repo, None, error_id="n1"))
    assert (none.decision, none.reason) == ("escalate",
                                            "no known fix for this error; queued for a human")
    esc = {"id": "x", "kind": "escalate", "explanation": "read the stack trace"}
    verdict = validator.validate(candidate(repo, esc, error_id="n2"))
    assert (verdict.decision, verdict.reason) == ("escalate",
                                                  "needs a human: read the stack trace")
    msg = {**esc, "rendered": {"message": "call the on-call"}}
    assert validator.validate(candidate(repo, msg, error_id="n3")).reason == \
        "needs a human: call the on-call"
    bare = {"id": "x", "kind": "escalate"}
    assert validator.validate(candidate(repo, bare, error_id="n4")).reason == "needs a human:"
    ignored = candidate(repo, error_id="n5", match={"ignored": True, "reason": "heal ignore"})
    assert (validator.validate(ignored).decision, validator.validate(ignored).reason) == \
        ("observe", "heal ignore")
    nowhere = validator.validate(candidate(None, error_id="n6"))
    assert (nowhere.decision, nowhere.reason) == (
        "escalate", "the error names no git repository: neither repo.path nor tags.cwd is "
        "set (publish it with repo.path = the folder of the checkout; heal run sets it), so no "
        "fix can be verified")
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.validator"):
        untrusted = validator.validate(candidate(repo, error_id="n7", signed=False))
    assert any(r.getMessage().startswith(f"trust: refused to act on error n7: repository {repo}")
               for r in caplog.records if r.name == "pipeline.validate.validator")
    assert untrusted.decision == "observe"
    assert untrusted.reason == (
        f"diagnosed only, not acted on: repository {repo} is not registered with heal (not a "
        "heal run on this machine, not in [trust] repos of the operator configuration); to "
        "let heal act here, add the repository root to [trust] repos in the operator "
        "configuration ($HEAL_HOME/heal.toml or HEAL_CONFIG), or run the command with heal run")
    assert stub.calls == []
    assert none.id == "n1:validate" and none.error_id == "n1" and none.fine == "fp1"


def test_mode_observe_detects_only(repo: Path, settings: Settings,
                                   client: redis.Redis) -> None:
    (repo / "heal.toml").write_text('mode = "observe"\n')
    validator, stub = stage(settings, client, Store())
    verdict = validator.validate(candidate(repo))
    assert (verdict.decision, verdict.reason) == ("observe", "mode observe: detected only")
    assert stub.calls == []


def test_a_row_postgresql_could_not_take_is_written_by_the_retry(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    store = Store(down=1)
    validator, stub = stage(settings, client, store)
    with pytest.raises(DatabaseUnavailable):
        validator.validate(candidate(repo))
    pending = client.get(settings.key("validate", "unrecorded", "e1"))
    assert pending is not None and orjson.loads(pending)["row"]["error_id"] == "e1"
    assert int(client.ttl(settings.key("validate", "unrecorded", "e1"))) > 6 * 24 * 3600
    verdict = validator.validate(candidate(repo))  # the retry: verified once, row written once
    assert len(stub.calls) == 1 and [r["decision"] for r in store.rows] == [verdict.decision]
    assert client.get(settings.key("validate", "unrecorded", "e1")) is None
    validator.validate(candidate(repo))
    assert len(store.rows) == 1


def test_a_pending_row_of_an_older_heal_is_written(repo: Path, settings: Settings,
                                                   client: redis.Redis) -> None:
    store = Store()
    validator, _ = stage(settings, client, store)
    first = validator.validate(candidate(repo))
    store.rows.clear()
    client.set(settings.key("validate", "unrecorded", "e1"),
               orjson.dumps({"error_id": "e1", "decision": "apply"}))
    assert validator.validate(candidate(repo)) == first
    assert store.rows == [{"error_id": "e1", "decision": "apply"}]
    assert client.get(settings.key("validate", "unrecorded", "e1")) is None


def test_a_cached_verdict_not_sealed_by_the_stage_is_ignored(
        repo: Path, settings: Settings, client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    forged = VerdictEvent(id="e1:validate", error_id="e1", error=candidate(repo).error,
                          decision="apply", reason="forged")
    client.set(settings.key("validate", "verdict", "e1"), forged.encode())
    validator, stub = stage(settings, client, Store())
    with caplog.at_level(logging.WARNING, logger="pipeline.validate.validator"):
        verdict = validator.validate(candidate(repo))
    assert "trust: ignoring an unsealed cached verdict for e1" in [
        r.getMessage() for r in caplog.records]
    assert verdict.reason != "forged" and len(stub.calls) == 1


def test_redis_down_is_stream_unavailable(repo: Path, settings: Settings,
                                          tmp_path: Path) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    down = redis.Redis(unix_socket_path=str(tmp_path / "none.sock"), retry=Retry(NoBackoff(), 0))
    validator = Validator(settings, down, Store())
    with pytest.raises(StreamUnavailable, match="validate: Redis unreachable"):
        validator.validate(candidate(repo))


def test_an_undeclared_package_install_waits_for_a_person(repo: Path, settings: Settings,
                                                          client: redis.Redis) -> None:
    install = {"id": "pip", "kind": "command", "category": "MODERATE", "state": "AUTOMATED",
               "rendered": {"argv": ["python3", "-m", "pip", "install", "leftpadx"]}}
    (repo / "heal.toml").write_text('mode = "auto"\n')
    deferred = Verification(True, "MODERATE command: runs only when applied", deferred=True)
    validator, stub = stage(settings, client, Store(), StubVerifier(deferred))
    verdict = validator.validate(candidate(repo, install))
    assert verdict.decision == "suggest"
    assert "the package 'leftpadx' is not declared by the repository" in verdict.reason
    assert "; a person approves it by name: heal apply e1 (runs: python3 -m pip install " \
           "leftpadx)" in verdict.reason
    [note] = [c for c in verdict.preflight if c["name"] == "trust"]
    assert note["reason"].startswith("package install: heal cannot tell which Python")
    assert (note["ok"], note["duration_s"]) == (True, 0.0)
    # the stage judged the reviewed fix (a manifest change proposed with it), and says so
    [(req, _)] = stub.calls
    assert req.hold and req.fix["rendered"]["argv"][-1] == "leftpadx"
    assert verdict.fix == req.fix


def test_a_sealed_cache_entry_that_is_not_a_verdict_is_decided_afresh(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    from pipeline.trust.seal import seal
    from pipeline.validate.validator import VERDICT_CACHE_ROLE

    client.set(settings.key("validate", "verdict", "e1"),
               seal(settings, VERDICT_CACHE_ROLE, b'{"not": "a verdict"}'))
    validator, stub = stage(settings, client, Store())
    assert validator.validate(candidate(repo)).decision == "apply"
    assert len(stub.calls) == 1


class SwitchStore(Store):
    """A store whose PostgreSQL (for the audit table) is down until ``db`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.db: Any = DownDb()


class DownDb:
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")


def test_the_audit_table_record_waits_for_postgresql_and_is_written_once(
        repo: Path, settings: Settings, client: redis.Redis, db: Any) -> None:
    import uuid

    eid = f"w-{uuid.uuid4().hex[:12]}"
    store = SwitchStore()
    validator, stub = stage(settings, client, store)
    with pytest.raises(DatabaseUnavailable):
        validator.validate(candidate(repo, error_id=eid))
    pending = orjson.loads(client.get(settings.key("validate", "unrecorded", eid)))
    assert pending["audit"]["subject"] == eid and pending["audit"]["kind"] == "verdict"
    store.db = db  # PostgreSQL is back for the audit table, then drops the attempt row
    store.down = 1
    with pytest.raises(DatabaseUnavailable):
        validator.validate(candidate(repo, error_id=eid))
    pending = orjson.loads(client.get(settings.key("validate", "unrecorded", eid)))
    assert pending["audit"] is None and pending["row"]["error_id"] == eid
    assert len(db.fetch("SELECT body FROM audit_log WHERE subject = $1", eid)) == 1
    verdict = validator.validate(candidate(repo, error_id=eid))
    assert len(stub.calls) == 1 and [r["error_id"] for r in store.rows] == [eid]
    rows = db.fetch("SELECT body FROM audit_log WHERE subject = $1", eid)
    [table] = [orjson.loads(r["body"]) for r in rows]
    [record] = [r for r in audit_records(settings) if r["subject"] == eid]
    assert table["data"]["decision"] == verdict.decision
    assert (table["file"]["seq"], table["file"]["hash"]) == (record["seq"], record["hash"])
    assert client.get(settings.key("validate", "unrecorded", eid)) is None


def test_a_suggestion_capped_by_an_unallowed_repository_check_says_why(
        repo: Path, settings: Settings, client: redis.Redis) -> None:
    (repo / "heal.toml").write_text('mode = "auto-safe"\n[limits]\ndedupe_minutes = 0\n'
                                    '[[verify.checks]]\nname = "mine"\n'
                                    'argv = ["python3", "-c", "pass"]\n')
    validator, _ = stage(settings, client, Store())
    verdict = validator.validate(candidate(repo))
    assert verdict.decision == "suggest"
    assert verdict.reason.startswith("mode suggest: run `heal apply e1` to apply; ")
    assert verdict.reason.endswith("; heal.toml: verify.checks[0].argv = [\"python3\", \"-c\", "
                                   "\"pass\"]: runs a program, which only operator configuration "
                                   "may allow (add it to [trust] commands or [[verify.checks]] "
                                   "in $HEAL_HOME/heal.toml or HEAL_CONFIG); not run, and mode "
                                   "capped at suggest")
    # a rejection is not "capped": it carries no such note
    hostile = {**FIX, "rendered": {"argv": ["rm", "../x"]}}
    rejected = validator.validate(candidate(repo, hostile, error_id="e2"))
    assert rejected.decision == "reject" and "capped at suggest" not in rejected.reason


def test_a_repository_cannot_waive_the_human_for_a_risky_fix(
        repo: Path, settings: Settings, client: redis.Redis, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a graduated RISKY fix under mode auto and a heal.toml waiving the human
    graduated = {**FIX, "category": "RISKY", "state": "AUTOMATED"}
    (repo / "heal.toml").write_text('mode = "auto"\n[limits]\ndedupe_minutes = 0\n'
                                    '[judges]\nhuman_for_risky = false\n')
    # When the operator configuration says nothing: a person still approves it, and the
    # verdict names the key the repository may not set
    verdict = stage(settings, client, Store())[0].validate(candidate(repo, graduated,
                                                                     error_id="w1"))
    assert verdict.decision == "suggest", verdict.reason
    assert verdict.reason.startswith("RISKY fix needs a human: heal apply w1")
    notes = [str(c.get("reason")) for c in verdict.preflight if c.get("name") == "trust"]
    assert any("judges.human_for_risky = false" in n and "operator configuration" in n
               for n in notes), verdict.preflight
    # When the operator lets repositories decide ([judges] human_for_risky = false), the
    # repository's false is honoured
    operator = tmp_path / "operator.toml"
    operator.write_text("[judges]\nhuman_for_risky = false\n[limits]\ndedupe_minutes = 0\n")
    operator.chmod(0o600)
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    verdict = stage(settings, client, Store())[0].validate(candidate(repo, graduated,
                                                                     error_id="w2"))
    assert verdict.decision == "apply", verdict.reason
    # ... and a repository may always ask for the human, whatever the operator allows
    (repo / "heal.toml").write_text('mode = "auto"\n[limits]\ndedupe_minutes = 0\n')
    verdict = stage(settings, client, Store())[0].validate(candidate(repo, graduated,
                                                                     error_id="w3"))
    assert verdict.decision == "suggest", verdict.reason
