"""What a CI report says about an error (QA report qa_s18b, defects 1 and 2): the headline is
the error's own line as the command wrote it (never the grouping key's masked text
``exit 3: ... <num>`` / ``<idtoken>`` or a respelled level ``ERROR:``), and an error keyed on
how its command ended names no file: the program (``sh -c``) is no file of the checkout, so
neither the annotation's ``file=`` nor the JSON's ``error.file`` holds it. Real ``heal run``
in a subprocess, with GitHub Actions' environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
UNREACHABLE = "redis://127.0.0.1:1/0"


def _env(home: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEAL_", "GITHUB_", "GITLAB_", "CI_", "RUNNER_"))
           and k not in {"CI", "HEAL_PROGRESS"}}
    (tmp / "runner").mkdir(exist_ok=True)
    env.update({"HEAL_HOME": str(home), "PYTHONPATH": str(ROOT), "GITHUB_ACTIONS": "true",
                "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
                "RUNNER_TEMP": str(tmp / "runner"), **extra})
    return env


def _run(tmp: Path, env: dict[str, str], script: str) -> tuple[dict[str, Any], list[str]]:
    """heal run --json of ``sh -c SCRIPT``: (the decision JSON, heal's ``::error`` lines)."""
    repo = tmp / "repo"
    if not repo.exists():
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = subprocess.run([*HEAL, "run", "--mode", "observe", "--timeout", "120", "--json",
                           "--", "sh", "-c", script], env=env, cwd=repo, capture_output=True,
                          text=True, errors="replace", timeout=300, check=False)
    lines = done.stderr.splitlines()
    decision = json.loads([ln for ln in lines if ln.startswith("{")][-1])
    return cast(dict[str, Any], decision), [ln for ln in lines if ln.startswith("::error")]


def test_the_headline_is_the_errors_own_line_not_its_grouping_text(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", tmp_path, HEAL_REDIS_URL=UNREACHABLE)
    # Given lines that say nothing of what failed (keyed on how the command ended: exit 4)
    decision, errors = _run(tmp_path, env, "echo 'reindexed shard 17 of 250' >&2; exit 4")
    # Then the headline keeps the numbers (before: `exit 4: reindexed shard <num> of <num>`)
    assert decision["error"]["headline"] == "exit 4: reindexed shard 17 of 250"
    assert errors and "::exit 4: reindexed shard 17 of 250 (" in errors[-1]
    summary = (tmp_path / "summary.md").read_text()
    assert "reindexed shard 17 of 250" in summary and "<num>" not in summary
    # and an id-like line is shown, not masked whole (before: `exit 4: <idtoken>`)
    decision, errors = _run(tmp_path, env, "echo 'tok-9f3ac2e1b7-zz' >&2; exit 4")
    assert decision["error"]["headline"] == "exit 4: tok-9f3ac2e1b7-zz"
    assert "<idtoken>" not in errors[-1]
    # Given a log line whose level the extraction respells (`Warn`/`Error:` -> `ERROR:`)
    decision, errors = _run(
        tmp_path, env, "echo '12:00:01 Error: blob store answered 503 for 100% of reads' >&2;"
                       " exit 1")
    # Then the line reads as written, from its level on (the timestamp before it dropped)
    assert decision["error"]["headline"] == "Error: blob store answered 503 for 100% of reads"
    # and the annotation's data stays escaped (`%` -> `%25`): no workflow command injected
    assert "Error: blob store answered 503 for 100%25 of reads (" in errors[-1]


def test_an_annotation_never_escapes_the_command_language(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", tmp_path, HEAL_REDIS_URL=UNREACHABLE)
    # Given an own line holding `::` and an escape byte, after lines of workflow commands
    decision, errors = _run(tmp_path, env,
                            "printf 'ready\\n::add-mask::x\\n"
                            "phase \\033[31mtwo ::stop-commands::t\\n' >&2; exit 2")
    line = errors[-1]
    # Then heal's annotation is one line whose message shows the escape byte written out
    assert line.startswith("::error title=heal::exit 2: phase ")
    assert "\x1b" not in line and "\n" not in line and "\r" not in line
    assert "two ::stop-commands::t (" in line
    assert not any(ln.startswith(("::add-mask", "::stop-commands")) for ln in errors)


def test_an_error_keyed_on_how_it_ended_names_no_file(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", tmp_path, HEAL_REDIS_URL=UNREACHABLE)
    # Given a command whose output says nothing of what failed, and one killed by a signal
    for script in ("echo 'copied 3 files' >&2; exit 5", "echo started; kill -TERM $$"):
        decision, errors = _run(tmp_path, env, script)
        # Then neither the JSON nor the annotation names the program (`sh -c`) as the file
        assert decision["error"]["file"] is None, decision
        assert errors and "file=" not in errors[-1], errors
    assert decision["error"]["headline"] == "killed by SIGTERM"


def test_through_the_pipeline_the_program_is_no_file_either(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """With the engines the lookup's params (which carry the key's program) are read back:
    the program stays out of the report all the same."""
    env = _env(tmp_path / "home", tmp_path, **{k: v for k, v in heal_env.items()
                                                 if k != "HEAL_HOME"})
    decision, errors = _run(tmp_path, env, "echo 'sweep ab12cd34ef56 ended' >&2; exit 6")
    assert decision["fingerprint"], decision
    assert decision["error"]["file"] is None, decision
    assert decision["error"]["headline"] == "exit 6: sweep ab12cd34ef56 ended"
    assert errors and "file=" not in errors[-1], errors


def test_the_code_quality_entry_of_one_error_stays_one_across_runs(tmp_path: Path) -> None:
    """The headline now keeps a run's numbers; the Code Quality fingerprint is the error's
    fine fingerprint, so two runs of one error (not reported) still replace one entry."""
    project = tmp_path / "project"
    project.mkdir()
    env = _env(tmp_path / "home", tmp_path, HEAL_REDIS_URL=UNREACHABLE, GITLAB_CI="true",
               CI_PROJECT_DIR=str(project))
    for shard in (17, 18):
        decision, _ = _run(tmp_path, env, f"echo 'reindexed shard {shard} of 250' >&2; exit 4")
        assert decision["error"]["headline"] == f"exit 4: reindexed shard {shard} of 250"
    issues = json.loads((project / "gl-code-quality-report.json").read_text())
    assert len(issues) == 1, issues
    assert "reindexed shard 18 of 250" in issues[0]["description"]
