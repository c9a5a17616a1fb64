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


def test_each_group_takes_the_mutants_of_its_own_files_only() -> None:
    groups = mutation.GROUPS
    assert mutation.group_of("pipeline.apply.applier.xǁApplierǁ_record_revert__mutmut_3",
                             groups) == "apply"
    assert mutation.group_of("pipeline.runtime.reclaim.xǁReclaimerǁtouch__mutmut_1",
                             groups) == "runtime"
    # the runtime group is three files, not the whole package
    assert mutation.group_of("pipeline.runtime.heartbeat.x_beat__mutmut_1", groups) is None
    assert mutation.group_of("pipeline.applyx.y.x_f__mutmut_1", groups) is None


def test_a_sample_is_fixed_per_seed_and_about_the_asked_share() -> None:
    names = [f"pipeline.apply.applier.x_f__mutmut_{i}" for i in range(4000)]
    first = [n for n in names if mutation.sampled(n, 0.1, seed=1)]
    assert first == [n for n in names if mutation.sampled(n, 0.1, seed=1)]
    assert first != [n for n in names if mutation.sampled(n, 0.1, seed=2)]
    assert 300 < len(first) < 500
    assert all(mutation.sampled(n, 1.0, seed=1) for n in names)


def test_the_interval_of_a_sampled_score_narrows_with_the_sample() -> None:
    assert mutation.interval(85, 100) == ", 95% interval 77-91%"
    assert mutation.interval(850, 1000) == ", 95% interval 83-87%"
    assert mutation.interval(0, 0) == ""


def test_a_sample_passes_the_check_only_when_its_interval_clears_the_target() -> None:
    # 88% of 250: the point estimate is above 85%, the interval's lower bound (83.4%) is not
    assert mutation.check_passes(220, 250, sample=True)[0] is False
    assert mutation.check_passes(235, 250, sample=True)[0] is True  # 94%, bound 90.3%
    # the whole set has no sampling error: its score itself is checked
    assert mutation.check_passes(850, 1000, sample=False)[0] is True
    assert mutation.check_passes(849, 1000, sample=False)[0] is False
    assert mutation.check_passes(0, 0, sample=True) == (False, "no mutant was scored")


def test_accepted_survivors_that_are_killed_or_no_longer_made_are_stale() -> None:
    stale = mutation.stale_accepted({"a__mutmut_1": "survived", "b__mutmut_2": "killed",
                                     "c__mutmut_3": "not generated", "d__mutmut_4": "timeout",
                                     "e__mutmut_5": "no tests"})
    assert stale == ["b__mutmut_2 (killed)", "c__mutmut_3 (not generated)",
                     "d__mutmut_4 (timeout)"]


def test_the_default_sample_is_a_share_not_the_whole_set() -> None:
    # the whole set takes hours on the 2-core machine; the default must fit in an hour
    assert 0 < mutation.DEFAULT_SAMPLE < 0.1


def test_a_pinned_entry_whose_name_now_denotes_another_mutant_is_stale(tmp_path: Path) -> None:
    listed = tmp_path / "survivors.txt"
    listed.write_text("m.f__mutmut_1@abc123  # same output\nm.f__mutmut_2  # unpinned\n")
    assert mutation.accepted_survivors(listed) == {"m.f__mutmut_1": "same output",
                                                   "m.f__mutmut_2": "unpinned"}
    pins = mutation.accepted_pins(listed)
    assert pins == {"m.f__mutmut_1": "abc123"}
    statuses = {"m.f__mutmut_1": "survived", "m.f__mutmut_2": "survived"}
    assert mutation.stale_accepted(statuses, {"m.f__mutmut_1": "abc123"}, pins) == []
    assert mutation.stale_accepted(statuses, {"m.f__mutmut_1": "def456"}, pins) == [
        "m.f__mutmut_1 (now another mutant: code digest def456, listed abc123)"]


def test_a_mutant_digest_is_the_code_mutmut_wrote_for_it(tmp_path: Path) -> None:
    module = tmp_path / "mutants" / "pkg" / "mod.py"
    module.parent.mkdir(parents=True)
    module.write_text("class C:\n    def xǁCǁm__mutmut_1(self):\n        return 1\n\n"
                      "def x_f__mutmut_1():\n    return 2\n\ndef x_f__mutmut_2():\n    return 3\n")
    first = mutation.mutant_digest(tmp_path, "pkg.mod.x_f__mutmut_1")
    assert first and len(first) == 10
    assert mutation.mutant_digest(tmp_path, "pkg.mod.x_f__mutmut_2") not in (None, first)
    assert mutation.mutant_digest(tmp_path, "pkg.mod.xǁCǁm__mutmut_1")
    assert mutation.mutant_digest(tmp_path, "pkg.mod.x_f__mutmut_9") is None
    assert mutation.mutant_digest(tmp_path, "pkg.other.x_f__mutmut_1") is None
