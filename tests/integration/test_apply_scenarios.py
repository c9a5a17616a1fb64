"""The scenario corpus: every scripted repository really fails, and `heal run --mode
auto-safe` heals a healable one and leaves a non-healable one unchanged (real engines)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.validate.runner import run_argv
from tests.scenarios.catalog import BY_NAME, SCENARIOS, build, tree_state


def test_corpus_has_15_scenarios_that_all_fail(tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 15
    assert sum(s.healable for s in SCENARIOS) >= 5
    assert sum(not s.healable for s in SCENARIOS) >= 5
    for scenario in SCENARIOS:
        _, root = build(scenario.name, tmp_path)
        run = run_argv(list(scenario.command), str(root), 60)
        assert run["exit_code"] != 0, (scenario.name, run["tail"])



@pytest.mark.slow
@pytest.mark.parametrize(("name", "healed"), [(s.name, s.healable) for s in SCENARIOS],
                         ids=[s.name for s in SCENARIOS])
def test_heal_run_on_a_scenario(tmp_path: Path, heal_env: dict[str, str], name: str,
                                healed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario, root = build(name, tmp_path)
    before = tree_state(root)
    monkeypatch.chdir(root)
    # the commands (ruff) come from heal's own virtualenv, as for a user who activated it
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    status = main(["run", "--mode", "auto-safe", "--timeout", "120", "--",
                   *BY_NAME[name].command])
    after_run = run_argv(list(scenario.command), str(root), 60)
    if healed:
        assert status == 0 and after_run["exit_code"] == 0
    else:
        assert status != 0 and tree_state(root) == before
