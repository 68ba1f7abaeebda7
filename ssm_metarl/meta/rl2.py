"""In-context meta-RL (RL², Duan et al. 2016): PPO over whole trials of :class:`~ssm_metarl.envs.trial.TrialEnv`.

The policy adapts without gradient steps: its recurrent state, which survives inner-episode ends within a
trial, carries what it has learned about the task. Training is plain recurrent PPO on the trial env id
(:func:`~ssm_metarl.envs.trial.rl2_env_id`; for the ``ssm`` model the update re-runs each trial segment with
the parallel scan); evaluation reports the return of inner episode i = 1..K on fixed held-out tasks
(``docs/concepts/evaluation.md``, in-context agents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ssm_metarl.config import PPOConfig
from ssm_metarl.envs.tasks import Task
from ssm_metarl.envs.trial import TrialEnv, parse_rl2_env_id
from ssm_metarl.errors import ConfigError
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.results import Returns
from ssm_metarl.rl.evaluate import seeded_episodes
from ssm_metarl.rl.ppo import TrainResult, train_ppo


def train_rl2(
    cfg: PPOConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Recurrent PPO on the trials ``cfg.env_id`` names (``recipe("rl2", family)`` or
    ``rl2_env_id(family, K)``): a new training task per trial. ``callback`` as for
    :func:`~ssm_metarl.rl.ppo.train_ppo`; the final checkpoint records the family and the episodes per trial."""
    parsed = parse_rl2_env_id(cfg.env_id)
    if parsed is None:
        raise ConfigError(
            f"RL² trains on a task family's trial env, not {cfg.env_id!r}: use recipe('rl2', family) or "
            "env_id=ssm_metarl.envs.trial.rl2_env_id(family, episodes_per_trial)"
        )
    family, k = parsed
    return train_ppo(cfg, policy, callback, algo="rl2", metadata={"family": family, "episodes_per_trial": k})


def _trial(family: str, k: int, task: Task) -> Callable[[], TrialEnv]:
    return lambda: TrialEnv(family, k, task=task)


def trial_vec_env(family: str, episodes_per_trial: int, tasks: Sequence[Task]) -> SyncVectorEnv:
    """One sub-env per task, each running trials of ``episodes_per_trial`` episodes of its task."""
    return SyncVectorEnv(
        [_trial(family, episodes_per_trial, t) for t in tasks], autoreset_mode=AutoresetMode.SAME_STEP
    )


def evaluate_in_context(
    policy: ActorCritic,
    family: str,
    tasks: Sequence[Task],
    episodes_per_trial: int,
    seeds: Sequence[int] = (0,),
    deterministic: bool = False,
    label: str = "in-context",
) -> Returns:
    """One trial per task and seed, all tasks side by side (one batched forward per step), the state carried
    across inner episodes: ``values[s, i, k, 0]`` is the return of inner episode k on task i with seed s."""
    per_seed, steps = [], []
    for seed in seeds:
        envs = trial_vec_env(family, episodes_per_trial, tasks)
        try:
            ep = seeded_episodes(envs, policy, seed, deterministic)
        finally:
            envs.close()
        per_seed.append([np.asarray(info["inner_episode_returns"], dtype=float) for info in ep.infos])
        steps.append([np.asarray(info["inner_episode_lengths"]) for info in ep.infos])
    values = np.asarray(per_seed)[..., None]  # (S, I, K, 1)
    return Returns(
        label,
        values,
        np.asarray(steps),
        tuple(seeds),
        "episode",
        tuple(str(t) for t in tasks),
        {"family": family, "episodes_per_trial": episodes_per_trial, "deterministic": deterministic},
    )


__all__ = ["evaluate_in_context", "train_rl2", "trial_vec_env"]
