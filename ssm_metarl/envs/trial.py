"""RL² trials (Duan et al. 2016; Wang et al. 2016): K episodes of one task back to back, as one episode.

The policy sees ``[obs, previous action, previous reward, done flag]`` and, because the *trial* is the
episode the training loop sees, its recurrent state survives the ends of the inner episodes and is reset
only when a new trial (a new task) starts. A new task is drawn from the family's training distribution at
every trial reset, unless a fixed task was set (evaluation on held-out tasks).

Observation layout (D = obs features, A = action encoding: one-hot n for Discrete, the action itself for
Box): ``[obs (D), prev_action (A), prev_reward (1), done (1)]``, where ``done`` is 1 on the first step of
every inner episode after the first. ``info["episode_in_trial"]`` is the index of the inner episode a step
belongs to, and ``info["inner_episode_returns"]`` lists the finished inner episodes' returns.

Registered ids: ``ssm_metarl/RL2-<family>-v0`` for every family (``episodes_per_trial`` default 2; pass
``gym.make(..., episodes_per_trial=K)``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.envs.tasks import TASK_FAMILIES, Task, get_family


class TrialEnv(gym.Env):
    """One trial = ``episodes_per_trial`` episodes of one task of ``family``."""

    metadata = {"render_modes": []}

    def __init__(self, family: str, episodes_per_trial: int = 2, task: Task | None = None) -> None:
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        self.dist = get_family(family)
        self.episodes_per_trial = episodes_per_trial
        self.fixed_task = task
        self.inner = self.dist.make_env(task or self.dist.train[0])
        inner_obs, act = self.inner.observation_space, self.inner.action_space
        if not isinstance(inner_obs, gym.spaces.Box):
            raise ValueError(f"RL² needs a Box observation space, {family} has {inner_obs}")
        self.discrete = isinstance(act, gym.spaces.Discrete)
        self.act_dim = int(act.n) if self.discrete else int(np.prod(act.shape))
        self.obs_dim = int(np.prod(inner_obs.shape))
        if self.discrete:
            a_low, a_high = np.zeros(self.act_dim), np.ones(self.act_dim)
        else:
            a_low, a_high = np.asarray(act.low, np.float64).ravel(), np.asarray(act.high, np.float64).ravel()
        low = np.concatenate([np.asarray(inner_obs.low, np.float64).ravel(), a_low, [-np.inf, 0.0]])
        high = np.concatenate([np.asarray(inner_obs.high, np.float64).ravel(), a_high, [np.inf, 1.0]])
        self.observation_space = gym.spaces.Box(
            low.astype(np.float32), high.astype(np.float32), dtype=np.float32
        )
        self.action_space = act
        self.task: Task | None = task
        self._episode = 0
        self._returns: list[float] = []
        self._ret = 0.0

    def set_task(self, task: Task | None) -> None:
        """Fix the task of every following trial (None: draw a training task per trial)."""
        self.fixed_task = task

    def get_task(self) -> Task | None:
        return self.task

    def _obs(self, obs: np.ndarray, action: Any, reward: float, done: bool) -> np.ndarray:
        enc = np.zeros(self.act_dim, dtype=np.float32)
        if action is not None:
            if self.discrete:
                enc[int(action)] = 1.0
            else:
                enc[:] = np.asarray(action, dtype=np.float32).ravel()
        tail = np.array([reward, float(done)], dtype=np.float32)
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), enc, tail])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.task = self.fixed_task or self.dist.sample(self.np_random, 1)[0]
        self.inner.unwrapped.set_task(self.task)
        inner_seed = None if seed is None else int(self.np_random.integers(2**31))
        obs, info = self.inner.reset(seed=inner_seed)
        self._episode, self._returns, self._ret = 0, [], 0.0
        return self._obs(obs, None, 0.0, False), {**info, "episode_in_trial": 0, "task": self.task.to_dict()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.inner.step(action)
        self._ret += float(reward)
        info = {**info, "episode_in_trial": self._episode}
        new_episode = False
        if terminated or truncated:
            self._returns.append(self._ret)
            self._ret = 0.0
            self._episode += 1
            if self._episode >= self.episodes_per_trial:
                info["inner_episode_returns"] = list(self._returns)
                return self._obs(obs, action, reward, True), reward, terminated, truncated, info
            obs, _ = self.inner.reset()
            new_episode = True
        return self._obs(obs, action, reward, new_episode), reward, False, False, info

    def close(self) -> None:
        self.inner.close()


def trial_env_id(family: str) -> str:
    return f"ssm_metarl/RL2-{family}-v0"


for _name in list(TASK_FAMILIES):
    if trial_env_id(_name) not in gym.registry:
        gym.register(
            id=trial_env_id(_name),
            entry_point=f"{__name__}:TrialEnv",
            kwargs={"family": _name},
            disable_env_checker=True,
        )
