"""Every ``heal ... --help`` reads as text for a terminal (QA s18b #11): no reST markup of the
docstrings it reuses, a description paragraph for every command and verb, and a help text
for every argument and option. Through the CLI in subprocesses."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]
_MARKUP = re.compile(r"``|:(?:func|mod|class|meth|data|attr):`")


def _commands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    found: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(words: list[str], parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(([*words, name], sub))
                    walk([*words, name], sub)
    walk([], build_parser(None))
    return found


def test_every_help_has_a_description_and_no_markup(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), COLUMNS="100")
    bad: list[str] = []
    for words, _ in _commands():
        done = subprocess.run([*HEAL, *words, "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (words, done.stderr)
        if _MARKUP.search(done.stdout):
            bad.append(f"{' '.join(words)}: markup {_MARKUP.search(done.stdout)[0]!r}")
        blocks = done.stdout.split("\n\n")
        if len(blocks) < 2 or blocks[1].startswith(("positional arguments:", "options:")):
            bad.append(f"{' '.join(words)}: no description")
    assert bad == []


def test_every_argument_and_option_has_help() -> None:
    missing = [f"heal {' '.join(words)} {action.option_strings or action.metavar or action.dest}"
               for words, parser in _commands() for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
               and not action.help]
    assert missing == []
