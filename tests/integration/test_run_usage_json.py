"""`heal run --json`/`--json-file` writes the refusal as its decision JSON when argparse itself
refuses the arguments (an unknown `--mode`, an option given twice, an unknown option), as it
does for the refusals heal makes (before: no JSON at all, and a CI step that always uploads
decision.json found none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAL = str(Path(sys.executable).parent / "heal")


def _heal(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEAL_HOME": str(tmp_path / "home")}
    return subprocess.run([HEAL, "run", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)


def test_argument_refusals_are_written_as_the_decision_json(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = _heal(tmp_path, "--json", "--mode", "yolo", "--", "touch", str(marker))
    assert done.returncode == 2 and "invalid choice: 'yolo'" in done.stderr, done.stderr
    data = json.loads(done.stderr.strip().splitlines()[-1])
    assert data["decision"] == "refused" and data["exit_status"] == 2
    assert "--mode" in data["detail"] and data["command"] == ["touch", str(marker)]
    out = tmp_path / "j.json"
    for args in (["--json-file", str(out), "--timeout", "5", "--timeout", "6"],
                 [f"--json-file={out}", "--no-such-option"]):
        out.unlink(missing_ok=True)
        done = _heal(tmp_path, *args, "--", "touch", str(marker))
        assert done.returncode == 2, done.stderr
        data = json.loads(out.read_text())
        assert data["decision"] == "refused" and data["exit_status"] == 2, data
        assert data["detail"] in done.stderr
    assert not marker.exists()  # refused before the command ran
    # --json with --json-file is what was refused: neither is written
    done = _heal(tmp_path, "--json", "--json-file", str(out), "--", "true")
    assert done.returncode == 2 and "not allowed with" in done.stderr
    assert '"decision"' not in done.stderr
