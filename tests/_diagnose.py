"""`heal diagnose --offline --no-semantic --json` on texts, each in a subprocess as a user
runs it (fingerprint tests through the real command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from pipeline.cli import main; sys.exit(main())"


def diagnose_texts(tmp_path: Path, texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each text's whole `heal diagnose --json` answer, by the text's name."""
    out = {}
    for name, text in texts.items():
        src = tmp_path / f"{name}.txt"
        src.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-c", CLI, "diagnose", "--offline", "--no-semantic", "--json",
             str(src)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={"HEAL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        out[name] = json.loads(done.stdout)
    return out


def diagnose_fingerprints(tmp_path: Path, texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each text's `fingerprint` object from `heal diagnose --json`, by the text's name."""
    return {name: found["fingerprint"] for name, found in diagnose_texts(tmp_path, texts).items()}
