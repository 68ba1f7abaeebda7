"""The self-improvement decision rule (``ssm_metarl.rsi.decide``) on plain numbers: no Optuna, no training.

A candidate's metrics are written directly: ``pairs`` is the per-(seed, task) part of its score (3 seeds x 4
tasks here) and ``global_part`` the rest, so each test says exactly how much better or worse it is and how
its gain spreads over the pairs.
"""

from __future__ import annotations

import numpy as np
import pytest

from ssm_metarl.config import RSIConfig
from ssm_metarl.rsi import decide
from ssm_metarl.rsi import metrics as M

S, I = 3, 4
SCORE = RSIConfig()
PARETO = RSIConfig(objectives="pareto")  # objectives: return, speed, efficiency, stability (weight above 0)
VALUES = {"return": 1.0, "speed": 1.0, "generalisation": 0.0, "efficiency": 0.0, "stability": -0.1}


def metrics(pairs: float | np.ndarray, global_part: float = 0.0, **values: float) -> M.Metrics:
    """Metrics whose per-pair part is ``pairs`` (a number: the same on every pair)."""
    arr = np.broadcast_to(np.asarray(pairs, dtype=float), (S, I)).copy()
    return M.Metrics({**VALUES, **values}, arr, global_part)


INCUMBENT = metrics(1.0)


# ----- choose: accept, reject, fail ------------------------------------------------------------------------
def test_no_finished_candidate_fails_the_cycle():
    choice = decide.choose({}, INCUMBENT, SCORE, cycle=1)
    assert choice == decide.Choice("failed", decide.ALL_FAILED, None, None, None)


def test_a_candidate_better_on_every_pair_is_accepted():
    gain = 0.5 + np.random.default_rng(0).normal(0.0, 0.01, (S, I))
    choice = decide.choose({7: metrics(1.0 + gain)}, INCUMBENT, SCORE, cycle=1)
    assert choice.outcome == "accepted" and choice.failure is None and choice.best == 7
    assert choice.best_score == pytest.approx(1.0 + gain.mean())
    assert choice.comparison is not None and choice.comparison.low > 0.0
    assert choice.comparison.difference == pytest.approx(gain.mean())


def test_a_tie_is_rejected():
    choice = decide.choose({3: metrics(1.0)}, INCUMBENT, SCORE, cycle=1)
    assert choice.outcome == "rejected" and choice.failure == decide.NOT_BETTER and choice.best == 3
    assert choice.comparison is not None
    assert choice.comparison.difference == 0.0 and choice.comparison.low == 0.0  # not above zero


def test_a_worse_candidate_is_rejected():
    choice = decide.choose({3: metrics(0.5)}, INCUMBENT, SCORE, cycle=1)
    assert choice.outcome == "rejected" and choice.failure == decide.NOT_BETTER
    assert choice.comparison is not None and choice.comparison.high < 0.0
    assert choice.best_score == pytest.approx(0.5)


def test_a_mean_gain_inside_the_seed_spread_is_rejected():
    diff = np.where(np.arange(S * I).reshape(S, I) % 2 == 0, 10.0, -9.6)  # mean +0.2, spread 10
    choice = decide.choose({1: metrics(1.0 + diff)}, INCUMBENT, SCORE, cycle=1)
    assert choice.comparison is not None
    assert choice.comparison.difference == pytest.approx(0.2) and choice.comparison.low < 0.0
    assert choice.outcome == "rejected"


def test_the_global_part_counts_in_the_difference():
    choice = decide.choose({1: metrics(1.0, global_part=0.3)}, INCUMBENT, SCORE, cycle=1)
    assert choice.outcome == "accepted"
    assert choice.comparison is not None and choice.comparison.low == pytest.approx(0.3)
    worse = decide.choose({1: metrics(1.2, global_part=-0.3)}, INCUMBENT, SCORE, cycle=1)
    assert worse.outcome == "rejected" and worse.comparison is not None
    assert worse.comparison.difference == pytest.approx(-0.1)


def test_the_best_score_is_compared_and_a_tie_goes_to_the_first_trial():
    candidates = {4: metrics(1.2), 2: metrics(1.6), 9: metrics(1.6), 5: metrics(0.2)}
    choice = decide.choose(candidates, INCUMBENT, SCORE, cycle=1)
    assert choice.best == 2 and choice.outcome == "accepted"
    assert choice.comparison == M.compare(candidates[2], INCUMBENT, SCORE, seed=1)


def test_only_the_best_is_compared_even_when_it_is_rejected():
    noisy = 1.0 + np.where(np.arange(S * I).reshape(S, I) % 2 == 0, 10.0, -9.0)  # mean +0.5, spread 10
    candidates = {1: metrics(1.3), 2: metrics(noisy)}
    choice = decide.choose(candidates, INCUMBENT, SCORE, cycle=1)
    assert choice.best == 2 and choice.outcome == "rejected"  # 1 would have passed; only the best is asked


def test_the_bootstrap_is_seeded_by_the_cycle():
    noisy = metrics(1.0 + np.random.default_rng(1).normal(0.1, 0.3, (S, I)))
    a = decide.choose({1: noisy}, INCUMBENT, SCORE, cycle=5)
    assert a == decide.choose({1: noisy}, INCUMBENT, SCORE, cycle=5)
    assert a.comparison == M.compare(noisy, INCUMBENT, SCORE, seed=5)
    assert a.comparison != decide.choose({1: noisy}, INCUMBENT, SCORE, cycle=6).comparison


