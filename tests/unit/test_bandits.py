import numpy as np
import pytest

from ssm_metarl.envs.tasks import get_family
from ssm_metarl.meta.bandits import (
    bayes_optimal,
    bayes_optimal_value,
    oracle,
    random_arms,
    task_means,
    thompson,
    ucb1,
)


def test_bandit_baselines_sit_between_random_and_oracle():
    means = task_means(get_family("bandit-k5-n100").test)
    assert means.shape == (len(get_family("bandit-k5-n100").test), 5)
    lo, hi = random_arms(means, 100).mean(), oracle(means, 100).mean()
    for algo in (ucb1, thompson):
        got = algo(means, 100, runs=50, seed=0).mean()
        assert lo + 0.4 * (hi - lo) < got < hi, (algo.__name__, lo, got, hi)
    # Thompson sampling is known to beat UCB1 on Bernoulli bandits at this horizon
    assert thompson(means, 100, runs=50).mean() > ucb1(means, 100, runs=50).mean()


def test_bandit_baselines_are_seeded_and_exact_on_a_deterministic_bandit():
    means = np.array([[0.0, 1.0, 0.0]])
    # UCB1's bonus keeps revisiting the empty arms: at t=3 all bonuses tie at sqrt(2 ln 3) and the mean breaks
    # the tie, at t=4 arm 0's bonus (sqrt(2 ln 4) = 1.67) loses to arm 1's 1 + sqrt(ln 4) = 2.18, ...
    assert 5.0 <= ucb1(means, 10, runs=3)[0] < 10.0
    assert ucb1(np.ones((2, 4)), 7, runs=2).tolist() == [7.0, 7.0]
    assert thompson(np.ones((1, 3)), 9).tolist() == [9.0]
    np.testing.assert_array_equal(thompson(means, 20, seed=3), thompson(means, 20, seed=3))


def test_bayes_optimal_value_by_hand():
    assert bayes_optimal_value(2, 1) == pytest.approx(0.5)
    # pull an arm (1/2); after a win its posterior mean is 2/3, keep it; after a loss switch to the fresh arm
    assert bayes_optimal_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)
    assert bayes_optimal_value(1 + 1, 3) > bayes_optimal_value(2, 2) + 0.5  # more pulls, more reward


def test_bayes_optimal_policy_earns_its_dp_value_and_beats_thompson_on_the_prior():
    rng = np.random.default_rng(0)
    means = rng.uniform(size=(4000, 3))  # bandits drawn from the prior the policy is optimal for
    got = bayes_optimal(means, 10, runs=1, seed=1)
    se = got.std() / np.sqrt(len(got))
    assert abs(got.mean() - bayes_optimal_value(3, 10)) < 3 * se
    assert got.mean() > thompson(means, 10, runs=1, seed=1).mean() + 2 * se


def test_bayes_optimal_refuses_long_horizons():
    with pytest.raises(ValueError, match="n <= 20"):
        bayes_optimal(np.full((1, 5), 0.5), 100)
