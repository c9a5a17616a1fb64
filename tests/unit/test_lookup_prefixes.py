"""Detection rules keep working, parameters included, when CI or a log collector prefixes
every line (timestamps, ``[build]``, ``E   ``, ``##[error]``, ANSI colours, ``remote: ``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.lookup.catalog import Catalog, load_catalog
from pipeline.lookup.prefixes import strip_prefixes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
CASES = sorted(p for p in FIXTURES.glob("*/*.txt") if not p.parent.name.startswith("_"))
PREFIXES = {
    "iso": "2024-05-01T10:00:00.1234567Z ",
    "syslog": "May  1 10:00:00 ",
    "time": "[10:00:00] ",
    "tag": "[build] ",
    "gha": "##[error]",
    "remote": "remote: ",
    "pytest": "E   ",
    "ansi": "\x1b[31;1m",
    "compose": "web_1  | ",
    "stacked": "2024-05-01 10:00:00,123 [app] ",
}


def prefixed(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else line for line in text.split("\n"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_every_rule_keeps_pattern_and_params_under_a_prefix(catalog: Catalog, name: str) -> None:
    changed = []
    for path in CASES:
        text = path.read_text(encoding="utf-8", errors="replace")
        bare = catalog.detect(text)
        assert bare is not None, path
        found = catalog.detect(prefixed(text, PREFIXES[name]))
        got = (found[0].id, found[1]) if found else None
        if got != (bare[0].id, bare[1]):
            changed.append((path.parent.name, path.name, got))
    assert changed == []


def test_git_index_lock_keeps_lock_path_after_a_timestamp(catalog: Catalog) -> None:
    text = ("2024-05-01T10:00:00Z fatal: Unable to create '/srv/co/.git/index.lock': "
            "File exists.\n")
    found = catalog.detect(text)
    assert found is not None
    pattern, params = found
    assert pattern.id == "git.index_lock" and params["lock_path"] == "/srv/co/.git/index.lock"


def test_strip_prefixes_leaves_tool_output_alone() -> None:
    text = "ERROR: No matching distribution found for x\n[*] 1 fixable with the `--fix` option."
    assert strip_prefixes(text) == text
    assert strip_prefixes("##[error]fatal: x") == "fatal: x"


def test_strip_prefixes_is_linear_on_hostile_input() -> None:
    start = time.perf_counter()
    for text in ("[a" * 32768, "E " * 32768, "a |" * 21000, "2024-05-01T" * 6000,
                 "\x1b[" * 30000, ("[a] " * 6) * 2000):
        strip_prefixes(text)
    assert time.perf_counter() - start < 2.0
