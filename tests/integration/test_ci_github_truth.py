"""What `heal run` leaves under GitHub Actions (and GitLab CI) says what is true of the case,
run for real (`heal run` in a subprocess, real engines, the providers' environment variables):
stdout stays the command's own, a suggestion is "verified" only when it was, every row names
the same `heal apply` handle, a flaky outcome is worded and documented, and the annotation
neither carries bidirectional controls nor names a file outside the checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from tests.integration._repos import committed_repo

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _env(heal_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("HEAL_", "GITHUB_", "GITLAB_", "CI_", "RUNNER_"))}
    path = f"{Path(sys.executable).parent}{os.pathsep}{base['PATH']}"
    github = {"GITHUB_ACTIONS": "true", "CI": "true",
              "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
              "GITHUB_OUTPUT": str(tmp_path / "output"), "RUNNER_TEMP": str(tmp_path / "rt")}
    return {**base, **heal_env, **github, **extra, "PATH": path, "PYTHONPATH": str(ROOT),
            # a workflow of its own: the execution state gates nothing another test left
            "HEAL_WORKFLOW": f"wf-{uuid.uuid4().hex[:10]}"}


def _heal_run(repo: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, "run", "--timeout", "120", "--", *argv], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def _annotations(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The annotations heal wrote, on either stream (where they go is the stdout test's)."""
    return [ln for ln in (done.stdout + done.stderr).splitlines()
            if ln.startswith(("::error ", "::notice "))]


def _declared_outputs() -> dict[str, str]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    return {name: str(o["description"]) for name, o in action["outputs"].items()}


