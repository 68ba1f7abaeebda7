"""Classic Bernoulli-bandit algorithms, the references RL² agents are measured against (Duan et al. 2016).

All run on many bandits at once: ``means`` (M, K) arm probabilities, ``n`` pulls each, ``runs``
independent repetitions; the result is the mean total reward per bandit, shape (M,). Rewards are drawn
from the seeded generator as ``u < p`` for the pulled arm.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ssm_metarl.envs.tasks import Task


def task_means(tasks: list[Task]) -> np.ndarray:
    """(M, K) arm means of bandit tasks (parameters ``p0..p{K-1}``)."""
    return np.stack([np.array([t[f"p{i}"] for i in range(len(t.params))]) for t in tasks])


def _play(
    means: np.ndarray,
    n: int,
    runs: int,
    seed: int,
    prior: float,
    choose: Callable[[int, np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
    credit: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Play ``runs`` x M bandits for ``n`` pulls; per arm two statistics (u, v) start at ``prior``, the arm is
    ``choose(t, u, v, rng)`` and a reward r adds ``credit(r)`` to (u, v). Returns the mean total per bandit."""
    rng = np.random.default_rng(seed)
    M, K = means.shape
    p = np.broadcast_to(means, (runs, M, K))
    u, v, total = np.full((runs, M, K), prior), np.full((runs, M, K), prior), np.zeros((runs, M))
    for t in range(n):
        arm = choose(t, u, v, rng)[..., None]  # (runs, M, 1)
        reward = (rng.random((runs, M)) < np.take_along_axis(p, arm, -1)[..., 0]).astype(float)
        du, dv = credit(reward[..., None])
        np.put_along_axis(u, arm, np.take_along_axis(u, arm, -1) + du, -1)
        np.put_along_axis(v, arm, np.take_along_axis(v, arm, -1) + dv, -1)
        total += reward
    return total.mean(axis=0)


def ucb1(means: np.ndarray, n: int, runs: int = 100, seed: int = 0) -> np.ndarray:
    """UCB1 (Auer et al. 2002): pull each arm once, then argmax of mean + sqrt(2 ln t / count)."""
    K = means.shape[-1]

    def choose(t: int, counts: np.ndarray, sums: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if t < K:
            return np.full(counts.shape[:-1], t)
        return np.argmax(sums / counts + np.sqrt(2.0 * np.log(t) / counts), axis=-1)

    return _play(means, n, runs, seed, 0.0, choose, lambda r: (np.ones_like(r), r))


def thompson(means: np.ndarray, n: int, runs: int = 100, seed: int = 0) -> np.ndarray:
    """Thompson sampling with Beta(1, 1) priors: pull the arm with the largest posterior sample."""

    def choose(t: int, alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.argmax(rng.beta(alpha, beta), axis=-1)

    return _play(means, n, runs, seed, 1.0, choose, lambda r: (r, 1.0 - r))


def random_arms(means: np.ndarray, n: int) -> np.ndarray:
    """Expected total reward of uniformly random pulls: n x the mean arm probability."""
    return n * means.mean(axis=-1)


def oracle(means: np.ndarray, n: int) -> np.ndarray:
    """Expected total reward of always pulling the best arm."""
    return n * means.max(axis=-1)


BAYES_MAX_PULLS = 20


@functools.lru_cache(maxsize=8)
def _bayes_value(k: int, n: int) -> Callable[[tuple[tuple[int, int], ...]], float]:
    """V(counts): the most reward the rest of the ``n`` pulls can earn in expectation under the prior.

    ``counts`` is the sorted tuple of per-arm (successes, failures): arms are exchangeable under the
    U[0, 1] prior, so sorting shares one entry between all orderings. Posterior mean of an arm: (s+1)/(s+f+2).
    """

    @functools.cache
    def value(counts: tuple[tuple[int, int], ...]) -> float:
        if sum(s + f for s, f in counts) >= n:
            return 0.0
        return max(_q(value, counts, a) for a in {counts.index(c) for c in counts})

    return value


def _q(
    value: Callable[[tuple[tuple[int, int], ...]], float], counts: tuple[tuple[int, int], ...], a: int
) -> float:
    """Expected reward of pulling arm ``a`` now and playing Bayes-optimally afterwards."""
    s, f = counts[a]
    p = (s + 1) / (s + f + 2)
    win = tuple(sorted(counts[:a] + ((s + 1, f),) + counts[a + 1 :]))
    lose = tuple(sorted(counts[:a] + ((s, f + 1),) + counts[a + 1 :]))
    return p * (1.0 + value(win)) + (1.0 - p) * value(lose)


def bayes_optimal_value(k: int, n: int) -> float:
    """Expected total reward of the Bayes-optimal policy over the prior U[0, 1]^K (exact, by dynamic
    programming): the best any agent meta-trained on this prior can do on average."""
    _check_bayes(n)
    return _bayes_value(k, n)(((0, 0),) * k)


def bayes_optimal(means: np.ndarray, n: int, runs: int = 100, seed: int = 0) -> np.ndarray:
    """The Bayes-optimal policy for ``n`` pulls under the prior U[0, 1]^K, played on ``means`` (M, K).

    Exact finite-horizon dynamic programming over the posterior counts (the state space grows
    combinatorially, so ``n`` is limited to ``BAYES_MAX_PULLS``); ties go to the lowest arm index. On
    average over bandits drawn from the prior nothing beats it; on a fixed set of bandits a policy can
    be luckier, within sampling noise.
    """
    _check_bayes(n)
    rng = np.random.default_rng(seed)
    M, K = means.shape
    value = _bayes_value(K, n)
    total = np.zeros((runs, M))
    for r in range(runs):
        for m in range(M):
            counts = [(0, 0)] * K
            for _ in range(n):
                key = tuple(sorted(counts))
                arm = max(range(K), key=lambda a: (_q(value, key, key.index(counts[a])), -a))
                win = rng.random() < means[m, arm]
                s, f = counts[arm]
                counts[arm] = (s + 1, f) if win else (s, f + 1)
                total[r, m] += win
    return total.mean(axis=0)


def _check_bayes(n: int) -> None:
    if not 1 <= n <= BAYES_MAX_PULLS:
        raise ValueError(
            f"the exact Bayes-optimal policy is computed for 1 <= n <= {BAYES_MAX_PULLS} pulls (its state space "
            f"grows combinatorially), got n={n}; compare with thompson() for longer horizons"
        )
