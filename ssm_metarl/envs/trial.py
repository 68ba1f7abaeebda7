"""RL² trials (Duan et al. 2016; Wang et al. 2016): K episodes of one task back to back, as one episode.

The policy sees ``[obs, previous action, previous reward, done flag]`` and, because the *trial* is the
episode the training loop sees, its recurrent state survives the ends of the inner episodes and is reset
only when a new trial (a new task) starts. A new task is drawn from the family's training distribution at
every trial reset, unless a fixed task was set (evaluation on held-out tasks).

Observation layout (D = the inner observation's encoding, :mod:`ssm_metarl.spaces`; A = the action's: one-hot
for Discrete, concatenated one-hots for MultiDiscrete, the bits for MultiBinary, the action itself for Box):
``[obs (D), prev_action (A), prev_reward (1), done (1)]``, where ``done`` is 1 on the first step of
every inner episode after the first. ``info["episode_in_trial"]`` is the index of the inner episode a step
belongs to; at the end of a trial ``info["inner_episode_returns"]`` and ``info["inner_episode_lengths"]`` list
the inner episodes' returns and lengths.

Ids: :func:`rl2_env_id` registers ``ssm_metarl/RL2-<family>-k<K>-v0`` on first use, and
:func:`ssm_metarl.envs.make.make_env` registers any such id it is asked for, so a saved config that names one
works in a new process.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.envs.tasks import TASK_FAMILIES, Task, get_family
from ssm_metarl.errors import EnvError
from ssm_metarl.spaces import check_action_space, encode_one, encoded_bounds, flat_dim


class TrialEnv(gym.Env):
    """One trial = ``episodes_per_trial`` episodes of one task of ``family``."""

    metadata = {"render_modes": []}

    def __init__(self, family: str, episodes_per_trial: int = 2, task: Task | None = None) -> None:
        if episodes_per_trial < 1:
            raise EnvError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        self.dist = get_family(family)
        self.episodes_per_trial = episodes_per_trial
        self.fixed_task = task
        self.inner = self.dist.make_env(task or self.dist.train[0])
        inner_obs: Any = self.inner.observation_space
        act: Any = self.inner.action_space
        check_action_space(act)
        self.inner_obs_space = inner_obs
        self.act_dim = flat_dim(act) if not isinstance(act, gym.spaces.Box) else int(np.prod(act.shape))
        self.obs_dim = flat_dim(inner_obs)
        o_low, o_high = encoded_bounds(inner_obs)
        if isinstance(act, gym.spaces.Box):
            a_low, a_high = np.asarray(act.low, np.float64).ravel(), np.asarray(act.high, np.float64).ravel()
        else:
            a_low, a_high = np.zeros(self.act_dim), np.ones(self.act_dim)
        low = np.concatenate([o_low, a_low, [-np.inf, 0.0]])
        high = np.concatenate([o_high, a_high, [np.inf, 1.0]])
        self.observation_space = gym.spaces.Box(
            low.astype(np.float32), high.astype(np.float32), dtype=np.float32
        )
        self.action_space = act
        self.task: Task | None = task
        self._episode = 0
        self._returns: list[float] = []
        self._lengths: list[int] = []
        self._ret, self._len = 0.0, 0

    def set_task(self, task: Task | None) -> None:
        """Fix the task of every following trial (None: draw a training task per trial)."""
        self.fixed_task = task

    def get_task(self) -> Task | None:
        return self.task

    def _obs(self, obs: Any, action: Any, reward: Any, done: bool) -> np.ndarray:
        act = self.action_space
        if action is None:
            enc = np.zeros(self.act_dim, dtype=np.float32)
        elif isinstance(act, gym.spaces.Box):
            enc = np.asarray(action, dtype=np.float32).ravel()
        else:  # one-hot indices, concatenated one-hots, or bits: the observation encoding of the action
            enc = encode_one(act, action)
        tail = np.array([reward, float(done)], dtype=np.float32)
        return np.concatenate([encode_one(self.inner_obs_space, obs), enc, tail])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.task = self.fixed_task or self.dist.sample(self.np_random, 1)[0]
        inner: Any = self.inner.unwrapped
        inner.set_task(self.task)
        inner_seed = None if seed is None else int(self.np_random.integers(2**31))
        obs, info = self.inner.reset(seed=inner_seed)
        self._episode, self._returns, self._lengths, self._ret, self._len = 0, [], [], 0.0, 0
        return self._obs(obs, None, 0.0, False), {**info, "episode_in_trial": 0, "task": self.task.to_dict()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.inner.step(action)
        self._ret += float(reward)
        self._len += 1
        info = {**info, "episode_in_trial": self._episode}
        new_episode = False
        if terminated or truncated:
            self._returns.append(self._ret)
            self._lengths.append(self._len)
            self._ret, self._len = 0.0, 0
            self._episode += 1
            if self._episode >= self.episodes_per_trial:
                info["inner_episode_returns"] = list(self._returns)
                info["inner_episode_lengths"] = list(self._lengths)
                return self._obs(obs, action, reward, True), reward, terminated, truncated, info
            obs, _ = self.inner.reset()
            new_episode = True
        return self._obs(obs, action, reward, new_episode), reward, False, False, info

    def close(self) -> None:
        self.inner.close()


_RL2_ID = re.compile(r"^ssm_metarl/RL2-(?P<family>.+)-k(?P<k>[0-9]+)-v0$")


def rl2_env_id(family: str, episodes_per_trial: int) -> str:
    """The Gymnasium id of ``family``'s trials of ``episodes_per_trial`` episodes, registered on first use:
    ``ssm_metarl/RL2-<family>-k<K>-v0``. PPO on it is RL²."""
    get_family(family)  # an unknown family fails here, with the list of known ones
    if episodes_per_trial < 1:
        raise EnvError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
    env_id = f"ssm_metarl/RL2-{family}-k{episodes_per_trial}-v0"
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=f"{__name__}:TrialEnv",
            kwargs={"family": family, "episodes_per_trial": episodes_per_trial},
            disable_env_checker=True,
        )
    return env_id


def parse_rl2_env_id(env_id: str) -> tuple[str, int] | None:
    """(family, episodes per trial) of an RL² trial id, None for any other id."""
    m = _RL2_ID.match(env_id)
    return (m["family"], int(m["k"])) if m else None


def register_rl2_env_id(env_id: str) -> bool:
    """Register ``env_id`` if it is an RL² trial id of a known family; whether it was one."""
    parsed = parse_rl2_env_id(env_id)
    if parsed is None or parsed[0] not in TASK_FAMILIES:
        return False
    rl2_env_id(*parsed)
    return True
