"""CI providers, run for real: the action's and the GitLab template's own shell scripts run
`heal run` on a scenario repository (real engines, real stages) with the providers' documented
environment variables and files; the summary, annotations, outputs, patch and Code Quality
report are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.scenarios.catalog import build

ROOT = Path(__file__).resolve().parents[2]


def _env(heal_env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("HEAL_", "GITHUB_", "GITLAB_", "CI_", "RUNNER_"))}
    path = f"{Path(sys.executable).parent}{os.pathsep}{base['PATH']}"
    return {**base, **heal_env, **extra, "PATH": path, "PYTHONPATH": str(ROOT)}


#: the operator's configuration (tests/conftest.py) allows the check the scenario's heal.toml
#: declares (pipeline.trust): a repository's checks run only when it does
def _operator() -> dict[str, str]:
    return {"HEAL_CONFIG": os.environ["HEAL_CONFIG"]}


def _action_script() -> str:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "heal"]
    return str(step["run"])


def _example_inputs() -> dict[str, str]:
    """The inputs the README's example workflow gives the action."""
    workflow = yaml.safe_load((ROOT / "deploy" / "ci" / "github-workflow.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["test"]["steps"] if s.get("id") == "heal"]
    return {f"HEAL_INPUT_{k.upper()}": str(v) for k, v in step["with"].items()}


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_github_action_heals_and_leaves_summary_annotations_outputs_and_patch(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a repository whose lint fails with a mechanically fixable error
    _, repo = build("unused-import", tmp_path)
    summary, output, temp = tmp_path / "summary.md", tmp_path / "output", tmp_path / "runner"
    summary.write_text("# earlier step\n")  # the summary is appended to, never replaced
    env = _env(heal_env, {
        "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(repo),
        "GITHUB_WORKFLOW": "ci", "GITHUB_RUN_ID": "77", "GITHUB_JOB": "test",
        # the example workflow's inputs, as the runner passes them to the action's step, and
        # the operator configuration through the action's `config` input (not the env)
        "HEAL_INPUT_TIMEOUT": "180", "HEAL_INPUT_CONFIG": _operator()["HEAL_CONFIG"],
        **_example_inputs()})
    # When the action's own step script runs
    done = subprocess.run(["bash", "-c", _action_script()], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=400)
    # Then the fix was applied, verified and the command passes in the end
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = _outputs(output)
    assert outputs["decision"] == "applied" and outputs["resolved"] == "true"
    assert outputs["fix-id"] and outputs["artifacts-dir"] == str(temp / "heal")
    # the verified fix as a patch that removes the unused import
    patch = Path(outputs["patch-path"])
    assert patch == temp / "heal" / "fix.patch"
    diff = patch.read_text()
    assert diff.startswith("diff --git") and any(
        line.startswith("-import") for line in diff.splitlines())
    # the decision as JSON, naming the match and its tier
    decision = json.loads((temp / "heal" / "decision.json").read_text())
    assert decision["decision"] == "applied" and decision["resolved"] is True
    assert decision["match"]["pattern_id"] and decision["match"]["tier"] in (1, 2, 3)
    assert decision["fix"]["id"] == outputs["fix-id"]
    assert decision["verification"]["decision"] == "apply"
    # a notice annotation for the applied fix, on the file and line of the error
    # (on stderr: stdout stays the command's own)
    notices = [ln for ln in done.stderr.splitlines() if ln.startswith("::notice ")]
    assert len(notices) == 1 and "file=" in notices[0] and ",line=" in notices[0]
    assert "heal applied a verified fix" in notices[0]
    assert f"file={decision['error']['file']},line={decision['error']['line']}," in notices[0]
    assert f"a/{decision['error']['file']}" in diff  # the fix touches the file the error names
    # the job summary: appended, with the error, match and tier, fix, verification, diff
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    assert f"`{decision['match']['pattern_id']}`, tier {decision['match']['tier']}" in text
    assert f"`{outputs['fix-id']}`" in text and "| verification |" in text
    assert "<details><summary>the fix's diff</summary>" in text and "```diff" in text
    assert "**applied and verified**" in text
    # and a PR-comment body
    assert "<!-- heal:run -->" in (temp / "heal" / "pr-comment.md").read_text()


def _example_job_variables() -> dict[str, str]:
    """The README's example job: extends the template and sets what to run."""
    job = yaml.safe_load((ROOT / "deploy" / "ci" / "gitlab-job.yml").read_text())
    assert job["include"] == [{"local": "deploy/ci/gitlab-heal.yml"}]
    assert job["lint"]["extends"] == ".heal"
    return {k: str(v) for k, v in job["lint"]["variables"].items()}


def _gitlab_script() -> str:
    template = yaml.safe_load((ROOT / "deploy" / "ci" / "gitlab-heal.yml").read_text())
    return "\n".join(["set -e", *template[".heal"]["script"]])


def test_gitlab_template_reports_an_unresolved_error_as_code_quality(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a lint failure heal must not fix (removing the import would change behaviour)
    _, repo = build("side-effect-import", tmp_path)
    template = yaml.safe_load((ROOT / "deploy" / "ci" / "gitlab-heal.yml").read_text())
    assert template[".heal"]["artifacts"]["reports"]["codequality"] == (
        "gl-code-quality-report.json")
    env = _env(heal_env, {
        "GITLAB_CI": "true", "CI": "true", "CI_PROJECT_DIR": str(repo),
        "CI_PROJECT_PATH": "group/calc", "CI_PIPELINE_ID": "991", "CI_JOB_STAGE": "test",
        "CI_JOB_NAME": "lint", "HEAL_TIMEOUT": "180",
        "HEAL_ARTIFACTS_DIR": str(repo / "heal-artifacts"), **_example_job_variables(),
        **_operator()})  # HEAL_CONFIG as a CI/CD variable of the project
    # When the template's script runs
    done = subprocess.run(["sh", "-c", _gitlab_script()], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=400)
    # Then the job fails as the command did, and the error is in the Code Quality report
    assert done.returncode != 0, done.stdout + done.stderr
    issues = json.loads((repo / "gl-code-quality-report.json").read_text())
    assert len(issues) == 1
    (issue,) = issues
    assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
    assert issue["check_name"] == "heal" and issue["severity"] in ("minor", "major")
    assert issue["location"]["path"] and issue["location"]["lines"]["begin"] >= 1
    assert len(issue["fingerprint"]) == 32
    # the decision and the dotenv report for later jobs
    decision = json.loads((repo / "heal-artifacts" / "decision.json").read_text())
    assert decision["resolved"] is False and decision["decision"] != "applied"
    dotenv = (repo / "heal-artifacts" / "heal.env").read_text()
    assert f"HEAL_DECISION={decision['decision']}\n" in dotenv
    assert f"HEAL_ERROR_ID={decision['error_id']}\n" in dotenv
    # and GitHub's files are not written outside GitHub Actions
    assert not (done.stdout + done.stderr).count("::error")


def test_a_command_that_passes_first_time_sets_only_decision_and_resolved(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    """README: a command that passes the first time sets only the outputs `decision=none` and
    `resolved=true` (no empty fix-id, patch-path or error-id)."""
    output = tmp_path / "output"
    env = _env(heal_env, {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output)})
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "run", "--", "true"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text().splitlines() == ["decision=none", "resolved=true"]
