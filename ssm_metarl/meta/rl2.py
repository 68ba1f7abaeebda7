"""In-context meta-RL (RL², Duan et al. 2016): PPO over whole trials of :class:`~ssm_metarl.envs.trial.TrialEnv`.

The policy adapts without gradient steps: its recurrent state, which survives inner-episode ends within a
trial, carries what it has learned about the task. Training is plain recurrent PPO on the trial env (for the
``ssm`` model the update re-runs each trial segment with the parallel scan); evaluation reports the return
of inner episode i = 1..K on fixed held-out tasks (EVALUATION.md, in-context agents).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ssm_metarl.checkpoint import update_metadata
from ssm_metarl.config import PPOConfig
from ssm_metarl.envs.tasks import Task
from ssm_metarl.envs.trial import TrialEnv
from ssm_metarl.models.base import clear_step_caches
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.ppo import TrainResult, train_ppo


def trial_id(family: str, episodes_per_trial: int) -> str:
    """A registered Gymnasium id for ``family`` trials of ``episodes_per_trial`` episodes."""
    env_id = f"ssm_metarl/RL2-{family}-k{episodes_per_trial}-v0"
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point="ssm_metarl.envs.trial:TrialEnv",
            kwargs={"family": family, "episodes_per_trial": episodes_per_trial},
            disable_env_checker=True,
        )
    return env_id


def train_rl2(
    family: str,
    episodes_per_trial: int,
    cfg: PPOConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Recurrent PPO on trials of ``family`` (a new training task per trial); ``callback`` as for
    :func:`~ssm_metarl.rl.ppo.train_ppo`. The final checkpoint (when ``cfg.out_dir`` is set) records
    ``algo="rl2"``, the family and the episodes per trial."""
    cfg = dataclasses.replace(cfg, env_id=trial_id(family, episodes_per_trial))
    result = train_ppo(cfg, policy=policy, callback=callback)
    final = Path(cfg.out_dir or "") / "final"
    if cfg.out_dir is not None and final.is_dir():
        update_metadata(final, algo="rl2", family=family, episodes_per_trial=episodes_per_trial)
    return result


@torch.no_grad()
def evaluate_in_context(
    policy: ActorCritic,
    family: str,
    tasks: list[Task],
    episodes_per_trial: int,
    seed: int = 0,
    deterministic: bool = False,
) -> np.ndarray:
    """Returns (len(tasks), episodes_per_trial): inner-episode returns of one trial per task, all tasks side
    by side (one batched forward per step), the state carried across inner episodes."""
    clear_step_caches(policy)
    envs = [TrialEnv(family, episodes_per_trial, task=t) for t in tasks]
    p = next(policy.parameters())
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    B = len(envs)
    state = policy.initial_state(B)
    reset = torch.ones(B, dtype=torch.bool, device=p.device)
    returns = np.zeros((B, episodes_per_trial))
    running = np.ones(B, dtype=bool)
    while running.any():
        x = policy.normalize(torch.as_tensor(obs, device=p.device, dtype=p.dtype))
        action, _, _, state = policy.act(x, state, reset, deterministic=deterministic)
        env_action = policy.env_action(action)
        reset = torch.zeros(B, dtype=torch.bool, device=p.device)
        for b in np.flatnonzero(running):
            o, r, term, trunc, info = envs[b].step(env_action[b])
            returns[b, info["episode_in_trial"]] += r
            obs[b] = o
            running[b] = not (term or trunc)
    for e in envs:
        e.close()
    return returns
