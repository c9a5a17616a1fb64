"""The scenario corpus: each entry builds a real git repository with one real breakage.

``healable`` scenarios have a SAFE, mechanical fix that heal should apply and verify under
``heal run --mode auto-safe``; the others must be left unchanged (escalated, refused, or a
fix that fails verification and is rolled back). Build one with ``build(name, directory)``
or all of them with ``python -m tests.scenarios.catalog DIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UNITTEST = ("python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q")

HEAL_TOML = """\
mode = "auto-safe"
[[verify.checks]]
name = "tests"
argv = ["python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q"]
timeout_s = 60
"""

BASE: dict[str, str] = {
    "heal.toml": HEAL_TOML,
    "pyproject.toml": '[project]\nname = "calc"\nversion = "0"\n\n[tool.ruff]\nline-length = 100\n',
    "calc/__init__.py": "",
    "calc/core.py": '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n',
    "tests/__init__.py": "",
    "tests/test_core.py": (
        "import unittest\n\nfrom calc.core import add\n\n\n"
        "class CoreTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n        self.assertEqual(add(2, 3), 5)\n"),
}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def base_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root, BASE)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "dev")
    git(root, "config", "user.email", "dev@example.com")
    commit(root, "calc: initial")
    return root


# --- healable -----------------------------------------------------------------------------

def unformatted_module(root: Path) -> None:
    write(root, {"calc/more.py": "def mul(a,b):\n    return a*b\n"})
    commit(root, "more (unformatted)")


def unformatted_nested(root: Path) -> None:
    write(root, {"calc/deep/__init__.py": "", "calc/deep/x.py": "X = {'a':1,\n'b':2}\n",
                 "calc/deep/y.py": "def f( x ):\n  return x\n"})
    commit(root, "deep (unformatted)")


def unused_import(root: Path) -> None:
    write(root, {"calc/util.py": '"""Util."""\n\nimport os\n\n\ndef one() -> int:\n'
                                 "    return 1\n"})
    commit(root, "util (unused import)")


def several_fixable_lints(root: Path) -> None:
    write(root, {"calc/fmt.py": '"""Fmt."""\n\nimport sys\nimport json\n\n\n'
                                'def label() -> str:\n    return f"label"\n'})
    commit(root, "fmt (fixable lints)")


def script_lost_exec_bit(root: Path) -> None:
    write(root, {"ci.sh": "#!/bin/sh\nset -e\n./tools/gen.sh\n",
                 "tools/gen.sh": "#!/bin/sh\necho generated\n"})
    (root / "ci.sh").chmod(0o755)
    commit(root, "ci: gen step (gen.sh not executable)")


def bash_script_lost_exec_bit(root: Path) -> None:
    write(root, {"build.sh": "#!/bin/bash\nset -e\n./scripts/compile.sh\n",
                 "scripts/compile.sh": "#!/bin/sh\necho compiled\n"})
    commit(root, "build: compile step (compile.sh not executable)")


def unsorted_imports(root: Path) -> None:
    write(root, {"calc/io.py": '"""IO."""\n\nimport sys\nimport json\n\n\n'
                               "def dump() -> None:\n    json.dump({}, sys.stdout)\n"})
    commit(root, "io (unsorted imports)")


def trailing_whitespace(root: Path) -> None:
    # the project opts in to W291 in its own ruff configuration, as real projects do
    pyproject = BASE["pyproject.toml"] + '\n[tool.ruff.lint]\nextend-select = ["W291"]\n'
    write(root, {"pyproject.toml": pyproject,
                 "calc/notes.py": '"""Notes."""\n\nNOTE = "keep"   \n'})
    commit(root, "notes (trailing whitespace)")


# --- not healable (must be left unchanged) -------------------------------------------------

def failing_assertion(root: Path) -> None:
    write(root, {"calc/core.py": '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int:\n'
                                "    return a - b\n"})
    commit(root, "core: refactor (wrong operator)")


def syntax_error(root: Path) -> None:
    write(root, {"calc/core.py": '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int\n'
                                "    return a + b\n"})
    commit(root, "core: lost a colon")


def side_effect_import(root: Path) -> None:
    write(root, {"calc/registry.py": "OPS: dict[str, object] = {}\n",
                 "calc/ops.py": 'from calc.registry import OPS\n\nOPS["add"] = 1\n',
                 "calc/api.py": "import calc.ops\nfrom calc.registry import OPS\n\n\n"
                                "def names() -> list[str]:\n    return sorted(OPS)\n",
                 "tests/test_api.py": "import unittest\n\nfrom calc.api import names\n\n\n"
                                      "class ApiTest(unittest.TestCase):\n"
                                      "    def test_names(self) -> None:\n"
                                      '        self.assertEqual(names(), ["add"])\n'})
    commit(root, "api: ops register by import")


def order_dependent_imports(root: Path) -> None:
    write(root, {"calc/setup_env.py": 'import os\n\nos.environ["CALC_MODE"] = "fast"\n',
                 "calc/settings.py": 'import os\n\nMODE = os.environ.get("CALC_MODE", "slow")\n',
                 "calc/app.py": "import calc.setup_env  # noqa: F401\n"
                                "import calc.settings\n\n\n"
                                "def mode() -> str:\n    return calc.settings.MODE\n",
                 "tests/test_app.py": "import unittest\n\nfrom calc.app import mode\n\n\n"
                                      "class AppTest(unittest.TestCase):\n"
                                      "    def test_mode(self) -> None:\n"
                                      '        self.assertEqual(mode(), "fast")\n'})
    commit(root, "app: environment set up before settings load")


def missing_module(root: Path) -> None:
    write(root, {"calc/net.py": "import requests_that_do_not_exist_xyz\n",
                 "tests/test_net.py": "import calc.net  # noqa: F401\n"})
    commit(root, "net: new dependency not installed")


def unknown_failure(root: Path) -> None:
    write(root, {"check.sh": "#!/bin/sh\necho 'quota check: 97% of the monthly budget used'\n"
                             "exit 3\n"})
    commit(root, "quota check")


def type_error(root: Path) -> None:
    write(root, {"calc/core.py": '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int:\n'
                                '    return a + str(b)  # type: ignore[operator]\n'})
    commit(root, "core: stringify")


def stale_sourceless_pyc(root: Path) -> None:
    """``report.py`` moved to ``tools/``; a committed sourceless ``report.pyc`` from an old
    Python (magic number of 2.7) stays at the root and shadows it on ``sys.path``."""
    write(root, {
        "tools/report.py": '"""Reports."""\n\n\ndef title() -> str:\n    return "calc"\n',
        "tests/test_report.py": (
            "import os\nimport sys\nimport unittest\n\n"
            "sys.path.append(os.path.join(os.path.dirname(__file__), '..', 'tools'))\n"
            "import report  # noqa: E402\n\n\n"
            "class ReportTest(unittest.TestCase):\n"
            "    def test_title(self) -> None:\n"
            "        self.assertEqual(report.title(), 'calc')\n"),
    })
    (root / "report.pyc").write_bytes(b"\x03\xf3\r\n" + b"\x00" * 4 + b"c\x00\x00\x00\x00")
    commit(root, "move report.py to tools/")


def rust_type_error(root: Path) -> None:
    """A Rust crate whose own code does not compile: a compile error, never a mechanical fix."""
    write(root, {
        "rs/Cargo.toml": '[package]\nname = "rs"\nversion = "0.1.0"\nedition = "2021"\n',
        "rs/.gitignore": "target/\nCargo.lock\n",
        "rs/src/main.rs": 'fn main() {\n    let x: i32 = "five";\n    println!("{}", x);\n}\n',
    })
    commit(root, "rs: a number")


@dataclass(frozen=True)
class Scenario:
    name: str
    healable: bool
    command: tuple[str, ...]
    breaks: Callable[[Path], None]


SCENARIOS: list[Scenario] = [
    Scenario("unformatted-module", True, ("ruff", "format", "--check", "."), unformatted_module),
    Scenario("unformatted-nested", True, ("ruff", "format", "--check", "."), unformatted_nested),
    Scenario("unused-import", True, ("ruff", "check", "."), unused_import),
    Scenario("several-fixable-lints", True, ("ruff", "check", "."), several_fixable_lints),
    Scenario("script-lost-exec-bit", True, ("sh", "ci.sh"), script_lost_exec_bit),
    Scenario("bash-script-lost-exec-bit", True, ("bash", "build.sh"),
             bash_script_lost_exec_bit),
    Scenario("unsorted-imports", True, ("ruff", "check", "--select", "I", "."),
             unsorted_imports),
    Scenario("trailing-whitespace", True, ("ruff", "check", "."), trailing_whitespace),
    Scenario("failing-assertion", False, UNITTEST, failing_assertion),
    Scenario("syntax-error", False, UNITTEST, syntax_error),
    Scenario("side-effect-import", False, ("ruff", "check", "."), side_effect_import),
    Scenario("order-dependent-imports", False, ("ruff", "check", "--select", "I", "."),
             order_dependent_imports),
    Scenario("missing-module", False, UNITTEST, missing_module),
    Scenario("unknown-failure", False, ("sh", "check.sh"), unknown_failure),
    Scenario("type-error", False, UNITTEST, type_error),
    Scenario("stale-sourceless-pyc", True, UNITTEST, stale_sourceless_pyc),
    Scenario("rust-type-error", False,
             ("cargo", "build", "--offline", "-q", "--manifest-path", "rs/Cargo.toml"),
             rust_type_error),
]

BY_NAME = {s.name: s for s in SCENARIOS}


def build(name: str, directory: Path) -> tuple[Scenario, Path]:
    """Create the scenario's repository under ``directory/name``; returns it and its root."""
    scenario = BY_NAME[name]
    root = base_repo(directory / name)
    scenario.breaks(root)
    time.sleep(0)  # builders are synchronous; nothing runs in the background
    return scenario, root


def tree_state(root: Path) -> str:
    """HEAD plus the status of the work tree: equal states mean nothing was changed."""
    return git(root, "rev-parse", "HEAD") + "\n" + git(root, "status", "--porcelain")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "scenarios")
    for s in SCENARIOS:
        build(s.name, out)
        print(f"{s.name:<28} {'healable' if s.healable else 'not healable':<13} "
              f"{' '.join(s.command)}")
