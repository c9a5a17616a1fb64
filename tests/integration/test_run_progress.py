"""``heal run`` says what it is doing while the operator waits: one line per phase on
standard error, on a terminal or in CI logs only, never inside the command's own output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
FAILING = ["sh", "-c", "echo OUT; echo \"ModuleNotFoundError: No module named 'yaml'\" >&2; "
                       "exit 3"]


def heal_run(tmp_path: Path, heal_env: dict[str, str], **extra: str
             ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HEAL_PROGRESS")}
    env.update(heal_env, **extra)
    return subprocess.run([*HEAL, "run", "--mode", "suggest", "--", *FAILING], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)


def phases(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.endswith("…")]


def test_heal_run_prints_one_line_per_phase_in_ci_logs(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a failing command run under heal in a CI job (CI=true, output not a terminal)
    done = heal_run(tmp_path, heal_env, CI="true")
    # Then the command's status and its own standard output are untouched
    assert done.returncode == 3
    assert done.stdout == "OUT\n"
    # And standard error names each phase once, in pipeline order, after the command's output
    lines = phases(done.stderr)
    assert "heal: fingerprinting the error…" in lines
    assert "heal: looking up…" in lines
    assert len(lines) == len(set(lines))
    assert lines.index("heal: waiting for the pipeline's decision…") < lines.index(
        "heal: fingerprinting the error…") < lines.index("heal: looking up…")
    assert done.stderr.index("ModuleNotFoundError") < done.stderr.index("heal: looking up…")


def test_heal_run_prints_no_phase_lines_into_a_pipe_outside_ci(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    done = heal_run(tmp_path, heal_env)
    assert done.returncode == 3
    assert done.stdout == "OUT\n"
    assert phases(done.stderr) == []
    assert "heal: command failed with status 3" in done.stderr
