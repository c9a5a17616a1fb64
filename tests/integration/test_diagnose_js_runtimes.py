"""QA s16c item 13 (part 2): syntax errors of Deno, Bun, ts-node (TSError, ``error TS1005``)
and babel-jest, captured from the real tools (tests/fixtures/errors, see CAPTURED.md), reach
``js.syntax_error`` through ``heal diagnose --json`` (a subprocess), with file and line; Bun's
missing bare package gets ``bun install``, not npm's; what only looks like them does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"

#: the same program under Bun and Deno, captured with the fixtures: a thrown Error prints
#: Bun's code frame with a 6-space "at" (its parser's has 4) and Deno's "error: Uncaught"
BUN_THROW = """1 | throw new Error("Unexpected token in config");
              ^
error: Unexpected token in config
      at /tmp/fixC7s/neg/t.js:1:11

Bun v1.4.5 (Linux x64)
"""
DENO_THROW = """error: Uncaught (in promise) Error: Unexpected token in config
throw new Error("Unexpected token in config");
      ^
    at file:///tmp/fixC7s/neg/t.ts:1:7
"""


def diagnose(text: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "out.txt"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "diagnose", "--json", "--offline", str(path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HEAL_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize(("fixture", "where"), [
    ("deno_expression.txt", "main.ts line 3: Expression expected"),
    ("bun_unexpected.txt", "index.js line 3: Unexpected ;"),
    ("ts_node_tserror.txt", "index.ts line 4: Declaration or statement expected."),
    ("ts_node_ts1005.txt", "b.ts line 6: ',' expected."),
    ("babel_jest.txt", "sum.test.js line 4: Unexpected token, expected \",\""),
])
def test_another_runtime_s_syntax_error_is_a_javascript_syntax_error(
        tmp_path: Path, fixture: str, where: str) -> None:
    data = diagnose((FIXTURES / "js.syntax_error" / fixture).read_text(), tmp_path)
    assert data["match"]["pattern_id"] == "js.syntax_error", data["reason"]
    assert data["match"]["tier"] == 1
    message = data["fix"]["rendered"]["message"]
    assert where in message and "Python" not in message, message
    assert data["would_apply"] is False


@pytest.mark.parametrize("fixture", ["esm_import.txt", "require.txt"])
def test_bun_s_missing_package_suggests_bun_install(tmp_path: Path, fixture: str) -> None:
    data = diagnose((FIXTURES / "bun.modules_missing" / fixture).read_text(), tmp_path)
    assert data["match"]["pattern_id"] == "bun.modules_missing", data["reason"]
    assert data["fix"]["rendered"]["argv"] == ["bun", "install"]
    assert data["params"]["module"] == "left-padzz"


@pytest.mark.parametrize("text", [BUN_THROW, DENO_THROW], ids=["bun", "deno"])
def test_a_thrown_error_is_not_a_syntax_error(tmp_path: Path, text: str) -> None:
    data = diagnose(text, tmp_path)
    assert (data["match"] or {}).get("pattern_id") not in ("js.syntax_error",
                                                           "python.syntax_error"), data
