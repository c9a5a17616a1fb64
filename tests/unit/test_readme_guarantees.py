"""The README's Guarantees table names only tests that exist.

Every row's second column is ``tests/path.py::test_name`` (optionally ``Class::test``); a row
naming a missing file or function fails here, so a promise cannot outlive its proof.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\|(?P<claim>[^|]+)\|\s*(?P<tests>.+?)\s*\|\s*$")
_REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


def _guarantee_rows() -> list[tuple[str, list[tuple[str, str]]]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Guarantees\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = _ROW.match(line)
        if not m or set(m["claim"].strip()) <= {"-"} or m["claim"].strip() == "guarantee":
            continue
        rows.append((m["claim"].strip(), _REF.findall(m["tests"])))
    return rows


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def test_the_table_is_there_and_every_row_names_a_test() -> None:
    rows = _guarantee_rows()
    assert len(rows) >= 5
    unproved = [claim for claim, refs in rows if not refs]
    assert not unproved, f"rows without a test reference: {unproved}"


def test_every_named_test_exists() -> None:
    missing = []
    for _claim, refs in _guarantee_rows():
        for rel, name in refs:
            path = ROOT / rel
            if not path.is_file() or name not in _defined_tests(path):
                missing.append(f"{rel}::{name}")
    assert not missing, f"the README's Guarantees table names tests that do not exist: {missing}"
