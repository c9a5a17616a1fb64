"""Pure lifecycle logic: the transition table, posterior bounds, Thompson sampling, flakiness."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.lifecycle.flakiness import determinism_score, interval_regularity, is_flaky
from pipeline.lifecycle.graduation import (
    IllegalTransition,
    LifecyclePolicy,
    after_outcome,
    check,
    outcome_kind,
    when_unused,
)
from pipeline.lifecycle.posterior import Posterior, beta_cdf, beta_ppf
from pipeline.lifecycle.ranking import thompson_rank
from pipeline.model import LIFECYCLE_TRANSITIONS, LifecycleState, can_transition

S = LifecycleState
POLICY = LifecyclePolicy()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["success", "failure", "revert"]), max_size=60))
def test_no_illegal_transition_is_reachable(outcomes: list[str]) -> None:
    state, good, bad = S.DRAFT, 0, 0
    for outcome in outcomes:
        good += outcome == "success"
        bad += outcome != "success"
        decision = after_outcome(state, Posterior(good, bad), outcome, POLICY)
        if decision is not None:
            assert can_transition(state, decision.dst), (state, decision)
            state = decision.dst
        if "revert" in outcomes[: outcomes.index(outcome) + 1]:
            assert state is S.QUARANTINED  # never retried until unquarantine


def test_check_refuses_what_the_table_forbids() -> None:
    for src, allowed in LIFECYCLE_TRANSITIONS.items():
        for dst in S:
            if dst in allowed:
                check(src, dst)
            else:
                with pytest.raises(IllegalTransition):
                    check(src, dst)


def test_first_success_activates_and_evidence_automates() -> None:
    assert after_outcome(S.DRAFT, Posterior(1, 0), "success", POLICY).dst is S.ACTIVE
    # 27 straight successes: lower bound 0.05 ** (1/28) = 0.8985 < 0.9; 28 clear it
    assert after_outcome(S.ACTIVE, Posterior(27, 0), "success", POLICY) is None
    assert after_outcome(S.ACTIVE, Posterior(28, 0), "success", POLICY).dst is S.AUTOMATED
    # enough evidence of a bad rate deprecates; a slipping automated fix goes back to ACTIVE
    assert after_outcome(S.ACTIVE, Posterior(2, 10), "failure", POLICY).dst is S.DEPRECATED
    assert after_outcome(S.AUTOMATED, Posterior(28, 3), "failure", POLICY).dst is S.ACTIVE


def test_min_attempts_guards_automation() -> None:
    strict = LifecyclePolicy(automate_threshold=0.5, min_attempts=10)
    assert after_outcome(S.ACTIVE, Posterior(9, 0), "success", strict) is None
    assert after_outcome(S.ACTIVE, Posterior(10, 0), "success", strict).dst is S.AUTOMATED


def test_unused_pairs_are_deprecated() -> None:
    now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    old = now - dt.timedelta(days=91)
    assert when_unused(S.AUTOMATED, old, now, POLICY).dst is S.DEPRECATED
    assert when_unused(S.ACTIVE, now - dt.timedelta(days=3), now, POLICY) is None
    assert when_unused(S.QUARANTINED, old, now, POLICY) is None


def test_outcome_statuses() -> None:
    assert outcome_kind("applied") == "success"
    assert outcome_kind("rolled_back") == "revert"
    assert outcome_kind("suggested") is None


@pytest.mark.parametrize("n", [0, 1, 5, 28, 100])
def test_lower_bound_matches_the_closed_form(n: int) -> None:
    # Beta(n + 1, 1) has CDF x ** (n + 1), so its 5% quantile is 0.05 ** (1 / (n + 1))
    assert Posterior(n, 0).lower() == pytest.approx(0.05 ** (1 / (n + 1)), abs=1e-9)
    assert Posterior(0, n).upper() == pytest.approx(1 - 0.05 ** (1 / (n + 1)), abs=1e-9)


@given(st.integers(0, 300), st.integers(0, 300))
@settings(max_examples=60, deadline=None)
def test_bounds_bracket_the_mean(s: int, f: int) -> None:
    p = Posterior(s, f)
    assert 0.0 <= p.lower() <= p.mean <= p.upper() <= 1.0
    assert beta_cdf(beta_ppf(0.3, p.alpha, p.beta), p.alpha, p.beta) == pytest.approx(0.3, 1e-6)


def test_thompson_is_deterministic_with_a_seed_and_exploits() -> None:
    cands = {"proven": Posterior(50, 1), "new": Posterior(0, 0), "bad": Posterior(1, 20)}
    first = thompson_rank(cands, random.Random(42))
    assert first == thompson_rank(cands, random.Random(42))
    # best first: the draws are in descending order and each lies in (0, 1)
    assert [d.draw for d in first] == sorted((d.draw for d in first), reverse=True)
    assert all(0.0 < d.draw < 1.0 for d in first)
    assert {d.fix_id for d in first} == set(cands)
    # another seed draws other values (a sampler that ignored its rng would not)
    assert [d.draw for d in thompson_rank(cands, random.Random(7))] != [d.draw for d in first]
    rng = random.Random(1)
    wins = sum(thompson_rank(cands, rng)[0].fix_id == "proven" for _ in range(1000))
    explored = 1000 - wins
    assert wins > 850 and explored > 0  # exploits, still explores a little


def test_determinism_score() -> None:
    # same commit both passing and failing: flaky
    flaky = determinism_score([("a", True), ("a", False), ("b", False), ("b", True)], [])
    assert flaky == 0.0 and is_flaky(flaky)
    steady = determinism_score([("a", False), ("a", False)], [0, 60, 120, 180])
    assert steady == 1.0 and not is_flaky(steady)
    assert interval_regularity([0, 1, 100, 101, 500]) < 0.6
    assert determinism_score([], []) == 1.0


def test_flaky_evidence_and_recovery() -> None:
    from pipeline.lifecycle.flakiness import determinism_score, evidence, is_flaky

    # Given one failure that passed on a plain re-run of the same commit: flaky
    results = evidence("c1", None, "flaky")
    assert results == [("c1", False), ("c1", True)]
    assert is_flaky(determinism_score(results, []))
    # When the failure then reproduces (escalated) on two later commits, twice each
    for commit in ("c2", "c2", "c3", "c3"):
        results += evidence(commit, None, "escalated")
    # Then the fingerprint is deterministic again (2 of 3 commits agree)
    assert not is_flaky(determinism_score(results, []))
    assert evidence("", True, "applied") == [] and evidence("c", None, "suggested") == []
    # a pass because of heal's fix says nothing of the commit passing unchanged
    assert evidence("c", True, "applied") == []
    assert evidence("c", False, "rolled_back") == [("c", False)]