def test_a_higher_confidence_needs_a_larger_gain():
    gain = metrics(1.0 + np.random.default_rng(2).normal(0.05, 0.1, (S, I)))
    loose = decide.choose({1: gain}, INCUMBENT, RSIConfig(confidence=0.5), cycle=1)
    strict = decide.choose({1: gain}, INCUMBENT, RSIConfig(confidence=0.99), cycle=1)
    assert loose.outcome == "accepted" and strict.outcome == "rejected"


# ----- Pareto: no trade-offs ---------------------------------------------------------------------------
def test_pareto_objectives_are_the_weighted_metrics():
    assert decide.objectives(SCORE) == ("score",)
    assert decide.objectives(PARETO) == ("return", "speed", "efficiency", "stability")


def test_the_score_mode_makes_every_candidate_eligible():
    tradeoff = metrics(2.0, stability=-5.0)
    assert decide.eligible({1: tradeoff, 2: metrics(0.0)}, INCUMBENT, SCORE) == [1, 2]


def test_pareto_chooses_among_dominating_candidates_only():
    tradeoff = metrics(3.0, **{"return": 3.0, "stability": -5.0})  # a higher score, a worse stability
    dominating = metrics(1.6, **{"return": 1.5})
    equal = metrics(1.0)  # dominates nothing: equal on every objective
    candidates = {1: tradeoff, 2: dominating, 3: equal}
    assert decide.eligible(candidates, INCUMBENT, PARETO) == [2]
    choice = decide.choose(candidates, INCUMBENT, PARETO, cycle=1)
    assert choice.best == 2 and choice.outcome == "accepted" and choice.best_score == pytest.approx(1.6)
    assert decide.choose(candidates, INCUMBENT, SCORE, cycle=1).best == 1  # the score takes the trade-off


def test_pareto_rejects_when_nothing_dominates():
    candidates = {1: metrics(3.0, stability=-5.0), 2: metrics(0.5, speed=2.0, efficiency=-1.0)}
    choice = decide.choose(candidates, INCUMBENT, PARETO, cycle=1)
    assert choice == decide.Choice("rejected", decide.NONE_DOMINATES, None, 3.0, None)


def test_a_dominating_candidate_still_needs_its_interval():
    dominating = metrics(1.0, **{"return": 1.5})  # better on an objective, no score gain
    choice = decide.choose({1: dominating}, INCUMBENT, PARETO, cycle=1)
    assert choice.outcome == "rejected" and choice.failure == decide.NOT_BETTER and choice.best == 1


# ----- after the install: the recheck ------------------------------------------------------------------
def test_the_recheck_is_a_comparison_on_its_own_seed():
    new, old = metrics(1.0 + np.random.default_rng(3).normal(0.0, 0.2, (S, I))), metrics(1.0)
    assert decide.recheck(new, old, SCORE, cycle=4) == M.compare(new, old, SCORE, seed=10_004)


@pytest.mark.parametrize(
    ("difference", "low", "rolls_back"),
    [
        (-0.2, -0.5, True),  # the incumbent fell
        (0.0, -0.1, True),  # no better on fresh seeds
        (0.01, -1.0, False),  # better on average: kept, even inside the spread
        (0.5, 0.2, False),
    ],
)
def test_a_recheck_that_is_not_above_zero_rolls_back(difference, low, rolls_back):
    assert decide.rolls_back(M.Comparison(difference, low, difference + 1.0)) is rolls_back


# ----- the safety stops --------------------------------------------------------------------------------
def test_consecutive_failures_count_up_and_any_success_resets_them():
    assert decide.failures_after(0, failed=True) == 1
    assert decide.failures_after(2, failed=True) == 3
    assert decide.failures_after(2, failed=False) == 0


def test_the_emergency_stop_comes_at_exactly_max_failures():
    cfg = RSIConfig(max_failures=3)
    assert decide.stop_after_cycle(2, 1.0, cfg) is None
    assert decide.stop_after_cycle(3, 1.0, cfg) == "emergency stop: 3 consecutive failed cycles"
    assert decide.stop_after_cycle(0, 1.0, RSIConfig(max_failures=1)) is None


def test_the_floor_stops_below_it_only():
    cfg = RSIConfig(floor=0.5)
    assert decide.stop_after_cycle(0, 0.5, cfg) is None
    assert decide.stop_after_cycle(0, 0.4999, cfg) == "the incumbent's score 0.500 is below the floor 0.5"
    assert decide.stop_after_cycle(0, -1e9, SCORE) is None  # no floor


def test_the_emergency_stop_is_named_before_the_floor():
    cfg = RSIConfig(max_failures=2, floor=0.5)
    assert str(decide.stop_after_cycle(2, 0.0, cfg)).startswith("emergency stop")


def test_the_env_step_and_time_limits_stop_when_reached():
    cfg = RSIConfig(max_env_steps=1000, max_minutes=10.0)
    assert decide.limit_reached(999, 9.99, cfg) is None
    assert decide.limit_reached(1000, 0.0, cfg) == "env-step limit reached (1000 >= 1000)"
    assert decide.limit_reached(0, 10.0, cfg) == "time limit reached (10.0 >= 10.0 minutes)"
    assert str(decide.limit_reached(5000, 50.0, cfg)).startswith("env-step")
