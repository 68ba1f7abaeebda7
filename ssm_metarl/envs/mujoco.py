"""MuJoCo locomotion task families on Gymnasium's v5 envs (definitions: ``docs/concepts/tasks.md``).

* ``halfcheetah-vel`` (``ssm_metarl/HalfCheetahVel-v0``): target velocity ``velocity`` uniform in [0, 2]
  (MAML, Finn et al. 2017; pytorch-maml-rl; garage); reward ``-|v - velocity| - 0.05 * sum(a^2)``;
  horizon **200**, as in the MAML paper. Out of range: ``velocity`` in [2.25, 3.0] (inside the [0, 3]
  range that ProMP / PEARL / VariBAD train on). Standing still earns about ``-velocity * 200``.
* ``halfcheetah-dir`` (``ssm_metarl/HalfCheetahDir-v0``): ``direction`` in {-1, +1}; reward
  ``direction * v - 0.05 * sum(a^2)``; horizon **100**, matching learn2learn's
  ``HalfCheetahForwardBackwardEnv`` benchmark (its MAML-TRPO plot is our anchor).
* ``ant-dir`` (``ssm_metarl/AntDir-v0``): ``direction`` in {-1, +1} along x (forward/backward, as the MAML
  paper's ant experiment and ProMP's ``AntRandDirecEnv``; not learn2learn's unit circle); reward
  ``direction * v + 1.0 - 0.5 * sum(a^2) - 5e-4 * sum(clip(cfrc_ext, -1, 1)^2)``: survive bonus 1.0 and
  the control / contact costs of learn2learn / ProMP, which are Ant-v5's defaults; the episode terminates
  when the torso height leaves [0.2, 1.0] (Ant-v5's ``healthy_z_range``); horizon 200 (MAML paper).

``v`` is the torso's x-velocity from the simulator (``info["x_velocity"]`` of the v5 env: x-position
difference over one control step ``dt``). Observations are the v5 defaults (HalfCheetah (17,), Ant (105,)).

The direction families have two tasks only: their ``train`` and ``test`` splits are both directions and
they have no out-of-range split; held-out evaluation means "adapts to the direction it is given".

Each env wraps its Gymnasium MuJoCo env by composition, so this module imports MuJoCo only when an env is
built (importing :mod:`ssm_metarl.envs` stays fast); the v5 env is ``env.unwrapped.mujoco_env``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

from ssm_metarl.envs.tasks import (
    BatchedTaskVec,
    BoxTaskDistribution,
    FiniteTaskDistribution,
    Task,
    check_task,
    register_env,
    register_family,
)

HALFCHEETAH_VEL_RANGE = (0.0, 2.0)
HALFCHEETAH_VEL_BEYOND = (None, (2.25, 3.0))
CTRL_COST = 0.05  # HalfCheetah families: 0.05 * sum(a^2)
HALFCHEETAH_VEL_HORIZON = 200
HALFCHEETAH_DIR_HORIZON = 100
ANT_DIR_HORIZON = 200


class _MujocoTaskEnv(gym.Env):
    """A Gymnasium v5 MuJoCo env with a task and a task reward; subclasses set ``family`` and ``_reward``."""

    family: str
    param_name: str
    default_value: float

    def __init__(self, base: type[gym.Env], task: Task | None, **kwargs: Any) -> None:
        self.mujoco_env = base(**kwargs)
        self.observation_space = self.mujoco_env.observation_space
        self.action_space = self.mujoco_env.action_space
        self.metadata = self.mujoco_env.metadata
        self.render_mode = self.mujoco_env.render_mode
        self.set_task(task or Task(self.family, ((self.param_name, self.default_value),)))

    def set_task(self, task: Task) -> None:
        """Switch to ``task`` (at once; call ``reset`` to start a clean episode)."""
        self._value = check_task(task, self.family, [self.param_name])[self.param_name]
        self._task = task

    def get_task(self) -> Task:
        return self._task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self.mujoco_env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.mujoco_env.step(action)
        reward, terms = self._reward(np.asarray(action, dtype=np.float64), info)
        info.update(terms)
        return obs, reward, terminated, truncated, info

    def _reward(self, action: np.ndarray, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        """(reward, reward terms for ``info``) from the action (A,) and the v5 env's info."""
        raise NotImplementedError

    def render(self) -> Any:
        return self.mujoco_env.render()

    def close(self) -> None:
        self.mujoco_env.close()


def _half_cheetah() -> type[gym.Env]:
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    return HalfCheetahEnv


