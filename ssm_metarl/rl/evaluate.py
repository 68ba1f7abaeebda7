"""Evaluate a policy on whole, seeded episodes; deterministic and stochastic returns are kept apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models.base import clear_step_caches
from ssm_metarl.models.heads import ActorCritic


@dataclass(frozen=True)
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


@torch.no_grad()
def run_episodes(policy: ActorCritic, envs, seed: int | None, deterministic: bool) -> EvalResult:
    """One episode in each env of ``envs`` (a vector env), acting with the policy's step path."""
    B = envs.num_envs
    clear_step_caches(policy)
    p = next(policy.parameters())
    obs, _ = envs.reset(seed=seed)
    state = policy.initial_state(B)
    reset = torch.ones(B, dtype=torch.bool, device=p.device)
    returns, lengths = np.zeros(B), np.zeros(B, dtype=np.int64)
    running = np.ones(B, dtype=bool)
    while running.any():
        x = policy.normalize(torch.as_tensor(obs, device=p.device).to(p.dtype).reshape(B, -1))
        action, _, _, state = policy.act(x, state, reset, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = envs.step(policy.env_action(action))
        returns += reward * running
        lengths += running
        running &= ~(terminated | truncated)
        reset = torch.as_tensor(terminated | truncated, device=p.device)
    return EvalResult(returns.tolist(), lengths.tolist())


def evaluate_policy(
    policy: ActorCritic,
    env_id: str,
    num_episodes: int = 10,
    seed: int = 10_000,
    deterministic: bool = True,
    max_episode_steps: int | None = None,
) -> EvalResult:
    """Mean return over ``num_episodes`` seeded episodes of ``env_id`` (all run side by side)."""
    envs = make_vec_env(env_id, num_episodes, seed=seed, max_episode_steps=max_episode_steps)
    try:
        return run_episodes(policy, envs, seed, deterministic)
    finally:
        envs.close()


def baseline_returns(
    env_id: str, num_episodes: int = 10, seed: int = 10_000, constant_action: int | None = None
) -> EvalResult:
    """Seeded episodes of a uniform-random policy (``constant_action=None``) or one that always takes
    ``constant_action`` (discrete envs): the baseline rows of every results table."""
    envs = make_vec_env(env_id, num_episodes, seed=seed)
    try:
        envs.action_space.seed(seed)
        envs.reset(seed=seed)
        returns, lengths = np.zeros(num_episodes), np.zeros(num_episodes, dtype=np.int64)
        running = np.ones(num_episodes, dtype=bool)
        while running.any():
            if constant_action is None:
                action = envs.action_space.sample()
            else:
                action = np.full(num_episodes, constant_action)
            _, reward, terminated, truncated, _ = envs.step(action)
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        return EvalResult(returns.tolist(), lengths.tolist())
    finally:
        envs.close()
