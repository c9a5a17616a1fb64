"""The arithmetic of bench/mutation.py: what counts as killed, and accepted survivors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_mutation", ROOT / "bench" / "mutation.py")
assert _spec and _spec.loader
mutation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutation  # dataclasses look their module up there
_spec.loader.exec_module(mutation)


def _tally(**statuses: list[str]) -> object:
    tally = mutation.Tally()
    for status, names in statuses.items():
        for name in names:
            tally.add(name, status.replace("_", " "))
    return tally


def test_timeouts_count_as_killed_and_accepted_survivors_leave_the_denominator() -> None:
    tally = _tally(killed=["a", "b", "c"], timeout=["d"], survived=["e", "f"], no_tests=["g"],
                   not_checked=["h"])
    pct, killed, counted, unaccepted = mutation.score(tally, {"e": "equivalent: same output"})
    assert (killed, counted) == (4, 6)
    assert unaccepted == ["f", "g"]
    assert pct == pytest.approx(100 * 4 / 6)


def test_an_accepted_survivor_needs_a_reason(tmp_path: Path) -> None:
    listed = tmp_path / "survivors.txt"
    listed.write_text("# comment\nx.y__mutmut_1  # returns the same value either way\n")
    assert mutation.accepted_survivors(listed) == {
        "x.y__mutmut_1": "returns the same value either way"}
    listed.write_text("x.y__mutmut_2\n")
    with pytest.raises(SystemExit, match="needs '# reason'"):
        mutation.accepted_survivors(listed)


def test_the_shipped_survivor_list_parses() -> None:
    for name, reason in mutation.accepted_survivors().items():
        assert "__mutmut_" in name and reason
