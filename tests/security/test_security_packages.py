"""Attack 3: an attacker-chosen package name. `No module named 'X'` may install X unattended
only when the repository declares it (or the operator allowed it), even once the fix has
graduated; the install goes to the interpreter that failed; every approval surface shows the
exact argv; `heal apply FIX_ID` refuses when several suggestions of the fix wait. Real
embedded engines, ``heal run`` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import candidate, sample_repo

HEAL = str(Path(sys.executable).parent / "heal")


def install_fix(package: str, state: str = "AUTOMATED") -> dict[str, Any]:
    """What lookup renders for python.module_not_found, graduated to AUTOMATED."""
    return {"id": "python.module_not_found/fix", "pattern_id": "python.module_not_found",
            "kind": "command", "category": "MODERATE", "state": state,
            "rendered": {"argv": ["python", "-m", "pip", "install", package],
                         "timeout_s": 300}}


@pytest.fixture
def validator(heal_env: dict[str, str], redis_url: str) -> Validator:
    return Validator(Settings.from_env(), redis.Redis.from_url(redis_url))


def test_an_undeclared_package_is_never_installed_unattended_even_when_graduated(
        tmp_path: Path, validator: Validator, caplog: pytest.LogCaptureFixture) -> None:
    root = sample_repo(tmp_path)
    cand = candidate(root, (sys.executable, "-c", "import evil_typosquat_heal"),
                     install_fix("evil_typosquat_heal"), mode="auto")
    verdict = validator.validate(cand)
    assert verdict.decision == "suggest", verdict.reason
    assert "'evil_typosquat_heal' is not declared" in verdict.reason
    assert f"heal apply {cand.error_id}" in verdict.reason
    # the argv a person approves installs into the interpreter that failed, not PATH's python
    argv = (verdict.fix or {})["rendered"]["argv"]
    assert argv == [os.path.abspath(sys.executable), "-m", "pip", "install",
                    "evil_typosquat_heal"]


def test_a_declared_package_may_run_unattended_in_the_failing_interpreter(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    (root / "requirements.txt").write_text("Evil-Typosquat-Heal>=1.0  # declared by the team\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "deps")
    cand = candidate(root, (sys.executable, "-c", "import evil_typosquat_heal"),
                     install_fix("evil_typosquat_heal"), mode="auto")
    verdict = validator.validate(cand)
    assert verdict.decision == "apply", verdict.reason
    assert (verdict.fix or {})["rendered"]["argv"][0] == os.path.abspath(sys.executable)
    assert any("declared by the repository" in str(c.get("reason")) for c in verdict.preflight)


def test_heal_apply_shows_the_argv_and_refuses_an_ambiguous_fix_id(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    root = sample_repo(tmp_path)
    (root / "requirements.txt").write_text("requests\n")
    env = {**os.environ, **heal_env}
    ids = []
    for name in ("evil_typosquat_a", "evil_typosquat_b"):
        (root / f"{name}.txt").write_text(name)  # two commits: two requests, two suggestions
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", name)
        done = subprocess.run([HEAL, "run", "--mode", "auto", "--", sys.executable, "-c",
                               f"import {name}"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert "suggested" in done.stderr and "heal apply" in done.stderr, done.stderr
        ids.append(done.stderr.split("published ", 1)[1].split()[0].rstrip(";"))
    assert main(["apply", "python.module_not_found/fix"]) == 2
    err = capsys.readouterr().err
    assert "name one by its error id" in err
    for eid in ids:
        assert f"heal apply {eid}" in err
    assert main(["apply", ids[0], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"runs: {os.path.abspath(sys.executable)} -m pip install evil_typosquat_a" in out
    # the durable fix, shown before anything runs: the dependency added to the manifest
    assert "then declares the dependency" in out and "+evil_typosquat_a" in out


def test_an_approved_install_declares_the_dependency_for_review(
        tmp_path: Path, heal_env: dict[str, str], redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What `heal apply ERROR_ID` does once a person approved an undeclared package: the
    install runs (here a stand-in argv that succeeds offline), then the manifest diff the
    approval surfaces showed is applied to the working tree, left uncommitted."""
    from dataclasses import replace

    from pipeline.apply.applier import Applier
    from pipeline.trust.packages import manifest_diff

    root = sample_repo(tmp_path)
    (root / "requirements.txt").write_text("requests\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "deps")
    settings = Settings.from_env()
    client = redis.Redis.from_url(redis_url)
    cand = candidate(root, (sys.executable, "-c", "import evil_typosquat_heal"),
                     install_fix("evil_typosquat_heal", state="ACTIVE"), mode="suggest")
    verdict = Validator(settings, client).validate(cand)
    assert verdict.decision == "suggest", verdict.reason
    rendered = (verdict.fix or {})["rendered"]
    assert rendered["manifest_diff"] == manifest_diff(root, "evil_typosquat_heal")
    # the person approves; an offline stand-in for pip "installs" the module on PYTHONPATH
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))
    install = f"open({str(site / 'evil_typosquat_heal.py')!r}, 'w').close()"
    approved = replace(verdict, decision="apply", fix={**(verdict.fix or {}), "rendered": {
        **rendered, "argv": [sys.executable, "-c", install]}})
    outcome = Applier(settings, client).apply_suggested(approved)
    assert "requirements.txt now declares it" in outcome.detail, outcome.detail
    assert (root / "requirements.txt").read_text() == "requests\nevil_typosquat_heal\n"
    assert git(root, "status", "--porcelain") == "M requirements.txt"