class _HalfCheetahTaskEnv(_MujocoTaskEnv):
    """HalfCheetah-v5 with a task reward ``forward(value, v) - 0.05 * sum(a^2)``; one formula serves this env
    and the batched :class:`HalfCheetahTaskVec`."""

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(_half_cheetah(), task, **kwargs)

    @staticmethod
    def forward_reward(value: np.ndarray | float, velocity: np.ndarray | float) -> np.ndarray | float:
        """The task's forward term from the task values (B,) and x-velocities (B,)."""
        raise NotImplementedError

    def _reward(self, action: np.ndarray, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        forward = float(self.forward_reward(float(self._value), float(info["x_velocity"])))
        ctrl = -CTRL_COST * float(np.sum(action * action))
        return forward + ctrl, {"reward_forward": forward, "reward_ctrl": ctrl}


class HalfCheetahVelEnv(_HalfCheetahTaskEnv):
    """HalfCheetah-v5 rewarded for running at ``velocity``: ``-|v - velocity| - 0.05 * sum(a^2)``."""

    family, param_name, default_value = "halfcheetah-vel", "velocity", 1.0

    @staticmethod
    def forward_reward(value: np.ndarray | float, velocity: np.ndarray | float) -> np.ndarray | float:
        return -np.abs(velocity - value)


class HalfCheetahDirEnv(_HalfCheetahTaskEnv):
    """HalfCheetah-v5 rewarded for running in ``direction`` (+1 forward, -1 backward)."""

    family, param_name, default_value = "halfcheetah-dir", "direction", 1.0

    @staticmethod
    def forward_reward(value: np.ndarray | float, velocity: np.ndarray | float) -> np.ndarray | float:
        return value * velocity


class AntDirEnv(_MujocoTaskEnv):
    """Ant-v5 rewarded for running in ``direction`` along x, with Ant-v5's survive bonus and costs."""

    family, param_name, default_value = "ant-dir", "direction", 1.0

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        from gymnasium.envs.mujoco.ant_v5 import AntEnv

        super().__init__(AntEnv, task, **kwargs)

    def _reward(self, action: np.ndarray, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        forward = self._value * float(info["x_velocity"])
        # Ant-v5's own terms: healthy_reward 1.0, ctrl_cost_weight 0.5, contact_cost_weight 5e-4
        rest = float(info["reward_survive"]) + float(info["reward_ctrl"]) + float(info["reward_contact"])
        return forward + rest, {"reward_forward": forward}


class HalfCheetahTaskVec(BatchedTaskVec):
    """B HalfCheetah task envs stepped in one loop over raw MuJoCo; equals a ``SyncVectorEnv`` of them.

    The Gymnasium path spends about two thirds of a step outside the simulator (wrappers, per-env info
    dicts, per-env reward reductions); here each sub-env's step is ``mj_step`` and its observation, and the
    rewards are one NumPy expression over the batch. Each sub-env keeps its own v5 env (model, data and
    seeded generator), so resets draw the same noise as the Gymnasium env seeded alike and every
    observation, reward and flag is bitwise the same (``tests/unit/test_mujoco_vec.py``). Same-step
    autoreset at the time limit, as :mod:`ssm_metarl.envs.make`; the episode's last observation is in
    ``info["final_obs"][b]`` and its ``x_velocity`` / reward terms in ``info["final_info"]``.
    """

    def __init__(
        self, env_cls: type[_HalfCheetahTaskEnv], tasks: Sequence[Task], horizon: int, **kwargs: Any
    ) -> None:
        import mujoco

        self._mj_step = mujoco.mj_step
        self._envs = [env_cls(task, **kwargs) for task in tasks]
        self._cls = env_cls
        self.num_envs = len(self._envs)
        self.horizon = horizon
        first: Any = self._envs[0].mujoco_env  # a gymnasium MujocoEnv
        self._init_spaces(first.observation_space, first.action_space)
        self._frame_skip = first.frame_skip
        self._dt = first.dt
        self._skip = int(first._exclude_current_positions_from_observation)
        self._nq = first.model.nq - self._skip
        self._nv = first.model.nv
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.set_tasks(tasks)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Give env ``b`` the task ``tasks[b]`` (at once; reset to start clean episodes)."""
        self._check_num_tasks(tasks)
        for env, task in zip(self._envs, tasks):
            env.set_task(task)
        self._value = np.array([env._value for env in self._envs], dtype=np.float64)  # (B,)
        self.tasks = list(tasks)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._seed(seed)
        obs = np.stack(
            [e.reset(seed=None if seed is None else seed + i)[0] for i, e in enumerate(self._envs)]
        )
        self._elapsed[:] = 0
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)  # (B, A)
        velocity = np.empty(self.num_envs)
        obs = np.empty((self.num_envs, self._nq + self._nv))
        skip, nq = self._skip, self._nq
        for b, env in enumerate(self._envs):
            sim: Any = env.mujoco_env
            data = sim.data
            x_before = data.qpos[0]
            data.ctrl[:] = a[b]
            self._mj_step(sim.model, data, nstep=self._frame_skip)
            velocity[b] = (data.qpos[0] - x_before) / self._dt
            obs[b, :nq] = data.qpos[skip:]  # the v5 observation: qpos (less x unless asked), qvel
            obs[b, nq:] = data.qvel
        forward = self._cls.forward_reward(self._value, velocity)
        ctrl = -CTRL_COST * np.sum(a * a, axis=1)
        reward = forward + ctrl
        self._elapsed += 1
        truncated = self._elapsed >= self.horizon
        terminated = np.zeros(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        if truncated.any():
            done = truncated.copy()
            terms = {"x_velocity": velocity, "reward_forward": forward, "reward_ctrl": ctrl}
            final_info = {k: np.where(done, v, 0.0) for k, v in terms.items()}
            final_info.update({f"_{k}": done.copy() for k in terms})
            info = self._autoreset_info(obs, done, final_info)
            for i in np.flatnonzero(done):
                obs[i] = self._envs[i].reset()[0]
            self._elapsed[done] = 0
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for env in self._envs:
            env.close()


class _HalfCheetahFamily:
    """``make_vec_env(tasks, seed, fast=True)`` gives a :class:`HalfCheetahTaskVec` (mixed into a family)."""

    env_cls: type[_HalfCheetahTaskEnv]
    horizon: int

    def make_vec_env(
        self, tasks: Sequence[Task], seed: int | None, fast: bool = False, **kwargs: Any
    ) -> VectorEnv:
        kwargs = {**self.env_kwargs, **kwargs}  # type: ignore[attr-defined]
        if not fast or "render_mode" in kwargs:
            return super().make_vec_env(tasks, seed, **kwargs)  # type: ignore[misc]
        for task in tasks:
            check_task(task, self.env_cls.family, [self.env_cls.param_name])
        horizon = kwargs.pop("max_episode_steps", None) or self.horizon
        vec_env = HalfCheetahTaskVec(self.env_cls, tasks, horizon, **kwargs)
        vec_env.reset(seed=seed)
        return vec_env


class HalfCheetahVelDistribution(_HalfCheetahFamily, BoxTaskDistribution):
    """``halfcheetah-vel``; ``fast=True`` vector envs are :class:`HalfCheetahTaskVec`."""

    env_cls, horizon = HalfCheetahVelEnv, HALFCHEETAH_VEL_HORIZON


class HalfCheetahDirDistribution(_HalfCheetahFamily, FiniteTaskDistribution):
    """``halfcheetah-dir``; ``fast=True`` vector envs are :class:`HalfCheetahTaskVec`."""

    env_cls, horizon = HalfCheetahDirEnv, HALFCHEETAH_DIR_HORIZON


_DIRECTIONS = [{"direction": -1.0}, {"direction": 1.0}]


_MODULE = "ssm_metarl.envs.mujoco"
register_env("ssm_metarl/HalfCheetahVel-v0", f"{_MODULE}:HalfCheetahVelEnv", HALFCHEETAH_VEL_HORIZON)
register_env("ssm_metarl/HalfCheetahDir-v0", f"{_MODULE}:HalfCheetahDirEnv", HALFCHEETAH_DIR_HORIZON)
register_env("ssm_metarl/AntDir-v0", f"{_MODULE}:AntDirEnv", ANT_DIR_HORIZON)

register_family(
    HalfCheetahVelDistribution(
        "halfcheetah-vel",
        "ssm_metarl/HalfCheetahVel-v0",
        {"velocity": HALFCHEETAH_VEL_RANGE},
        {"velocity": HALFCHEETAH_VEL_BEYOND},
    )
)
register_family(HalfCheetahDirDistribution("halfcheetah-dir", "ssm_metarl/HalfCheetahDir-v0", _DIRECTIONS))
register_family(FiniteTaskDistribution("ant-dir", "ssm_metarl/AntDir-v0", _DIRECTIONS))