def _suggestion(tmp_path: Path, heal_env: dict[str, str]
                ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """A program that writes its data to stdout, then fails on a module nobody declared, run
    under heal in GitHub Actions: heal suggests `pip install`, checked only when applied."""
    token = uuid.uuid4().hex[:10]
    repo = committed_repo(tmp_path / "repo", {
        "gen.py": f'print(\'{{"rows": 1}}\', flush=True)\nimport nosuchmod_{token}\n'})
    done = _heal_run(repo, _env(heal_env, tmp_path), sys.executable, "gen.py")
    assert done.returncode == 1, done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs["decision"] == "suggested", done.stderr
    return done, outputs


def test_annotations_go_to_stderr_and_stdout_stays_the_commands_own(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a program writing JSON to stdout (`heal run -- gen > data.json`), failing
    # When it runs under heal in GitHub Actions
    done, _ = _suggestion(tmp_path, heal_env)
    # Then stdout is the program's own: the annotation went to stderr, where the runner reads it
    assert done.stdout == '{"rows": 1}\n', done.stdout
    assert json.loads(done.stdout) == {"rows": 1}
    assert len([ln for ln in done.stderr.splitlines() if ln.startswith("::error ")]) == 1


def test_an_unverified_suggestion_is_not_called_verified_and_names_one_handle(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a suggestion of a command fix (pip install), which has no patch and is checked
    # only when applied
    done, outputs = _suggestion(tmp_path, heal_env)
    error_id = outputs["error-id"]
    assert outputs["patch-path"] == ""
    # Then the annotation does not call it verified, and says how to apply it
    (annotation,) = _annotations(done)
    assert annotation.startswith("::error file=gen.py,line=2,title=heal::"), annotation
    assert "verified fix" not in annotation and "(not verified yet)" in annotation
    assert f"apply it with: heal apply {error_id}" in annotation
    # and the summary neither, nor offers a patch that does not exist
    summary = (tmp_path / "summary.md").read_text()
    assert "**suggested; waiting to be applied**" in summary and "**verified" not in summary
    assert "fix.patch" not in summary
    # and every row names the same handle to pass to `heal apply`: the error id
    handles = {h.replace("\\", "") for h in re.findall(r"heal apply `?([^\s`;)|]+)", summary)}
    assert handles == {error_id}, summary
    # (every output heal writes is one the action declares, else a workflow reads '')
    assert set(outputs) <= set(_declared_outputs())


def test_the_annotation_shows_bidi_controls_and_names_no_file_outside_the_checkout(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given an error whose message holds a right-to-left override and whose innermost frame is
    # a file outside the repository
    token = uuid.uuid4().hex[:10]
    text = ('Traceback (most recent call last):\\n  File "/x/boom2.py", line 9, in <module>\\n'
            f'ValueError: odd {token} \\u202e rtl\\n')
    repo = committed_repo(tmp_path / "repo", {
        "bin.py": f"import sys\nsys.stderr.write({text!r}.encode().decode('unicode_escape'))\n"
                  "sys.exit(3)\n"})
    project = tmp_path / "gitlab"
    env = _env(heal_env, tmp_path, GITLAB_CI="true", CI_PROJECT_DIR=str(project))
    # When it runs under heal in GitHub Actions and GitLab CI
    done = _heal_run(repo, env, sys.executable, "bin.py")
    assert done.returncode == 3, done.stderr
    assert "\u202e rtl" in done.stderr  # (the program's own stderr is passed through as is)
    # Then the annotation writes the control out, as the summary does, and names no file
    (annotation,) = _annotations(done)
    assert "\u202e" not in annotation and f"odd {token} \\u202e rtl" in annotation
    assert annotation.startswith("::error title=heal::"), annotation
    summary = (tmp_path / "summary.md").read_text()
    assert "\u202e" not in summary and "\\u202e" in summary
    # and GitLab's Code Quality entry names the job, not the outside file, and shows the control
    (issue,) = json.loads((project / "gl-code-quality-report.json").read_text())
    assert issue["location"]["path"] == ".gitlab-ci.yml"
    assert "\u202e" not in issue["description"] and "\\u202e" in issue["description"]


def test_a_flaky_outcome_is_worded_and_is_a_documented_decision(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a check that fails once, then passes on any re-run (its own fingerprint: a flaky
    # mark changes what later lookups of that fingerprint offer)
    token = uuid.uuid4().hex[:10]
    repo = committed_repo(tmp_path / "repo", {"app.py": "x  =  1\n"})
    marker = tmp_path / "passed-once"
    script = (f"test -f {marker} && exit 0; touch {marker}; "
              f"echo 'Would reformat: src/app_{token}.py'; exit 1")
    env = _env(heal_env, tmp_path)
    # When heal runs it in GitHub Actions (automatic mode, so the fix is tried)
    done = subprocess.run([*HEAL, "run", "--timeout", "120", "--mode", "auto-safe", "--",
                           "sh", "-c", script], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    # Then the decision is flaky, and the action and the README list it
    assert done.returncode == 0, done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs["decision"] == "flaky", done.stderr
    for value in ("flaky", "deferred"):
        assert re.search(rf"\b{value}\b", _declared_outputs()["decision"])
        readme = (ROOT / "README.md").read_text()
        listed = readme[readme.index("appends step outputs to `$GITHUB_OUTPUT`"):][:700]
        assert f"`{value}`" in listed
    # and the summary and the annotation say what happened in words
    summary = (tmp_path / "summary.md").read_text()
    assert "**not reproducible: the step passed on a re-run without a fix" in summary
    (annotation,) = _annotations(done)
    assert annotation.startswith("::notice ") and "did not reproduce" in annotation


def test_a_verified_suggestion_names_the_error_id_everywhere_in_clean_code_spans(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    """QA s14d #7: the verification row of a verified suggestion read
    ``run \\`heal apply `` run-… `` to apply`` (the id code-spanned inside an escaped code
    span: a stray backtick on GitHub), and decision.json's detail and the stderr decision line
    named `heal apply FIX_ID` while the summary and the annotation named the error id."""
    from markdown_it import MarkdownIt

    from tests.scenarios.catalog import build

    # Given a lint failure with a fix heal can verify, in mode suggest
    _, repo = build("unused-import", tmp_path)
    env = _env(heal_env, tmp_path)
    # When heal runs it under GitHub Actions
    done = subprocess.run([*HEAL, "run", "--mode", "suggest", "--timeout", "120", "--",
                           "ruff", "check", "."], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs["decision"] == "suggested", done.stderr
    error_id, fix_id = outputs["error-id"], outputs["fix-id"]
    assert error_id and fix_id
    # Then the summary's verification row shows the command as one code span, no stray tick
    summary = (tmp_path / "summary.md").read_text()
    (row,) = [ln for ln in summary.splitlines() if ln.startswith("| verification |")]
    html = MarkdownIt("commonmark").enable(["table"]).render(f"| | |\n| --- | --- |\n{row}\n")
    assert f"<code>heal apply {error_id}</code>" in html, row
    assert "`" not in html, html
    # and decision.json, the stderr decision line and the annotation name the error id too
    decision = json.loads((tmp_path / "rt" / "heal" / "decision.json").read_text())
    assert f"heal apply {error_id}" in decision["detail"], decision["detail"]
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("heal: suggested")]
    (annotation,) = _annotations(done)
    for text in (decision["detail"], line, annotation, summary):
        assert f"heal apply {fix_id}" not in text, text
    assert f"heal apply {error_id}" in line, line
