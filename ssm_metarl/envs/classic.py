"""Classic-control and RL² task families: varied-physics CartPole / Pendulum, 2D navigation, bandits, MDPs.

Definitions (``docs/concepts/tasks.md``; our own ranges where no paper fixes them):

* ``cartpole-physics`` (``ssm_metarl/CartPolePhysics-v0``, horizon 500 as CartPole-v1): Gymnasium's
  CartPole with ``length`` (CartPoleEnv's *half* pole length, default 0.5) in [0.25, 1.0], ``masspole`` in
  [0.05, 0.5], ``masscart`` in [0.5, 2.0], ``gravity`` in [5, 15], ``force_mag`` in [5, 15]; out of range:
  every parameter in :data:`CARTPOLE_BEYOND`.
* ``pendulum-physics`` (``ssm_metarl/PendulumPhysics-v0``, horizon 200 as Pendulum-v1): ``mass`` in
  [0.5, 1.5], ``length`` in [0.5, 1.5], ``gravity`` in [5, 15]; out of range: :data:`PENDULUM_BEYOND`.
* ``navigation-2d`` (``ssm_metarl/Navigation2D-v0``): exactly MAML's 2D navigation (Finn et al. 2017,
  sec. 5.2; pytorch-maml-rl ``Navigation2DEnv``): the point starts at the origin, the goal is uniform in
  [-0.5, 0.5]^2, the action is a velocity clipped to [-0.1, 0.1] per axis, the reward is minus the L2
  distance to the goal *after* the move, the episode terminates when |dx| < 0.01 and |dy| < 0.01 and is
  truncated at 100 steps. Out of range: both goal coordinates in ±[0.6, 1.0]. :class:`Navigation2DVec`
  runs B tasks at once in NumPy.
* ``bandit`` and ``bandit-k{K}-n{N}``, K in {5, 10, 50}, N in {10, 100, 500} (``ssm_metarl/Bandit-v0``;
  ``bandit`` is K=5, N=10): RL² (Duan et al. 2016) Bernoulli bandits, arm means U[0, 1], N pulls per
  episode, reward 0/1, observation a constant zero of shape (1,) (the RL² trial wrapper supplies the
  previous action and reward).
* ``tabular-mdp`` (``ssm_metarl/TabularMDP-v0``): RL²'s random MDPs: 10 states, 5 actions, transitions
  Dirichlet(1), mean rewards N(1, 1), rewards N(mean, 1), every episode starts in state 0 and lasts 10
  steps; observation the one-hot state, (10,).

Bandit and MDP episodes end with ``terminated=True`` after N pulls / 10 steps: the fixed horizon is part
of these finite-horizon problems (the return is the sum over exactly that many steps), so nothing is
bootstrapped beyond it. Navigation, CartPole and Pendulum use Gymnasium's ``TimeLimit`` (``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from gymnasium.vector import VectorEnv

from ssm_metarl.envs.tasks import (
    BatchedTaskVec,
    BoxTaskDistribution,
    Task,
    TaskDistribution,
    check_task,
    register_env,
    register_family,
)

CARTPOLE_DEFAULTS = {"length": 0.5, "masspole": 0.1, "masscart": 1.0, "gravity": 9.8, "force_mag": 10.0}
CARTPOLE_RANGES = {
    "length": (0.25, 1.0),
    "masspole": (0.05, 0.5),
    "masscart": (0.5, 2.0),
    "gravity": (5.0, 15.0),
    "force_mag": (5.0, 15.0),
}
CARTPOLE_BEYOND = {
    "length": ((0.1, 0.2), (1.25, 2.0)),
    "masspole": ((0.02, 0.04), (0.75, 1.0)),
    "masscart": ((0.25, 0.4), (2.5, 4.0)),
    "gravity": ((2.5, 4.0), (17.5, 20.0)),
    "force_mag": ((2.5, 4.0), (17.5, 20.0)),
}
PENDULUM_DEFAULTS = {"mass": 1.0, "length": 1.0, "gravity": 10.0}
PENDULUM_RANGES = {"mass": (0.5, 1.5), "length": (0.5, 1.5), "gravity": (5.0, 15.0)}
PENDULUM_BEYOND = {
    "mass": ((0.2, 0.4), (1.75, 2.5)),
    "length": ((0.2, 0.4), (1.75, 2.5)),
    "gravity": ((2.0, 4.0), (17.5, 25.0)),
}
NAV_RANGES = {"goal_x": (-0.5, 0.5), "goal_y": (-0.5, 0.5)}
NAV_BEYOND = {"goal_x": ((-1.0, -0.6), (0.6, 1.0)), "goal_y": ((-1.0, -0.6), (0.6, 1.0))}
NAV_HORIZON = 100
NAV_MAX_SPEED = 0.1  # per-axis action clip
NAV_GOAL_TOLERANCE = 0.01  # |dx| and |dy| below this end the episode


class _TaskMixin:
    """``set_task`` / ``get_task`` for an env whose task is a fixed set of named parameters."""

    family: str
    param_names: Sequence[str]  # the task parameters, set by the subclass
    _task: Task

    def _apply(self, params: dict[str, float]) -> None:
        raise NotImplementedError

    def set_task(self, task: Task) -> None:
        """Switch to ``task``; it takes effect at once (call ``reset`` to start a clean episode)."""
        expected = task.family if isinstance(task, Task) and self._accepts(task) else self.family
        self._apply(check_task(task, expected, self.param_names))
        self._task = task

    def _accepts(self, task: Task) -> bool:
        """Whether this env runs tasks of ``task.family`` (bandits accept their grid families too)."""
        return task.family == self.family

    def get_task(self) -> Task:
        """The task the env runs now."""
        return self._task


class CartPolePhysicsEnv(_TaskMixin, CartPoleEnv):
    """Gymnasium's CartPole with the task's physics; obs (4,), Discrete(2) actions, reward 1 per step."""

    family, param_names = "cartpole-physics", tuple(CARTPOLE_DEFAULTS)

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_task(task or Task.from_params(self.family, CARTPOLE_DEFAULTS))

    def _apply(self, p: dict[str, float]) -> None:
        self.length, self.masspole, self.masscart = p["length"], p["masspole"], p["masscart"]
        self.gravity, self.force_mag = p["gravity"], p["force_mag"]
        self.total_mass = self.masspole + self.masscart  # derived quantities CartPoleEnv.step reads
        self.polemass_length = self.masspole * self.length


class PendulumPhysicsEnv(_TaskMixin, PendulumEnv):
    """Gymnasium's Pendulum with the task's mass, length and gravity; obs (3,), torque in [-2, 2]."""

    family, param_names = "pendulum-physics", tuple(PENDULUM_DEFAULTS)

    def __init__(self, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_task(task or Task.from_params(self.family, PENDULUM_DEFAULTS))

    def _apply(self, p: dict[str, float]) -> None:
        self.m, self.l, self.g = p["mass"], p["length"], p["gravity"]


def _nav_spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    obs = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    act = gym.spaces.Box(-NAV_MAX_SPEED, NAV_MAX_SPEED, shape=(2,), dtype=np.float32)
    return obs, act


class Navigation2DEnv(_TaskMixin, gym.Env):
    """MAML's 2D navigation (see the module docstring): obs = position (2,), action = velocity (2,).

    The position is kept in float64 and returned as float32; the reward is ``-||pos - goal||`` after the
    move. The 100-step horizon comes from the registered ``TimeLimit``.
    """

    family, param_names = "navigation-2d", tuple(NAV_RANGES)
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: Task | None = None) -> None:
        self.observation_space, self.action_space = _nav_spaces()
        self._pos = np.zeros(2)
        self.set_task(task or Task.from_params(self.family, {"goal_x": 0.0, "goal_y": 0.0}))

    def _apply(self, p: dict[str, float]) -> None:
        self._goal = np.array([p["goal_x"], p["goal_y"]])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        return self._pos.astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -NAV_MAX_SPEED, NAV_MAX_SPEED)
        self._pos = self._pos + a
        dx, dy = self._pos[0] - self._goal[0], self._pos[1] - self._goal[1]
        reward = -np.sqrt(dx * dx + dy * dy)
        terminated = bool(abs(dx) < NAV_GOAL_TOLERANCE and abs(dy) < NAV_GOAL_TOLERANCE)
        return self._pos.astype(np.float32), float(reward), terminated, False, {}


class Navigation2DVec(BatchedTaskVec):
    """B navigation tasks stepped together in NumPy; equals a ``SyncVectorEnv`` of :class:`Navigation2DEnv`.

    Same-step autoreset like :mod:`ssm_metarl.envs.make`: where an episode ends (goal reached or 100 steps),
    ``obs[b]`` is already the next episode's first observation (the origin) and the reached position is in
    ``info["final_obs"][b]`` (object array, valid where ``info["_final_obs"][b]``). Reset needs no
    randomness, so ``seed`` only seeds the spaces. obs (B, 2) float32, reward (B,) float64.
    """

    def __init__(self, tasks: Sequence[Task], horizon: int = NAV_HORIZON) -> None:
        self.num_envs = len(tasks)
        self.horizon = horizon
        self._init_spaces(*_nav_spaces())
        self._pos = np.zeros((self.num_envs, 2))  # (B, 2)
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)  # (B,)
        self.set_tasks(tasks)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Give env ``b`` the goal of ``tasks[b]`` (at once; reset to start clean episodes)."""
        self._check_num_tasks(tasks)
        params = [check_task(t, Navigation2DEnv.family, list(NAV_RANGES)) for t in tasks]
        self._goal = np.array([[p["goal_x"], p["goal_y"]] for p in params])  # (B, 2)
        self.tasks = list(tasks)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._seed(seed)
        self._pos[:] = 0.0
        self._elapsed[:] = 0
        return self._pos.astype(np.float32), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.clip(
            np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 2), -NAV_MAX_SPEED, NAV_MAX_SPEED
        )
        self._pos += a
        d = self._pos - self._goal  # (B, 2)
        reward = -np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])  # (B,)
        terminated = (np.abs(d[:, 0]) < NAV_GOAL_TOLERANCE) & (np.abs(d[:, 1]) < NAV_GOAL_TOLERANCE)
        self._elapsed += 1
        truncated = self._elapsed >= self.horizon  # as TimeLimit: set even if terminated at the last step
        obs = self._pos.astype(np.float32)  # (B, 2)
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any():
            info = self._autoreset_info(obs, done, {})
            self._pos[done] = 0.0
            self._elapsed[done] = 0
            obs[done] = 0.0
        return obs, reward, terminated, truncated, info


