"""Top-1 of `heal diagnose --offline` (tiers 1, 2 and 3, the real embedding model) on every
real tool output in tests/fixtures/errors, and no logic bug given a SAFE or MODERATE fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.diagnose import report
from pipeline.config import Settings
from pipeline.fingerprint import fingerprint_text
from pipeline.lookup.service import Lookup
from pipeline.lookup.setup import build_lookup
from pipeline.model import Mode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Lookup:
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HEAL_HOME", str(home))
    try:
        return build_lookup(Settings.from_env(), None, semantic=True)  # --offline
    finally:
        mp.undo()


def diagnose_json(lookup: Lookup, text: str) -> dict[str, object]:
    """What `heal diagnose --offline --json` prints for ``text`` (same calls, one Lookup)."""
    fp = fingerprint_text(text)
    result = lookup.lookup(error_id="diagnose", text=text, fine=fp.fine, coarse=fp.coarse,
                           headline=fp.normalized, fp_params=fp.params, record=False)
    return report(fp.fine, fp.coarse, fp.version, result, Mode.AUTO, online=False)


def test_diagnose_top1_on_every_real_output_and_no_logic_bug_gets_a_fix(
        lookup: Lookup) -> None:
    wrong, logic = [], []
    for path in sorted(FIXTURES.glob("*/*.txt")):
        data = diagnose_json(lookup, path.read_text(encoding="utf-8", errors="replace"))
        match, fix = data["match"], data["fix"]
        assert isinstance(match, dict)
        if path.parent.name == "_logic_bugs":
            if isinstance(fix, dict) and fix["category"] in ("SAFE", "MODERATE"):
                logic.append(f"{path.name} -> {match['pattern_id']}")
        elif match["pattern_id"] != path.parent.name:
            wrong.append(f"{path.parent.name}/{path.name} -> {match['pattern_id']}")
    assert wrong == [] and logic == []
