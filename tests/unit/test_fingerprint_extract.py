"""Extraction on real tool output: the kept fixtures, and live runs where the tool exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.extract import extract
from pipeline.fingerprint.hashing import ALGORITHM_VERSION

FIXTURES = Path(__file__).parent / "snapshots" / ALGORITHM_VERSION


def _fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text(encoding="utf-8")


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def test_python_missing_module_gives_module_and_package() -> None:
    fp = fingerprint_text(_fixture("python_module_not_found"))
    assert fp.extraction is not None and fp.extraction.kind == "python"
    assert fp.extraction.error_type == "ModuleNotFoundError"
    assert fp.params["module"] == fp.params["package"] == "heal_missing_dependency_xyz"
    assert fp.template == "ModuleNotFoundError: No module named <*>"


def test_python_chained_exception_keeps_the_cause() -> None:
    found = extract(_fixture("python_chained"))
    assert found.error_type == "RuntimeError"
    assert found.chain[0][0] == "json.decoder.JSONDecodeError"
    # stdlib frames are not project frames
    assert [f.function for f in found.project_frames()] == ["<module>", "load"]


def test_java_root_cause_is_the_last_caused_by() -> None:
    found = extract(_fixture("java_caused_by"))
    assert found.kind == "java"
    assert found.error_type == "java.lang.NumberFormatException"
    assert found.chain == (("java.lang.IllegalStateException", "bad config value"),)
    assert [f.function for f in found.project_frames()] == ["Main.parse"]


def test_node_and_go_and_shell_and_logs() -> None:
    node = fingerprint_text(_fixture("node_cannot_find_module"))
    assert node.params["package"] == "express"
    go = extract(_fixture("go_panic_index"))
    assert (go.kind, go.error_type) == ("go", "runtime error")
    # outermost to innermost (fp-v4): the failing function last, its caller main before it
    assert [f.function for f in go.project_frames()][-2:] == ["main.main", "main.pick"]
    shell = fingerprint_text(_fixture("shell_command_not_found"))
    assert shell.params["command"] == "nosuchcommand_heal"
    log = fingerprint_text(_fixture("log_error_line"))
    assert log.extraction is not None and log.extraction.kind == "log"
    assert log.extraction.message.startswith("connection to db-7.internal:5432 refused")
    assert (log.params["host"], log.params["port"]) == ("db-7.internal", "5432")


def test_live_python_traceback(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "boom.py").write_text("def f():\n    return 1 / 0\n\nf()\n")
    text = _run([sys.executable, "app/boom.py"], tmp_path)
    fp = fingerprint_text(text, repo=str(tmp_path))
    assert fp.extraction is not None
    assert fp.extraction.error_type == "ZeroDivisionError"
    assert fp.params["file"] == "app/boom.py"


def test_live_pytest_failure(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert {'a': 1} == {'a': 2}\n")
    text = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_x.py"],
                tmp_path)
    found = extract(text)
    assert (found.kind, found.error_type) == ("pytest", "AssertionError")
    assert any(f.function == "test_x" for f in found.frames)


def test_live_ruff_and_gcc(tmp_path: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    (tmp_path / "m.py").write_text("import os\n")
    found = extract(_run([ruff, "check", "--no-cache", "--output-format", "concise", "m.py"],
                         tmp_path))
    assert (found.kind, found.error_type, found.tool) == ("compiler", "F401", "ruff")
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "m.c").write_text("int main(void) { undeclared_thing = 1; return 0; }\n")
    found = extract(_run(["gcc", "-fdiagnostics-color=never", "-c", "m.c", "-o", "/dev/null"],
                         tmp_path))
    assert (found.kind, found.error_type, found.tool) == ("compiler", "error", "cc")
    assert "undeclared" in found.message


def test_unrecognised_text_falls_back_to_its_last_line() -> None:
    found = extract("some output\n\nthe end of it\n")
    assert (found.kind, found.message) == ("text", "the end of it")
    assert extract("").message == ""
