"""Fast checks of the trust boundary's parts (keys, seals, attestations, operator
configuration, package rules); the attacks themselves are in tests/security/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.events import ErrorEvent, Repo
from pipeline.model import Mode
from pipeline.policy import Check, Policy
from pipeline.trust.attest import attest, is_attested
from pipeline.trust.keys import load_keys, retire_previous, rotate
from pipeline.trust.operator import (
    OperatorConfig,
    operator_config,
    parse_operator,
    restrict,
)
from pipeline.trust.packages import (
    declared_packages,
    install_target,
    interpreter_for,
    manifest_diff,
)
from pipeline.trust.seal import seal, unseal


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("HEAL_SIGNING_KEY", raising=False)
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix="t")


def test_seal_is_bound_to_key_stream_and_content(settings: Settings) -> None:
    raw = b'{"kind":"verdict","id":"e:validate"}'
    sealed = seal(settings, "verdicts", raw)
    assert unseal(settings, "verdicts", sealed) == raw
    assert unseal(settings, "candidates", sealed) is None
    assert unseal(settings, "verdicts", sealed.replace(b"e:validate", b"x:validate")) is None
    assert unseal(settings, "verdicts", raw) is None


def test_rotation_accepts_the_previous_key_until_retired(settings: Settings) -> None:
    old = load_keys(settings)
    signature = old.sign("stage:verdicts", b"x")
    new = rotate(settings)
    assert new.current != old.current and new.previous == old.current
    assert new.verify("stage:verdicts", b"x", signature)
    retire_previous(settings)
    assert not load_keys(settings).verify("stage:verdicts", b"x", signature)
    assert oct((settings.home / "keys").stat().st_mode & 0o777) == "0o700"


def test_attestation_covers_command_repo_cwd_and_mode(settings: Settings) -> None:
    event = attest(ErrorEvent(id="run-1", text="t", command=("pytest",),
                              repo=Repo(path="/r"), tags={"mode": "suggest"}), settings)
    assert is_attested(event, settings)
    from dataclasses import replace

    for changed in (replace(event, command=("sh", "-c", "x")),
                    replace(event, repo=Repo(path="/other")),
                    replace(event, tags={**event.tags, "mode": "auto"}),
                    replace(event, tags={**event.tags, "cwd": "/elsewhere"}),
                    replace(event, id="run-2")):
        assert not is_attested(changed, settings)
    assert is_attested(replace(event, text="other text"), settings)  # text is data anyway


def test_operator_allowlists_and_restrict() -> None:
    op = parse_operator({"trust": {"repos": ["/srv/*"], "commands": [["make", "test"],
                                                                      ["pytest", "*"]],
                                   "max_mode": "auto-safe"}}, "op")
    assert op.repo_allowed("/srv/app") and not op.repo_allowed("/home/x")
    assert op.command_allowed(["pytest", "-q"]) and op.command_allowed(["make", "test"])
    assert not op.command_allowed(["make", "test", "evil"])
    assert not op.command_allowed(["sh", "-c", "pytest"])
    repo = Policy(mode=Mode.AUTO, checks=(Check("ok", ("pytest", "-q"), 5.0),
                                          Check("bad", ("curl", "x"), 5.0)))
    policy, warnings, ceiling = restrict(repo, op)
    assert [c.name for c in policy.checks] == ["ok"]
    assert ceiling == Mode.SUGGEST and policy.mode == Mode.SUGGEST
    assert any("verify.checks[1].argv" in w for w in warnings)
    assert restrict(Policy(mode=Mode.AUTO), OperatorConfig(max_mode=Mode.AUTO_SAFE))[2] == \
        Mode.AUTO_SAFE


def test_declared_packages_from_manifests(tmp_path: Path) -> None:
    (tmp_path / "requirements-dev.txt").write_text("-r base.txt\nPyYAML==6.0 # yaml\n\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["requests>=2", "attrs"]\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n'
        '[tool.poetry.dependencies]\npython = "^3.11"\nrich = "*"\n')
    (tmp_path / "uv.lock").write_text('[[package]]\nname = "Some_Lib"\nversion = "1"\n')
    assert declared_packages(tmp_path) >= {"pyyaml", "requests", "attrs", "pytest", "rich",
                                           "some-lib"}
    assert "python" not in declared_packages(tmp_path)


def test_install_target_and_interpreter(tmp_path: Path) -> None:
    fix = {"kind": "command", "rendered": {"argv": ["python", "-m", "pip", "install", "x"]}}
    assert install_target(fix) == "x"
    assert install_target({"kind": "command", "rendered": {"argv": ["ruff", "format"]}}) is None
    assert interpreter_for((sys.executable, "-m", "pytest"), tmp_path) == \
        os.path.abspath(sys.executable)
    script = tmp_path / "tool"
    script.write_text(f"#!{sys.executable}\nprint(1)\n")
    script.chmod(0o755)
    assert interpreter_for(("./tool", "-q"), tmp_path) == sys.executable
    assert interpreter_for(("ls",), tmp_path) is None


@pytest.mark.parametrize("content", ["requests\nattrs\n", "", "one\ntwo", "solo"])
def test_manifest_diff_applies_with_git(tmp_path: Path, content: str) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "requirements.txt").write_text(content)
    diff = manifest_diff(tmp_path, "newdep")
    subprocess.run(["git", "apply", "-"], cwd=tmp_path, input=diff, text=True, check=True)
    lines = (tmp_path / "requirements.txt").read_text().splitlines()
    assert lines == [*content.splitlines(), "newdep"]


def test_an_unusable_operator_configuration_fails_closed(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused with no valid one read before: every mode capped at observe, and said; a valid
    one this process read stays in force when the file later turns invalid."""
    path = tmp_path / "op.toml"
    monkeypatch.setenv("HEAL_CONFIG", str(path))
    refused = operator_config(settings)  # named by HEAL_CONFIG, missing
    assert refused.max_mode == Mode.OBSERVE and "no such file" in refused.refused
    policy, warnings, ceiling = restrict(Policy(mode=Mode.AUTO), refused)
    assert policy.mode == ceiling == Mode.OBSERVE
    assert "capped at observe" in warnings[0] and "no such file" in warnings[0]
    for bad in (b"[trust]\nmax_mode = nan\n", b'[trust]\nrepos = ["\xff"]\n',
                ("a=" + "[" * 100_000 + "]" * 100_000).encode()):
        path.write_bytes(bad)
        path.chmod(0o600)
        assert operator_config(settings).max_mode == Mode.OBSERVE
    path.write_text('[trust]\nmax_mode = "auto-safe"\n')
    path.chmod(0o600)
    assert operator_config(settings).max_mode == Mode.AUTO_SAFE
    path.chmod(0o666)  # now refused: the valid one read before stays
    kept = operator_config(settings)
    assert kept.max_mode == Mode.AUTO_SAFE and not kept.refused
