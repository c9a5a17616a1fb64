"""`heal run` from a subdirectory of the repository: a script named ``../app.py`` is the
same file as ``app.py`` from the root, so it gets the same fingerprint and the same decision
(real CLI, real engines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main


def _run(cwd: Path, script: str, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.chdir(cwd)
    assert main(["run", "--mode", "suggest", "--timeout", "60", "--json", "--",
                 sys.executable, script]) == 1
    # (--json writes the decision on stderr, the command's output keeps stdout)
    decision: dict[str, object] = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    return decision


def test_a_script_named_with_dot_dot_from_a_subdirectory_is_the_root_s_file(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = (tmp_path / "repo").resolve()
    (root / "sub").mkdir(parents=True)
    (root / "app.py").write_text("import yaml_missing_module_for_heal\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    from_sub = _run(root / "sub", "../app.py", capsys, monkeypatch)
    from_root = _run(root, "app.py", capsys, monkeypatch)
    # before: the frame was 'sub/../app.py', and pre-flight refused the fix for its '..'
    assert from_sub["error"] == from_root["error"]
    assert isinstance(from_sub["error"], dict) and from_sub["error"]["file"] == "app.py"
    assert from_sub["fingerprint"] == from_root["fingerprint"]
    assert from_sub["decision"] == "suggested", from_sub["detail"]
