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
