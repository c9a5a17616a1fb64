"""Cost controls on the running pipeline (validate + apply stages, real git, Redis,
PostgreSQL): the token bucket defers automatic fixes past the rate and a deferred fix is
retried later, never dropped; LLM judge tokens are recorded against the daily budget."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo, git
from pipeline.events import VerdictEvent
from pipeline.guardrails.budget import Budget
from pipeline.validate.validator import Validator
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
        stage_settings: Settings) -> None:
    # Given a rate of 2 automatic fixes per 2 minutes (heal.toml [budget]: one token back
    # every 60 s, far longer than the test takes even on a loaded machine) and 3 SAFE fixes
    policy = ("[budget]\nautomatic_fixes = 2\nautomatic_fixes_minutes = 2\n"
              "deferred_retry_seconds = 0.5\n")
    roots = [_repo(tmp_path, f"shop{i}", policy) for i in range(3)]
    verdicts = [validator.validate(candidate(root, FORMAT, FORMAT_FIX)) for root in roots]
    assert [v.decision for v in verdicts] == ["apply"] * 3
    heads = [git(root, "rev-parse", "HEAD") for root in roots]

    outcomes = [applier.handle(v) for v in verdicts]

    # Then the third is deferred, says why, and the repository is untouched
    assert [o.status for o in outcomes] == ["applied", "applied", "deferred"]
    assert "at most 2 automatic fixes per 2 minutes" in outcomes[2].detail
    assert outcomes[2].id != f"{verdicts[2].error_id}:apply"  # the final outcome keeps that id
    assert git(roots[2], "rev-parse", "HEAD") == heads[2]
    assert Budget(client, stage_settings).status()["deferred"] == 1

    # When it is due (0.5 s; sleeping longer is harmless), the apply worker's tick puts it
    # back on the verdicts stream
    time.sleep(0.6)
    assert applier.release_deferred() == 1
    again = _released(client, stage_settings)
    assert again.error_id == verdicts[2].error_id and again.id != verdicts[2].id
    # still no token: deferred again, never dropped
    assert applier.handle(again).status == "deferred"
    assert Budget(client, stage_settings).status()["deferred"] == 1

    # Once the bucket has refilled (its clock moved back 2 minutes: the time a refill takes,
    # without sleeping it), the released verdict is applied
    bucket = stage_settings.key("budget", "bucket", "apply")
    client.hset(bucket, "ts", float(client.hget(bucket, "ts") or 0) - 120)
    assert applier.release_deferred(now=time.time() + 1) == 1
    final = applier.handle(_released(client, stage_settings))
    assert final.status == "applied", final.detail
    assert final.id == f"{verdicts[2].error_id}:apply"
    assert git(roots[2], "rev-parse", "HEAD") != heads[2]
    assert Budget(client, stage_settings).status()["deferred"] == 0


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
