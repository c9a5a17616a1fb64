"""The CI files the README shows are the tested ones, verbatim, and fit together: the example
workflow gives the action only inputs it declares and uploads the directory heal writes."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_shows_the_tested_ci_files_verbatim() -> None:
    for rel in ("deploy/ci/github-workflow.yml", "deploy/ci/gitlab-job.yml",
                "deploy/ci/gitlab-heal.yml"):
        text = (ROOT / rel).read_text()
        assert f"```yaml\n{text}```" in README, f"README does not show {rel} verbatim"
    dagster = (ROOT / "deploy" / "orchestrators" / "dagster_job.py").read_text()
    assert f"```python\n{dagster}```" in README


def test_the_example_workflow_fits_the_action() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    workflow = yaml.safe_load((ROOT / "deploy" / "ci" / "github-workflow.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    (heal,) = [s for s in steps if s.get("id") == "heal"]
    assert set(heal["with"]) <= set(action["inputs"])
    assert {"run", "mode", "workflow"} <= set(action["inputs"])
    assert action["runs"]["using"] == "composite"
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "${{ runner.temp }}/heal"
    for name in ("decision", "fix-id", "patch-path"):
        assert f"steps.heal.outputs.{name}" in action["outputs"][name]["value"]


def test_the_gitlab_template_keeps_its_reports() -> None:
    template = yaml.safe_load((ROOT / "deploy" / "ci" / "gitlab-heal.yml").read_text())
    artifacts = template[".heal"]["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"] == {"codequality": "gl-code-quality-report.json",
                                    "dotenv": "heal-artifacts/heal.env"}


def test_the_action_declares_every_output_heal_writes() -> None:
    """A composite action passes on only the outputs it declares: `error-id` was written by
    heal and read as '' by every workflow."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    for name in ("decision", "fix-id", "patch-path", "error-id", "artifacts-dir", "resolved"):
        assert action["outputs"][name]["value"] == f"${{{{ steps.heal.outputs.{name} }}}}"


def test_the_install_step_puts_only_heal_on_path(tmp_path: Path) -> None:
    """The action's install step, run with a stand-in `python3 -m venv` (no network): the
    directory it adds to GITHUB_PATH holds `heal` (the virtualenv's) and none of the
    virtualenv's python, pip or ruff, which would shadow the project's for later steps."""
    import os
    import subprocess

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (install,) = [s for s in action["runs"]["steps"] if s.get("name") == "install heal"]
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    # python3 -m venv DIR: a venv whose every program says whose it is
    (stubs / "python3").write_text(
        '#!/bin/sh\nset -e\n[ "$1 $2" = "-m venv" ]\nmkdir -p "$3/bin"\n'
        'for p in python python3 pip ruff heal; do\n'
        '  printf \'#!/bin/sh\\necho venv-%s\\n\' "$p" > "$3/bin/$p"; chmod +x "$3/bin/$p"\n'
        'done\n')
    (stubs / "python3").chmod(0o755)
    github_path = tmp_path / "github_path"
    env = {"PATH": f"{stubs}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "RUNNER_TEMP": str(tmp_path / "rt"), "GITHUB_ACTION_PATH": str(ROOT),
           "GITHUB_PATH": str(github_path), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-e", "-c", install["run"]], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    added = github_path.read_text().splitlines()
    assert added, "the step adds heal's directory to PATH"
    for directory in added:
        assert {p.name for p in Path(directory).iterdir()} == {"heal"}, directory
    # and `heal` on that PATH is the virtualenv's
    path = os.pathsep.join([*added, "/usr/bin", "/bin"])
    heal = subprocess.run(["heal"], env={"PATH": path}, capture_output=True, text=True)
    assert heal.stdout == "venv-heal\n"