class NavigationDistribution(BoxTaskDistribution):
    """``navigation-2d``; ``make_vec_env(tasks, seed, fast=True)`` gives a :class:`Navigation2DVec`."""

    def make_vec_env(
        self, tasks: Sequence[Task], seed: int | None, fast: bool = False, **kwargs: Any
    ) -> VectorEnv:
        if not fast:
            return super().make_vec_env(tasks, seed, **kwargs)
        vec_env = Navigation2DVec(tasks, **kwargs)
        vec_env.reset(seed=seed)
        return vec_env


class BanditEnv(_TaskMixin, gym.Env):
    """Bernoulli K-armed bandit, N pulls per episode (RL², Duan et al. 2016, sec. 4.1).

    obs: constant zeros (1,); action: Discrete(K); reward 1 with probability ``p{arm}``, else 0, drawn as
    ``u < p`` with ``u`` from the env's RNG (so two tasks seeded alike share their uniforms).
    """

    family = "bandit"
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: Task | None = None, k: int = 5, n: int = 10) -> None:
        if k < 2 or n < 1:
            raise ValueError(f"a bandit needs k >= 2 arms and n >= 1 pulls, got k={k}, n={n}")
        self.k, self.n = k, n
        self.param_names = [f"p{i}" for i in range(k)]
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(k)
        self._t = 0
        self.set_task(task or Task(self.family, tuple((f"p{i}", 0.5) for i in range(k))))

    def _accepts(self, task: Task) -> bool:  # "bandit" and the grid families "bandit-k{K}-n{N}"
        return task.family.startswith("bandit")

    def _apply(self, p: dict[str, float]) -> None:
        self._means = np.array([p[f"p{i}"] for i in range(self.k)])  # (K,)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not an arm of this {self.k}-armed bandit")
        reward = float(self.np_random.random() < self._means[int(action)])
        self._t += 1
        return np.zeros(1, dtype=np.float32), reward, self._t >= self.n, False, {}


