"""Evaluate a policy on whole, seeded episodes; deterministic and stochastic returns are kept apart.

Evaluation acts through :func:`~ssm_metarl.rl.rollout.collect_episodes` (the one episode loop) with the
env *and* the policy's action noise seeded by ``seed``, inside a forked torch generator: evaluating never
changes the random stream of the training run around it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.errors import SpaceError
from ssm_metarl.results import Returns
from ssm_metarl.rl.rollout import Actor, Episodes, collect_episodes
from ssm_metarl.spaces import flat_dim


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's generator (and that of ``device`` when it is a GPU) seeded with ``seed``;
    the generator state from before the block is restored afterwards."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def check_spaces(policy: Actor, envs: VectorEnv, env_id: str) -> None:
    """Fail loudly when ``policy`` was built for other observation or action spaces than ``envs`` has."""
    obs_dim = flat_dim(envs.single_observation_space)
    if policy.obs_dim != obs_dim:
        raise SpaceError(f"policy expects {policy.obs_dim} observation features, {env_id} gives {obs_dim}")
    space = getattr(policy, "action_space", None)
    if space is not None and space != envs.single_action_space:
        raise SpaceError(f"policy acts in {space}, {env_id} expects {envs.single_action_space}")


def seeded_episodes(
    envs: VectorEnv,
    policy: Actor,
    seed: int,
    deterministic: bool = False,
    before_step: Callable[[np.ndarray], None] | None = None,
) -> Episodes:
    """One whole episode per sub-env, env resets and action noise both seeded by ``seed``."""
    with seeded(seed, policy.device):
        return collect_episodes(envs, policy, seed=seed, deterministic=deterministic, before_step=before_step)


def episodes_returns(
    episodes: list[Episodes], seeds: tuple[int, ...], label: str, tasks: tuple[str, ...], **meta: object
) -> Returns:
    """A :class:`Returns` of one evaluation per (seed, task): ``episodes[s * I + i]``."""
    S, I = len(seeds), len(tasks)
    values = np.stack([ep.returns for ep in episodes]).reshape(S, I, 1, -1)
    steps = np.array([ep.num_steps for ep in episodes]).reshape(S, I, 1)
    return Returns(label, values, steps, seeds, "eval", tasks, dict(meta))


def evaluate_policy(
    policy: Actor,
    env_id: str,
    num_episodes: int = 10,
    seed: int = 10_000,
    deterministic: bool = True,
    max_episode_steps: int | None = None,
    label: str | None = None,
) -> Returns:
    """Returns of ``num_episodes`` seeded episodes of ``env_id`` (all run side by side); raises
    :class:`~ssm_metarl.errors.SpaceError` if the policy was built for other spaces than the env has."""
    envs = make_vec_env(env_id, num_episodes, seed=seed, max_episode_steps=max_episode_steps)
    try:
        check_spaces(policy, envs, env_id)
        ep = seeded_episodes(envs, policy, seed, deterministic)
    finally:
        envs.close()
    mode = "deterministic" if deterministic else "stochastic"
    return episodes_returns([ep], (seed,), label or mode, (env_id,), deterministic=deterministic)


__all__ = ["check_spaces", "episodes_returns", "evaluate_policy", "seeded", "seeded_episodes"]
