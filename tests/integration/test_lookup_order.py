"""Lookup order is safe: a learned fingerprint mapping never overrides a detection rule that
matches the text, and a coarse mapping alone is never enough for an automatic fix (the
lookup on its local cache, then the validate stage on real git and Redis)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.demo.sample import break_formatting
from pipeline.fingerprint import fingerprint_text
from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.service import Lookup
from pipeline.validate.validator import Validator
from storage.cache import LocalCache
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

REFORMAT = "Would reformat: src/app.py\n1 file would be reformatted"
UNKNOWN = "frobnicator 7 reported widget failure in stage 3"


def _lookup(tmp_path: Path) -> tuple[Lookup, LocalCache]:
    cache = LocalCache(tmp_path / "cache.sqlite3")
    return Lookup(load_catalog(), cache, None, None), cache


def test_a_learned_fine_mapping_never_overrides_a_matching_rule(tmp_path: Path) -> None:
    lookup, cache = _lookup(tmp_path)
    fp = fingerprint_text(REFORMAT)
    # Given a (wrong) mapping of this very fine fingerprint to the rate-limit pattern, even
    # one a person taught
    cache.put_fingerprints([(fp.fine, "fine", "net.rate_limited", "taught"),
                            (fp.coarse, "coarse", "net.rate_limited", "taught")])
    result = lookup.lookup(error_id="e1", text=REFORMAT, fine=fp.fine, coarse=fp.coarse,
                           record=False)
    # Then the detection rule that matches the text decides
    assert result.pattern_id == "format.ruff_format"
    assert result.reason.startswith("exact: detection rule")


def test_a_coarse_mapping_alone_is_only_ever_suggested(
        tmp_path: Path, validator: Validator) -> None:
    lookup, cache = _lookup(tmp_path)
    fp = fingerprint_text(UNKNOWN)
    cache.put_fingerprints([(fp.coarse, "coarse", "format.ruff_format", "taught")])
    result = lookup.lookup(error_id="e2", text=UNKNOWN, fine=fp.fine, coarse=fp.coarse,
                           record=False)
    assert result.pattern_id == "format.ruff_format" and result.match_dict()["via"] == "coarse"

    # When the validate stage gets that match with a verified SAFE fix in mode auto-safe
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX)
    verdict = validator.validate(replace(cand, match=result.match_dict()))
    # Then it is suggested, never applied automatically, and says why
    assert verdict.decision == "suggest"
    assert "coarse fingerprint alone" in verdict.reason
    # while the same fix matched by its rule is applied
    exact = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    assert exact.decision == "apply"