class BanditDistribution(TaskDistribution):
    """K-armed Bernoulli bandits with arm means U[0, 1] and N pulls per episode."""

    def __init__(self, k: int, n: int, name: str | None = None) -> None:
        super().__init__(name or f"bandit-k{k}-n{n}", "ssm_metarl/Bandit-v0", {"k": k, "n": n})
        self.k, self.n = k, n

    def sample(self, rng: np.random.Generator, n: int) -> list[Task]:
        means = rng.uniform(0.0, 1.0, size=(n, self.k))  # (n, K)
        return [Task(self.name, tuple((f"p{i}", m) for i, m in enumerate(row))) for row in means]


def _mdp_names(num_states: int, num_actions: int) -> list[str]:
    s_a = [(s, a) for s in range(num_states) for a in range(num_actions)]
    return [f"P{s}_{a}_{s2}" for s, a in s_a for s2 in range(num_states)] + [f"R{s}_{a}" for s, a in s_a]


class TabularMDPEnv(_TaskMixin, gym.Env):
    """RL²'s random tabular MDP (Duan et al. 2016, sec. 4.2): obs one-hot state (S,), Discrete(A) actions.

    Task parameters: ``P{s}_{a}_{s'}`` transition probabilities and ``R{s}_{a}`` mean rewards; the reward
    is N(R[s, a], 1); episodes start in state 0 and last ``horizon`` = 10 steps.
    """

    family = "tabular-mdp"
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, task: Task | None = None, num_states: int = 10, num_actions: int = 5, horizon: int = 10
    ) -> None:
        self.num_states, self.num_actions, self.horizon = num_states, num_actions, horizon
        self.param_names = _mdp_names(num_states, num_actions)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)
        self._state, self._t = 0, 0
        uniform = 1.0 / num_states
        default = [uniform] * (num_states * num_actions * num_states) + [0.0] * (num_states * num_actions)
        self.set_task(task or Task(self.family, tuple(zip(self.param_names, default))))

    def _apply(self, p: dict[str, float]) -> None:
        S, A = self.num_states, self.num_actions
        values = np.array([p[k] for k in self.param_names])
        self._cdf = np.cumsum(values[: S * A * S].reshape(S, A, S), axis=-1)  # (S, A, S)
        self._mean_reward = values[S * A * S :].reshape(S, A)  # (S, A)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_states, dtype=np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state, self._t = 0, 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not one of the {self.num_actions} actions")
        s, a = self._state, int(action)
        reward = float(self.np_random.normal(self._mean_reward[s, a], 1.0))
        cdf = self._cdf[s, a]
        self._state = min(
            int(np.searchsorted(cdf, self.np_random.random() * cdf[-1], side="right")), len(cdf) - 1
        )
        self._t += 1
        return self._obs(), reward, self._t >= self.horizon, False, {}


