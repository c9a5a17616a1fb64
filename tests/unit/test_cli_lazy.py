"""`heal COMMAND` imports only that command's module; `heal --help` still lists them all."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pipeline.cli

COMMANDS = sorted(m.name for m in pkgutil.iter_modules(pipeline.cli.__path__)
                  if not m.name.startswith("_"))


def _run(args: list[str], tmp_path: Path) -> tuple[str, set[str]]:
    code = ("import sys, json\nfrom pipeline.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print()\nprint(json.dumps(sorted(sys.modules)))")
    env = {**os.environ, "HEAL_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    head, _, last = out.stdout.rstrip().rpartition("\n")
    return head, {m for m in json.loads(last) if m.startswith("pipeline.cli.")}


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    # When `heal run -- true` runs
    _, commands = _run(["run", "--", "true"], tmp_path)
    # Then no other command's module (and its dependencies) was imported
    assert commands == {"pipeline.cli.run"}


def test_help_lists_every_command(tmp_path: Path) -> None:
    output, commands = _run(["--help"], tmp_path)
    assert commands == {f"pipeline.cli.{name}" for name in COMMANDS}
    for command in ("run", "diagnose", "import", "worker", "status"):
        assert f"    {command}" in output


def test_a_command_named_unlike_its_module_still_parses(tmp_path: Path) -> None:
    # `heal import` lives in importpack.py: the parser falls back to every command
    output, _ = _run(["import", "--help"], tmp_path)
    assert output.startswith("usage: heal import")
