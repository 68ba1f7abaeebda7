"""Classic Bernoulli-bandit algorithms, the references RL² agents are measured against (Duan et al. 2016).

Both run on many bandits at once: ``means`` (M, K) arm probabilities, ``n`` pulls each, ``runs``
independent repetitions; the result is the mean total reward per bandit, shape (M,). Rewards are drawn
from the seeded generator as ``u < p`` for the pulled arm.
"""

from __future__ import annotations

import numpy as np

from ssm_metarl.envs.tasks import Task


def task_means(tasks: list[Task]) -> np.ndarray:
    """(M, K) arm means of bandit tasks (parameters ``p0..p{K-1}``)."""
    return np.stack([np.array([t[f"p{i}"] for i in range(len(t.params))]) for t in tasks])


def ucb1(means: np.ndarray, n: int, runs: int = 100, seed: int = 0) -> np.ndarray:
    """UCB1 (Auer et al. 2002): pull each arm once, then argmax of mean + sqrt(2 ln t / count)."""
    rng = np.random.default_rng(seed)
    M, K = means.shape
    p = np.broadcast_to(means, (runs, M, K))
    counts, sums, total = np.zeros((runs, M, K)), np.zeros((runs, M, K)), np.zeros((runs, M))
    for t in range(n):
        if t < K:
            arm = np.full((runs, M), t)
        else:
            bonus = np.sqrt(2.0 * np.log(t) / counts)
            arm = np.argmax(sums / counts + bonus, axis=-1)
        reward = rng.random((runs, M)) < np.take_along_axis(p, arm[..., None], -1)[..., 0]
        np.put_along_axis(counts, arm[..., None], np.take_along_axis(counts, arm[..., None], -1) + 1, -1)
        np.put_along_axis(
            sums, arm[..., None], np.take_along_axis(sums, arm[..., None], -1) + reward[..., None], -1
        )
        total += reward
    return total.mean(axis=0)


def thompson(means: np.ndarray, n: int, runs: int = 100, seed: int = 0) -> np.ndarray:
    """Thompson sampling with Beta(1, 1) priors: pull the arm with the largest posterior sample."""
    rng = np.random.default_rng(seed)
    M, K = means.shape
    p = np.broadcast_to(means, (runs, M, K))
    alpha, beta, total = np.ones((runs, M, K)), np.ones((runs, M, K)), np.zeros((runs, M))
    for _ in range(n):
        arm = np.argmax(rng.beta(alpha, beta), axis=-1)
        reward = (rng.random((runs, M)) < np.take_along_axis(p, arm[..., None], -1)[..., 0]).astype(float)
        np.put_along_axis(
            alpha, arm[..., None], np.take_along_axis(alpha, arm[..., None], -1) + reward[..., None], -1
        )
        np.put_along_axis(
            beta, arm[..., None], np.take_along_axis(beta, arm[..., None], -1) + 1 - reward[..., None], -1
        )
        total += reward
    return total.mean(axis=0)


def random_arms(means: np.ndarray, n: int) -> np.ndarray:
    """Expected total reward of uniformly random pulls: n x the mean arm probability."""
    return n * means.mean(axis=-1)


def oracle(means: np.ndarray, n: int) -> np.ndarray:
    """Expected total reward of always pulling the best arm."""
    return n * means.max(axis=-1)
