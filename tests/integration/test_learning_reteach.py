"""Teaching a pattern again (the real CLI, real engines): a fix taught again reports its real
lifecycle state and is the one served again; a lesson without --regex keeps the rule a person
gave with --regex (and the name given with --name) and says so. QA report qa_teach, items 10
and 15."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from storage.engines import open_database
from storage.lifecycle import LifecycleStore
from tests.integration._repos import git
from tests.integration.test_learning_teach_e2e import letters

# the error's class is the test's own (a token): another test's lesson never matches it
APP = """import os


class Stale{token}Error(Exception):
    pass


if not os.path.exists("workspace.ready"):
    raise Stale{token}Error(f"workspace {{os.getcwd()}}/build not initialised after 3 attempts")
"""
VARIANT = "app.Stale{token}Error: workspace /srv/w2/build not initialised after 17 attempts\n"
RULE = r"Error: workspace \S++ not initialised"


def failing_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str]) -> str:
    """An unmatched error of a repository of the test's own; its token."""
    token = letters()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token))
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    status = main(["run", "--timeout", "120", "--mode", "suggest", "--", sys.executable, "-c",
                   "import app"])
    assert status == 1, capsys.readouterr().err
    capsys.readouterr()
    return token


def learn(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["learn", "--last", *args, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def served(tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str) -> str:
    variant = tmp_path / "variant.txt"
    variant.write_text(VARIANT.format(token=token))
    assert main(["diagnose", "--json", "--no-semantic", str(variant)]) == 0
    return str(json.loads(capsys.readouterr().out)["fix"]["id"])


def test_a_fix_taught_again_reports_its_real_state_and_is_served_again(
    tmp_path: Path, own_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a taught fix that a verified success made ACTIVE
    token = failing_run(tmp_path, monkeypatch, capsys)
    proven = learn(capsys, "--command", "touch workspace.ready")
    error = ErrorEvent(id=f"o-{token}", text=VARIANT.format(token=token), repo=Repo(path="/srv"))
    db = open_database(Settings.from_env())
    try:
        LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy()).handle(
            OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error,
                         fine=proven["fingerprints"][0], fix_id=proven["fix_id"],
                         status="applied"))
        assert db.fetchval("SELECT state FROM fixes WHERE id = $1", proven["fix_id"]) == "ACTIVE"
    finally:
        db.close()
    # and a newer lesson with another fix, which is now the one served
    newer = learn(capsys, "--command", "touch x")
    assert newer["new_fix"] and served(tmp_path, capsys, token) == newer["fix_id"]

    # When a person teaches the proven fix again (QA item 10)
    again = learn(capsys, "--command", "touch workspace.ready")
    # Then its real state is reported (JSON and text), and it is the one served again
    assert (again["fix_id"], again["new_fix"], again["state"]) == (
        proven["fix_id"], False, "ACTIVE")
    assert served(tmp_path, capsys, token) == proven["fix_id"]
    assert main(["learn", "--last", "--command", "touch workspace.ready"]) == 0
    out = capsys.readouterr().out
    assert f"{proven['fix_id']} (command, MODERATE, ACTIVE)" in out, out
    assert "keeps its state (ACTIVE)" in out and "served again" in out, out


def test_a_lesson_without_regex_keeps_the_rule_a_person_gave(
    tmp_path: Path, own_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a pattern whose rule a person gave with --regex
    token = failing_run(tmp_path, monkeypatch, capsys)
    given = learn(capsys, "--command", "touch workspace.ready", "--regex", RULE)
    assert given["regex"] == RULE

    # When a later lesson gives no --regex (QA item 15)
    assert main(["learn", "--last", "--command", "touch x"]) == 0
    out = capsys.readouterr().out
    # Then the person's rule is kept, and the output says so
    assert f"rule {RULE}" in out and "kept the detection rule given earlier" in out, out
    db = open_database(Settings.from_env())
    try:
        rules = db.fetchval("SELECT detection::text FROM patterns WHERE id = $1",
                            given["pattern_id"])
    finally:
        db.close()
    # (a person's rule decides: the lesson answers where it matches, not by fingerprint)
    assert json.loads(rules) == [{"regex": RULE, "decides": True}]
    assert served(tmp_path, capsys, token).startswith(given["pattern_id"])

    # and another --regex replaces it
    other = RULE.replace("not initialised", r"not initialised after \d++")
    replaced = learn(capsys, "--command", "touch x", "--regex", other)
    assert replaced["regex"] == other and not any("kept" in n for n in replaced["notes"])


def pattern_name(pattern_id: str) -> str:
    db = open_database(Settings.from_env())
    try:
        return str(db.fetchval("SELECT name FROM patterns WHERE id = $1", pattern_id))
    finally:
        db.close()


def test_a_lesson_without_name_keeps_the_name_a_person_gave(
    tmp_path: Path, own_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a pattern a person named with --name
    failing_run(tmp_path, monkeypatch, capsys)
    given = learn(capsys, "--command", "touch workspace.ready", "--name", "stale workspace")
    assert pattern_name(given["pattern_id"]) == "stale workspace"

    # When a later lesson gives no --name (another fix, then the same fix again)
    assert main(["learn", "--last", "--command", "touch x"]) == 0
    out = capsys.readouterr().out
    # Then the person's name is kept, and the output says so
    assert "kept the name given earlier with --name (stale workspace" in out, out
    assert pattern_name(given["pattern_id"]) == "stale workspace"
    again = learn(capsys, "--command", "touch workspace.ready")
    assert any("kept the name" in n for n in again["notes"]), again
    assert pattern_name(given["pattern_id"]) == "stale workspace"

    # and another --name replaces it, which a later lesson without one keeps in turn
    renamed = learn(capsys, "--command", "touch x", "--name", "workspace not ready")
    assert not any("kept the name" in n for n in renamed["notes"]), renamed
    assert pattern_name(given["pattern_id"]) == "workspace not ready"
    learn(capsys, "--command", "touch y")
    assert pattern_name(given["pattern_id"]) == "workspace not ready"
