"""Values in heal's messages are the user's own text (QA s18b #8): a number given twice on the
command line is quoted as typed (``"5", then "6"``, not ``5.0, then 6.0``), a heal.toml value
as TOML spells it (``1e308``, not ``1e+308``) and a rule's limit as the README writes it
(``<= 1000000``, not ``<= 1e+06``). Through the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


def _heal(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(home), PYTHONPATH=str(ROOT),
               HEAL_CONFIG=os.environ.get("HEAL_CONFIG", ""))
    return subprocess.run([*HEAL, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_option_given_twice_quotes_both_values_as_typed(tmp_path: Path) -> None:
    done = _heal(tmp_path, tmp_path / "home", "run", "--timeout", "5", "--timeout", "6.50",
                 "--", "true")
    assert done.returncode == 2
    assert '--timeout given twice ("5", then "6.50")' in done.stderr
    # (a value argparse cannot convert is still named by its type)
    bad = _heal(tmp_path, tmp_path / "home", "run", "--timeout", "abc", "--", "true")
    assert bad.returncode == 2 and "invalid float value: 'abc'" in bad.stderr


def test_a_heal_toml_value_and_its_limit_are_spelled_as_written(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "heal.toml").write_text("[limits]\nmax_diff_lines = 1e308\n")
    done = _heal(repo, tmp_path / "home", "policy")
    assert done.returncode == 2
    assert ("limits.max_diff_lines = 1e308: must be a positive integer <= 1000000"
            in done.stderr), done.stderr
