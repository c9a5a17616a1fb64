"""Cost controls on the running pipeline (validate + apply stages, real git, Redis,
PostgreSQL): the token bucket defers automatic fixes past the rate and a deferred fix is
retried later, never dropped; LLM judge tokens are recorded against the daily budget."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo, git
from pipeline.events import VerdictEvent
from pipeline.guardrails.budget import Budget, budget_status, repository_scope, shared_rate
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate

FORMAT = ("ruff", "format", "--check", ".")


def _repo(tmp_path: Path, name: str, policy: str) -> Path:
    root = create_repo(tmp_path / name)
    (root / "heal.toml").write_text(policy)
    git(root, "add", "heal.toml")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "policy")
    break_formatting(root)
    return root


def _released(client: redis.Redis, settings: Settings) -> VerdictEvent:
    (_, fields), = client.xrevrange(settings.stream("verdicts"), count=1)
    return VerdictEvent.decode(fields[b"event"])


def test_the_automatic_fix_past_the_rate_is_deferred_and_applied_later(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, operator_toml: Callable[[str], Path]) -> None:
    # Given the operator's rate of 2 automatic fixes per 2 minutes, shared by every
    # repository (one token back every 60 s, far longer than the test takes even on a loaded
    # machine), a deferred fix retried after 0.5 s (the operator's: a repository may only
    # make it wait longer) and 3 SAFE fixes in 3 repositories
    operator = operator_toml("[budget]\nautomatic_fixes = 2\nautomatic_fixes_minutes = 2\n"
                             "deferred_retry_seconds = 0.5\n")
    policy = "[budget]\n"
    roots = [_repo(tmp_path, f"shop{i}", policy) for i in range(3)]
    verdicts = [validator.validate(candidate(root, FORMAT, FORMAT_FIX)) for root in roots]
    assert [v.decision for v in verdicts] == ["apply"] * 3
    heads = [git(root, "rev-parse", "HEAD") for root in roots]

    outcomes = [applier.handle(v) for v in verdicts]

    # Then the third is deferred, says why (the operator's shared rate), and the repository
    # is untouched
    assert [o.status for o in outcomes] == ["applied", "applied", "deferred"]
    assert (f"at most 2 automatic fixes per 2 minutes (shared by every repository: the "
            f"operator's [budget] in {operator})") in outcomes[2].detail
    assert outcomes[2].id != f"{verdicts[2].error_id}:apply"  # the final outcome keeps that id
    assert git(roots[2], "rev-parse", "HEAD") == heads[2]
    assert Budget(client, stage_settings).status((shared_rate(stage_settings),))["deferred"] == 1

    # When it is due (0.5 s; sleeping longer is harmless), the apply worker's tick puts it
    # back on the verdicts stream
    time.sleep(0.6)
    assert applier.release_deferred() == 1
    again = _released(client, stage_settings)
    assert again.error_id == verdicts[2].error_id and again.id != verdicts[2].id
    # still no token: deferred again, never dropped
    assert applier.handle(again).status == "deferred"
    assert Budget(client, stage_settings).status((shared_rate(stage_settings),))["deferred"] == 1

    # Once the bucket has refilled (its clock moved back 2 minutes: the time a refill takes,
    # without sleeping it), the released verdict is applied
    bucket = stage_settings.key("budget", "bucket", "apply")
    client.hset(bucket, "ts", float(client.hget(bucket, "ts") or 0) - 120)
    assert applier.release_deferred(now=time.time() + 1) == 1
    final = applier.handle(_released(client, stage_settings))
    assert final.status == "applied", final.detail
    assert final.id == f"{verdicts[2].error_id}:apply"
    assert git(roots[2], "rev-parse", "HEAD") != heads[2]
    assert Budget(client, stage_settings).status((shared_rate(stage_settings),))["deferred"] == 0


def test_a_repository_that_tightens_its_rate_does_not_stop_another_repositorys_fixes(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, operator_toml: Callable[[str], Path]) -> None:
    """A repository's heal.toml ``automatic_fixes = 1`` clamped the token bucket every
    repository shares to 1 token: once it had taken it, every other repository's automatic
    fixes were deferred (a heal.toml is untrusted and may only narrow what holds itself)."""
    # Given repository A whose heal.toml allows 1 automatic fix (per the default 10 minutes),
    # two SAFE fixes decided in it (dedupe off, the operator's, so the same fix is decided
    # twice), and repositories B and C whose heal.toml says nothing about the rate
    operator_toml("[limits]\ndedupe_minutes = 0\n")
    a = _repo(tmp_path, "a", "[budget]\nautomatic_fixes = 1\n")
    in_a = [validator.validate(candidate(a, FORMAT, FORMAT_FIX, fine=f"fp-a-{i}"))
            for i in range(2)]
    others = [validator.validate(candidate(_repo(tmp_path, name, ""), FORMAT, FORMAT_FIX))
              for name in ("b", "c")]
    assert [v.decision for v in in_a + others] == ["apply"] * 4

    # When the apply stage handles A's two (and retries A's deferred one), then B's and C's
    first, second = (applier.handle(v) for v in in_a)
    assert applier.release_deferred(now=time.time() + 3600) == 1
    retried = applier.handle(_released(client, stage_settings))
    outcomes = [applier.handle(v) for v in others]

    # Then B's and C's fixes are applied, while A's second is deferred, and so is its retry
    assert [o.status for o in outcomes] == ["applied", "applied"], [o.detail for o in outcomes]
    assert (first.status, second.status, retried.status) == ("applied", "deferred", "deferred")
    # ... by A's own limit, named so
    assert ("at most 1 automatic fixes per 10 minutes (this repository's own: [budget] in "
            f"{a.resolve() / 'heal.toml'})") in second.detail, second.detail
    # ... and the shared bucket has the default 20 tokens, of which A's refused fixes spent none
    shared = stage_settings.key("budget", "bucket", "apply")
    assert round(float(client.hget(shared, "tokens") or 0)) == 17
    assert float(client.hget(f"{shared}:{repository_scope(a.resolve())}", "tokens") or 1) < 1
    # ... and heal status in A shows both buckets: the shared one at the default rate, A's own
    status = budget_status(client, stage_settings, cwd=str(a))
    assert (status["rate"]["capacity"], status["rate"]["minutes"]) == (20, 10), status
    assert "the default" in status["rate"]["set_by"]
    assert (status["repository_rate"]["capacity"], status["repository_rate"]["minutes"]) == (
        1, 10), status
    assert "repository_rate" not in budget_status(client, stage_settings,
                                                  cwd=str(tmp_path / "b"))


class _Chat(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"content": "APPROVE looks contained"}}],
                           "usage": {"total_tokens": 1234}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def llm_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_llm_judge_tokens_are_recorded_against_the_daily_budget(
        tmp_path: Path, validator: Validator, client: redis.Redis, stage_settings: Settings,
        llm_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the LLM judge is operator configuration (pipeline.trust.operator), never a repository's
    operator = tmp_path / "operator.toml"
    operator.write_text('[trust]\ncommands = [["python", "-m", "unittest", "*"]]\n'
                        f'[judges.llm]\nenabled = true\nurl = "{llm_url}"\nmodel = "m"\n')
    operator.chmod(0o600)
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    root = _repo(tmp_path, "shop", "")
    verdict = validator.validate(candidate(root, FORMAT, FORMAT_FIX))
    (llm,) = [v for v in verdict.votes if v["judge"] == "llm"]
    assert llm["approve"] and llm["tokens"] == 1234
    assert Budget(client, stage_settings).spent()["llm_tokens"] == 1234


def test_a_deferred_fix_is_released_to_its_own_partition(
        tmp_path: Path, validator: Validator, client: redis.Redis, stage_settings: Settings,
        attempt_store: AttemptStore, operator_toml: Callable[[str], Path]) -> None:
    # Given HEAL_PARTITIONS=3, an apply worker whose handler was built on another partition's
    # view (one handler serves every partition of a process) and the operator's rate of 1
    # automatic fix per 5 minutes, shared by the two repositories
    from producers.publisher import partition_of

    partitioned = replace(stage_settings, partitions=3)
    operator_toml("[budget]\nautomatic_fixes = 1\nautomatic_fixes_minutes = 5\n")
    roots = [_repo(tmp_path, f"shop{i}", "") for i in range(2)]
    verdicts = [validator.validate(candidate(root, FORMAT, FORMAT_FIX)) for root in roots]
    own = partition_of(partitioned, verdicts[1].error).partition
    assert own is not None
    applier = Applier(partitioned.in_partition(own + 1), client, attempt_store)

    # When the second automatic fix is past the rate, deferred, then due
    assert [applier.handle(v).status for v in verdicts] == ["applied", "deferred"]
    assert applier.release_deferred(now=time.time() + 3600) == 1

    # Then it is back on the verdicts stream of its own partition, and only there
    lengths = {k: client.xlen(partitioned.in_partition(k).stream("verdicts")) for k in range(3)}
    assert lengths == {k: int(k == own) for k in range(3)}
    assert client.xlen(stage_settings.stream("verdicts")) == 0
    assert _released(client, partitioned.in_partition(own)).error_id == verdicts[1].error_id


def test_heal_apply_publishes_its_outcome_on_the_errors_partition(
        tmp_path: Path, validator: Validator, client: redis.Redis, stage_settings: Settings,
        attempt_store: AttemptStore) -> None:
    # Given HEAL_PARTITIONS=3 and a verified fix applied by hand (heal apply, the API)
    from producers.publisher import partition_of

    partitioned = replace(stage_settings, partitions=3)
    root = _repo(tmp_path, "shop", "")
    verdict = validator.validate(candidate(root, FORMAT, FORMAT_FIX))
    own = partition_of(partitioned, verdict.error).partition
    assert own is not None
    # When a process not bound to any partition (the CLI) applies it
    outcome = Applier(partitioned, client, attempt_store).apply_suggested(verdict)
    # Then its outcome is published on the outcomes stream of the error's own partition,
    # where that partition's lifecycle workers (and heal apply's inline drain) read it
    assert outcome.status == "applied", outcome.detail
    lengths = {k: client.xlen(partitioned.in_partition(k).stream("outcomes")) for k in range(3)}
    assert lengths == {k: int(k == own) for k in range(3)}
    assert client.xlen(stage_settings.stream("outcomes")) == 0
