"""Evaluate a policy on whole, seeded episodes; deterministic and stochastic returns are kept apart."""

from __future__ import annotations

from collections.abc import Callable
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


def check_spaces(policy: ActorCritic, envs, env_id: str) -> None:
    """Fail loudly when ``policy`` was built for other observation or action spaces than ``envs`` has."""
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    if policy.backbone.input_dim != obs_dim:
        raise ValueError(
            f"policy expects {policy.backbone.input_dim} observation features, {env_id} gives {obs_dim}"
        )
    if policy.action_space != envs.single_action_space:
        raise ValueError(f"policy acts in {policy.action_space}, {env_id} expects {envs.single_action_space}")


def _episode_loop(envs, seed: int | None, act: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> EvalResult:
    """One episode in each sub-env of ``envs``; ``act(obs, reset)`` maps (B, ...) observations and the
    (B,) episode-start flags to env actions. Steps after an env's episode ended are not counted."""
    obs, _ = envs.reset(seed=seed)
    B = envs.num_envs
    reset = np.ones(B, dtype=bool)
    returns, lengths = np.zeros(B), np.zeros(B, dtype=np.int64)
    running = np.ones(B, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = envs.step(act(obs, reset))
        returns += reward * running
        lengths += running
        reset = terminated | truncated
        running &= ~reset
    return EvalResult(returns.tolist(), lengths.tolist())


@torch.no_grad()
def run_episodes(policy: ActorCritic, envs, seed: int | None, deterministic: bool) -> EvalResult:
    """One episode in each env of ``envs`` (a vector env), acting with the policy's step path."""
    clear_step_caches(policy)
    p = next(policy.parameters())
    state = policy.initial_state(envs.num_envs)

    def act(obs: np.ndarray, reset: np.ndarray) -> np.ndarray:
        nonlocal state
        x = policy.normalize(torch.as_tensor(obs, device=p.device).to(p.dtype).reshape(envs.num_envs, -1))
        reset_t = torch.as_tensor(reset, device=p.device)
        action, _, _, state = policy.act(x, state, reset_t, deterministic=deterministic)
        return policy.env_action(action)

    return _episode_loop(envs, seed, act)


def evaluate_policy(
    policy: ActorCritic,
    env_id: str,
    num_episodes: int = 10,
    seed: int = 10_000,
    deterministic: bool = True,
    max_episode_steps: int | None = None,
) -> EvalResult:
    """Mean return over ``num_episodes`` seeded episodes of ``env_id`` (all run side by side); raises if the
    policy was built for other spaces than the env has."""
    envs = make_vec_env(env_id, num_episodes, seed=seed, max_episode_steps=max_episode_steps)
    try:
        check_spaces(policy, envs, env_id)
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
        if constant_action is None:
            return _episode_loop(envs, seed, lambda obs, reset: envs.action_space.sample())
        return _episode_loop(envs, seed, lambda obs, reset: np.full(num_episodes, constant_action))
    finally:
        envs.close()