class TabularMDPDistribution(TaskDistribution):
    """10-state 5-action MDPs: transitions Dirichlet(1), mean rewards N(1, 1) (RL², sec. 4.2)."""

    def __init__(self, num_states: int = 10, num_actions: int = 5) -> None:
        super().__init__("tabular-mdp", "ssm_metarl/TabularMDP-v0", {})
        self.num_states, self.num_actions = num_states, num_actions

    def sample(self, rng: np.random.Generator, n: int) -> list[Task]:
        S, A = self.num_states, self.num_actions
        transitions = rng.dirichlet(np.ones(S), size=(n, S, A))  # (n, S, A, S)
        mean_rewards = rng.normal(1.0, 1.0, size=(n, S, A))  # (n, S, A)
        names = _mdp_names(S, A)
        return [
            Task(self.name, tuple(zip(names, np.concatenate([p.ravel(), r.ravel()]))))
            for p, r in zip(transitions, mean_rewards)
        ]


_MODULE = "ssm_metarl.envs.classic"
register_env("ssm_metarl/CartPolePhysics-v0", f"{_MODULE}:CartPolePhysicsEnv", 500, reward_threshold=475.0)
register_env("ssm_metarl/PendulumPhysics-v0", f"{_MODULE}:PendulumPhysicsEnv", 200)
register_env("ssm_metarl/Navigation2D-v0", f"{_MODULE}:Navigation2DEnv", NAV_HORIZON)
register_env("ssm_metarl/Bandit-v0", f"{_MODULE}:BanditEnv", None)
register_env("ssm_metarl/TabularMDP-v0", f"{_MODULE}:TabularMDPEnv", None)

register_family(
    BoxTaskDistribution("cartpole-physics", "ssm_metarl/CartPolePhysics-v0", CARTPOLE_RANGES, CARTPOLE_BEYOND)
)
register_family(
    BoxTaskDistribution("pendulum-physics", "ssm_metarl/PendulumPhysics-v0", PENDULUM_RANGES, PENDULUM_BEYOND)
)
register_family(NavigationDistribution("navigation-2d", "ssm_metarl/Navigation2D-v0", NAV_RANGES, NAV_BEYOND))
register_family(BanditDistribution(5, 10, name="bandit"))
for _k in (5, 10, 50):
    for _n in (10, 100, 500):
        register_family(BanditDistribution(_k, _n))
register_family(TabularMDPDistribution())
