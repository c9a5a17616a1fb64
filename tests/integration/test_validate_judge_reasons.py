"""What the judges tell the operator about a fix whose verification is deferred to apply
(real lookup over the seeds, the validate stage on real git and Redis)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.service import Lookup
from pipeline.validate.validator import Validator
from storage.cache import LocalCache
from tests.integration._heal_validate_support import candidate, sample_repo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


def test_the_blast_radius_judge_counts_the_steps_of_a_wait_and_retry_playbook(
        tmp_path: Path, validator: Validator) -> None:
    # Given an HTTP 429 that the seeds answer with net.rate_limited's playbook (three sleeps,
    # then the failing step re-run)
    text = (FIXTURES / "net.rate_limited" / "curl.txt").read_text()
    fp = fingerprint_text(text)
    lookup = Lookup(load_catalog(), LocalCache(tmp_path / "cache.sqlite3"), None, None)
    result = lookup.lookup(error_id="e429", text=text, fine=fp.fine, coarse=fp.coarse,
                           record=False)
    assert result.pattern_id == "net.rate_limited" and result.fix is not None
    root = sample_repo(tmp_path)
    cand = candidate(root, ("false",), result.fix, mode="suggest")
    # When the validate stage judges it
    verdict = validator.validate(replace(cand, match=result.match_dict()))
    # Then the blast-radius vote names its four steps, none acting on anything (it said
    # "playbook with 0 step(s)" in heal explain)
    blast = next(v for v in verdict.votes if v["judge"] == "blast-radius")
    assert blast["approve"], verdict.votes
    assert blast["reason"] == ("playbook with 4 step(s), 0 running a program or touching a "
                               "path (judge limit 10)"), blast
