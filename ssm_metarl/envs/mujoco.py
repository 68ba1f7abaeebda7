"""MuJoCo locomotion task families on Gymnasium's v5 envs (ANCHORS.md "Task definitions").

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

from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.envs.tasks import (
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


class HalfCheetahVelEnv(_MujocoTaskEnv):
    """HalfCheetah-v5 rewarded for running at ``velocity``: ``-|v - velocity| - 0.05 * sum(a^2)``."""

    family, param_name, default_value = "halfcheetah-vel", "velocity", 1.0

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(_half_cheetah(), task, **kwargs)

    def _reward(self, action: np.ndarray, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        forward = -abs(float(info["x_velocity"]) - self._value)
        ctrl = -CTRL_COST * float(np.sum(action * action))
        return forward + ctrl, {"reward_forward": forward, "reward_ctrl": ctrl}


class HalfCheetahDirEnv(_MujocoTaskEnv):
    """HalfCheetah-v5 rewarded for running in ``direction`` (+1 forward, -1 backward)."""

    family, param_name, default_value = "halfcheetah-dir", "direction", 1.0

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(_half_cheetah(), task, **kwargs)

    def _reward(self, action: np.ndarray, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        forward = self._value * float(info["x_velocity"])
        ctrl = -CTRL_COST * float(np.sum(action * action))
        return forward + ctrl, {"reward_forward": forward, "reward_ctrl": ctrl}


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


def _directions(name: str, env_id: str) -> FiniteTaskDistribution:
    return FiniteTaskDistribution(name, env_id, [{"direction": -1.0}, {"direction": 1.0}])


_MODULE = "ssm_metarl.envs.mujoco"
register_env("ssm_metarl/HalfCheetahVel-v0", f"{_MODULE}:HalfCheetahVelEnv", HALFCHEETAH_VEL_HORIZON)
register_env("ssm_metarl/HalfCheetahDir-v0", f"{_MODULE}:HalfCheetahDirEnv", HALFCHEETAH_DIR_HORIZON)
register_env("ssm_metarl/AntDir-v0", f"{_MODULE}:AntDirEnv", ANT_DIR_HORIZON)

register_family(
    BoxTaskDistribution(
        "halfcheetah-vel",
        "ssm_metarl/HalfCheetahVel-v0",
        {"velocity": HALFCHEETAH_VEL_RANGE},
        {"velocity": HALFCHEETAH_VEL_BEYOND},
    )
)
register_family(_directions("halfcheetah-dir", "ssm_metarl/HalfCheetahDir-v0"))
register_family(_directions("ant-dir", "ssm_metarl/AntDir-v0"))
