"""The demo's sample repository: a tiny Python project with a policy, tests and a CI script,
plus the breakages the demo introduces one by one (each a real change a developer makes).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.gitops import run_git

#: the check the sample's heal.toml declares; the demo, being the operator, allows it
TESTS_ARGV = ("python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q")

HEAL_TOML = """\
# heal policy of the demo repository
mode = "auto-safe"

[verify]
include_failing = true
[[verify.checks]]
name = "tests"
argv = ["python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q"]
timeout_s = 60

[protect]
paths = ["heal.toml"]

[limits]
max_diff_lines = 200
max_files = 10
"""

FILES: dict[str, str] = {
    "heal.toml": HEAL_TOML,
    "pyproject.toml": '[project]\nname = "shop"\nversion = "0.1.0"\n\n'
                      '[tool.ruff]\nline-length = 100\n',
    "shop/__init__.py": "",
    "shop/prices.py": (
        '"""Prices in cents."""\n\n\n'
        "def parse_price(text: str) -> int:\n"
        '    units, _, cents = text.partition(",")\n'
        '    return int(units) * 100 + int(cents or "0")\n'
    ),
    "shop/plugins.py": (
        '"""Export plugins register themselves when imported."""\n\n'
        "from shop.registry import REGISTRY\n\n"
        'REGISTRY["csv"] = ",".join\n'
    ),
    "shop/registry.py": '"""Registry of export plugins."""\n\nREGISTRY: dict[str, object] = {}\n',
    "shop/export.py": (
        '"""Exports."""\n\n'
        "from shop.registry import REGISTRY\n\n\n"
        "def exporters() -> list[str]:\n"
        "    return sorted(REGISTRY)\n"
    ),
    "tests/__init__.py": "",
    "tests/test_shop.py": (
        "import unittest\n\n"
        "from shop.prices import parse_price\n\n\n"
        "class PriceTest(unittest.TestCase):\n"
        "    def test_parse(self) -> None:\n"
        '        self.assertEqual(parse_price("12,50"), 1250)\n'
    ),
    "scripts/ci.sh": "#!/bin/sh\nset -e\n./scripts/build.sh\n",
    "scripts/build.sh": "#!/bin/sh\necho build ok\n",
    "notes.txt": "release notes\n",
}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com"}
    proc: subprocess.CompletedProcess[str] = run_git(args, root, env=env, capture_output=True,
                                                     text=True, check=True)
    return proc.stdout.strip()


def create_repo(root: Path) -> Path:
    """A clean repository whose checks all pass."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "scripts/ci.sh").chmod(0o755)
    (root / "scripts/build.sh").chmod(0o755)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "demo")
    git(root, "config", "user.email", "demo@example.com")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "shop: initial version")
    return root


@dataclass(frozen=True)
class Breakage:
    """One real breakage: ``introduce`` changes the repository, ``command`` then fails."""

    name: str
    what: str
    command: tuple[str, ...]
    expect: str  # fixed | rolled back | escalated | suggested


def _commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def break_formatting(root: Path) -> None:
    (root / "shop/discount.py").write_text(
        '"""Discounts."""\n\n\ndef apply_discount( price:int,percent:int )->int:\n'
        "    return price-price*percent//100\n")
    _commit(root, "shop: discounts (not formatted)")


def break_unused_import(root: Path) -> None:
    (root / "shop/tax.py").write_text(
        '"""Taxes."""\n\nimport os\n\n\ndef with_vat(price: int) -> int:\n'
        "    return price * 121 // 100\n")
    _commit(root, "shop: VAT helper (leftover import)")


def break_exec_bit(root: Path) -> None:
    git(root, "update-index", "--chmod=-x", "scripts/build.sh")
    (root / "scripts/build.sh").chmod(0o644)
    _commit(root, "scripts: build.sh lost its exec bit")


def break_stale_lock(root: Path) -> None:
    (root / "notes.txt").write_text("release notes\n- discounts\n")
    lock = root / ".git/index.lock"
    lock.write_text("")
    old = time.time() - 600  # a git process that crashed ten minutes ago
    os.utime(lock, (old, old))


def break_side_effect_import(root: Path) -> None:
    (root / "shop/export.py").write_text(
        '"""Exports."""\n\n'
        "import shop.plugins\n"
        "from shop.registry import REGISTRY\n\n\n"
        "def exporters() -> list[str]:\n"
        "    return sorted(REGISTRY)\n")
    (root / "tests/test_export.py").write_text(
        "import unittest\n\n"
        "from shop.export import exporters\n\n\n"
        "class ExportTest(unittest.TestCase):\n"
        "    def test_csv_registered(self) -> None:\n"
        '        self.assertIn("csv", exporters())\n')
    _commit(root, "export: register plugins by importing them")


def break_assertion(root: Path) -> None:
    (root / "shop/prices.py").write_text(
        '"""Prices in cents."""\n\n\n'
        "def parse_price(text: str) -> int:\n"
        '    units, _, cents = text.partition(".")\n'
        '    return int(units.replace(",", "")) * 100 + int(cents or "0")\n')
    _commit(root, "prices: accept dots (breaks comma prices)")


#: in the order the demo shows them
BREAKAGES: list[tuple[Breakage, object]] = [
    (Breakage("formatting", "a new module was committed without running the formatter",
              ("ruff", "format", "--check", "."), "fixed"), break_formatting),
    (Breakage("unused import", "a leftover `import os`",
              ("ruff", "check", "."), "fixed"), break_unused_import),
    (Breakage("missing exec bit", "scripts/build.sh lost its exec bit; ci.sh calls it",
              ("sh", "scripts/ci.sh"), "fixed"), break_exec_bit),
    (Breakage("stale index.lock", "a crashed git left .git/index.lock behind",
              ("git", "add", "notes.txt"), "suggested"), break_stale_lock),
    (Breakage("side-effect import", "`import shop.plugins` looks unused but registers the "
              "csv exporter", ("ruff", "check", "."), "rolled back"), break_side_effect_import),
    (Breakage("real bug", "parse_price now misreads comma prices: a failing assertion",
              ("python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q"),
              "escalated"), break_assertion),
]
