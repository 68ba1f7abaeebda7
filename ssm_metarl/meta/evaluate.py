"""The adaptation protocol (EVALUATION.md), shared by CLI, tests and benchmarks.

Gradient-based agents: on fixed held-out tasks and seeds, the mean return of ``num_trajectories``
(stochastic) episodes acting with the parameters after k = 0..K inner steps, each step using those
episodes as its support data. In-context agents: :func:`ssm_metarl.meta.rl2.evaluate_in_context`.
Intervals: a 95% t-interval over seed means (each seed's mean over tasks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.functional import inner_update, params_of
from ssm_metarl.meta.maml import inner_loss, sample_episodes
from ssm_metarl.models.heads import ActorCritic

# two-sided 97.5% Student-t quantiles for n - 1 = 1..30 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]  # fmt: skip


def mean_ci(seed_means: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of a 95% t-interval over seeds (0 half-width with one seed)."""
    x = np.asarray(seed_means, dtype=float)
    if x.size < 2:
        return float(x.mean()), 0.0
    t = _T975[min(x.size - 2, len(_T975) - 1)]
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


@dataclass(frozen=True)
class AdaptationCurve:
    """returns[s, i, k]: mean return on task i with seed s after k inner steps."""

    returns: np.ndarray
    env_steps_per_step: float

    def summary(self) -> list[tuple[float, float]]:
        """(mean, 95% half-width) after each step k, over seed means."""
        per_seed = self.returns.mean(axis=1)  # (S, K+1)
        return [mean_ci(per_seed[:, k]) for k in range(per_seed.shape[1])]


def evaluate_adaptation(
    policy: ActorCritic,
    family: str,
    tasks: list[Task],
    inner_steps: int = 3,
    num_trajectories: int = 20,
    inner_lr: float = 0.1,
    later_lr: float | None = None,
    gamma: float = 0.99,
    seeds: tuple[int, ...] = (0, 1, 2),
    baseline: str = "critic",
) -> AdaptationCurve:
    """Return before and after each of ``inner_steps`` policy-gradient steps, per seed and task.

    ``later_lr`` is the step size after the first step (MAML's test protocol uses 0.05 after 0.1);
    ``baseline`` is the inner loss's (use the one the policy was meta-trained with).
    """
    dist = get_family(family)
    envs = dist.make_vec_env([tasks[0]] * num_trajectories, seed=0, fast=True)
    out = np.zeros((len(seeds), len(tasks), inner_steps + 1))
    steps = []
    for s_i, seed in enumerate(seeds):
        for t_i, task in enumerate(tasks):
            params = {k: v.detach() for k, v in params_of(policy).items()}
            for k in range(inner_steps + 1):
                ep = sample_episodes(
                    envs, policy, params, [task] * num_trajectories, seed=seed * 100_003 + t_i * 101 + k
                )
                out[s_i, t_i, k] = ep.mean_return
                steps.append(int(ep.valid.sum()))
                if k < inner_steps:
                    lr = inner_lr if k == 0 or later_lr is None else later_lr
                    leaf = {n: v.requires_grad_(True) for n, v in params.items()}
                    with torch.enable_grad():
                        params = inner_update(
                            leaf, inner_loss(policy, leaf, ep, gamma, baseline), lr, first_order=True
                        )
                    params = {n: v.detach() for n, v in params.items()}
    envs.close()
    return AdaptationCurve(out, float(np.mean(steps)))


def random_policy_returns(family: str, tasks: list[Task], episodes: int = 20, seed: int = 0) -> float:
    """Mean return of uniformly random actions on ``tasks`` (the random-policy row of every table)."""
    return baseline_policy_returns(family, tasks, "random", episodes, seed)


def baseline_policy_returns(
    family: str, tasks: list[Task], kind: str = "random", episodes: int = 20, seed: int = 0
) -> float:
    """Mean return on ``tasks`` of uniformly random actions (``kind="random"``) or of a constant action
    (``"constant"``: action 0 for discrete spaces, the middle of the box for continuous ones)."""
    if kind not in ("random", "constant"):
        raise ValueError(f"kind must be 'random' or 'constant', got {kind!r}")
    dist = get_family(family)
    totals = []
    for i, task in enumerate(tasks):
        envs = dist.make_vec_env([task] * episodes, seed=seed + 1000 * i, fast=True)
        envs.action_space.seed(seed + i)
        envs.reset(seed=seed + 1000 * i)
        space = envs.action_space
        if kind == "constant":
            if hasattr(space, "nvec"):
                const = np.zeros(space.shape, dtype=space.dtype)
            else:
                const = ((np.asarray(space.low) + np.asarray(space.high)) / 2).astype(space.dtype)
        ret, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
        while running.any():
            action = space.sample() if kind == "random" else const
            _, r, term, trunc, _ = envs.step(action)
            ret += r * running
            running &= ~(term | trunc)
        totals.append(ret.mean())
        envs.close()
    return float(np.mean(totals))
