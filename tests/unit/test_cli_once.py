"""An option taking one value, given twice, is bad usage for every heal command (README
"Exit status"): the second value is never silently the one used."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_no_command_keeps_a_plain_store_option() -> None:
    plain = [(p.prog, a.option_strings) for p in _parsers(build_parser(None))
             for a in p._actions if type(a) is argparse._StoreAction and a.option_strings]
    assert plain == []


@pytest.mark.parametrize("argv", [
    ["report", "--since", "7d", "--since", "1d"],
    ["metrics", "--window", "24h", "--window", "7d"],
    ["run", "--timeout", "5", "--timeout", "9", "--", "true"],
])
def test_a_repeated_option_exits_2_naming_both_values(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert f"{argv[1]} given twice" in capsys.readouterr().err
