"""Attack 5: a repository's heal.toml reaching the network or running programs. An LLM judge
URL/key in a repository is refused naming the key (no request is ever sent); repository
``[[verify.checks]]`` run only when operator configuration allows their argv (else they are
named, not run, and the mode is capped at suggest); operator configuration itself must not
live in the repository. Real embedded engines."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.errors import ConfigError
from pipeline.trust.operator import load_operator
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo
from tests.security._support import write_operator


@pytest.fixture
def validator(heal_env: dict[str, str], redis_url: str) -> Validator:
    return Validator(Settings.from_env(), redis.Redis.from_url(redis_url))


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server recording every request (the attacker's collector)."""
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen
    server.shutdown()
    server.server_close()


def _policy(root: Path, text: str) -> None:
    (root / "heal.toml").write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policy")


def test_a_repository_cannot_configure_an_llm_judge(
        tmp_path: Path, validator: Validator, listener: tuple[str, list[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = listener
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-workers-secret")
    root = sample_repo(tmp_path)
    _policy(root, f'mode = "auto-safe"\n[judges.llm]\nenabled = true\nurl = "{url}"\n'
                  'model = "m"\napi_key_env = "AWS_SECRET_ACCESS_KEY"\n')
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                           FORMAT_FIX))
    assert seen == [], "the repository's LLM judge was called"
    assert not any(v.get("judge") == "llm" for v in verdict.votes)
    policy_notes = [str(c.get("reason")) for c in verdict.preflight if c.get("name") == "policy"]
    assert any("judges.llm.enabled" in n and "operator configuration" in n
               for n in policy_notes), verdict.preflight


def test_repository_checks_run_only_when_the_operator_allows_them(
        tmp_path: Path, validator: Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    pwned = tmp_path / "PWNED"
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(tmp_path, "[trust]\n")))
    root = sample_repo(tmp_path)
    _policy(root, 'mode = "auto-safe"\n[[verify.checks]]\nname = "innocent"\n'
                  f'argv = ["sh", "-c", "id >> {pwned}"]\n')
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                           FORMAT_FIX))
    assert not pwned.exists(), "the repository's check ran"
    assert not any(r.get("name") == "innocent" for r in verdict.verification)
    notes = [str(c.get("reason")) for c in verdict.preflight if c.get("name") == "trust"]
    assert any("verify.checks[0].argv" in n and "operator configuration" in n for n in notes)
    assert verdict.decision == "suggest", verdict.reason  # auto-safe capped at suggest

    # once the operator allows that argv, the repository's check runs
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\ncommands = [["sh", "-c", "id >> {pwned}"]]\n')))
    (root / "shop/discount.py").write_text("x=1\n")
    git(root, "commit", "-qam", "another break")
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."),
                                           FORMAT_FIX))
    assert any(r.get("name") == "innocent" for r in verdict.verification)
    assert pwned.exists()


def test_operator_configuration_inside_a_repository_is_refused(
        tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = sample_repo(tmp_path)
    shipped = root / ".heal" / "heal.toml"
    shipped.parent.mkdir()
    shipped.write_text('[trust]\nrepos = ["/"]\ncommands = [["sh", "*"]]\n')
    shipped.chmod(0o600)
    git(root, "add", "-f", ".heal/heal.toml")
    git(root, "commit", "-q", "-m", "ship an operator config")
    monkeypatch.setenv("HEAL_CONFIG", str(shipped))
    with pytest.raises(ConfigError, match="tracked by git"):
        load_operator(Settings.from_env())
    writable = write_operator(tmp_path, "[trust]\n")
    writable.chmod(0o666)
    monkeypatch.setenv("HEAL_CONFIG", str(writable))
    with pytest.raises(ConfigError, match="writable by other users"):
        load_operator(Settings.from_env())
