"""`heal diagnose --offline --no-semantic --json` on texts, in a subprocess as a user runs it
(fingerprint tests through the real command): one interpreter for a test's texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from pipeline.cli import main; sys.exit(main())"


#: one interpreter runs `heal diagnose` on each file in turn (``main`` with the command's own
#: argv, its output captured per call): the command's path, without an interpreter start and
#: the CLI's imports per text
BATCH = """
import contextlib, io, json, sys
from pipeline.cli import main
done = {}
for name, path in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["diagnose", "--offline", "--no-semantic", "--json", path])
    done[name] = [status, out.getvalue(), err.getvalue()]
sys.stdout.write(json.dumps(done))
"""


def diagnose_texts(tmp_path: Path, texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each text's whole `heal diagnose --json` answer, by the text's name."""
    files = []
    for i, (name, text) in enumerate(texts.items()):
        src = tmp_path / f"diagnose-{i}.txt"
        src.write_text(text, encoding="utf-8")
        files.append((name, str(src)))
    done = subprocess.run(
        [sys.executable, "-c", BATCH, json.dumps(files)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"HEAL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = {}
    for name, (status, stdout, stderr) in json.loads(done.stdout).items():
        assert status == 0, stderr
        out[name] = json.loads(stdout)
    return out


def diagnose_fingerprints(tmp_path: Path, texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each text's `fingerprint` object from `heal diagnose --json`, by the text's name."""
    return {name: found["fingerprint"] for name, found in diagnose_texts(tmp_path, texts).items()}
