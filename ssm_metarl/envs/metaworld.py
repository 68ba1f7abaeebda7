"""Meta-World ML1 as a task family, for meta-training with this library (``pip install metaworld``; it pins
its own MuJoCo, so it lives in its own virtual environment: ``make bench-metaworld``).

ML1 (Yu et al. 2019) is one manipulation skill (``reach-v3``, ``push-v3``, ``pick-place-v3``, ...) with 50
training and 50 held-out goal positions; the goal is not in the observation (39 features), so a policy must
find it by acting. :func:`ml1_family` registers the family ``metaworld-ml1-<env name>`` whose tasks are the
benchmark's *training* goals, ``Task(family, (("goal", i),))`` for i = 0..49 (a finite family: its
``train``, ``validation`` and ``test`` splits are all 50). The held-out goals are never trained on here:
they are Meta-World's own ``ML1-test`` split, which its evaluation function samples
(``benchmarks/metaworld_ml1.py``). The goals come from ``metaworld.ML1(env_name, seed=benchmark_seed)``:
its training goals use that seed and its test goals ``seed + 1``, the same construction the
``Meta-World/ML1-test`` vector env makes, so training and evaluation share the seed and never the goals.

Episodes last the benchmark's 500 steps (truncated); rewards are Meta-World's (v2 reward, 0 to 10 per
step); ``info["success"]`` is its success flag. Importing this module does not import metaworld; building
the family does, and fails with the install command when it is missing.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.envs.tasks import (
    TASK_FAMILIES,
    FiniteTaskDistribution,
    Task,
    TaskDistribution,
    check_task,
    register_env,
    register_family,
)
from ssm_metarl.errors import EnvError

HORIZON = 500


def _metaworld() -> Any:
    try:
        import metaworld
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise EnvError(
            "Meta-World is not installed: `make bench-metaworld` builds .venv-metaworld with it "
            "(pip install metaworld; it pins its own MuJoCo)"
        ) from e
    return metaworld


@functools.cache
def ml1_benchmark(env_name: str, benchmark_seed: int = 0) -> Any:
    """``metaworld.ML1(env_name, seed=benchmark_seed)``, built once per process (it samples 100 goals)."""
    mw = _metaworld()
    if env_name not in mw.ML1.ENV_NAMES:
        raise EnvError(f"unknown Meta-World env {env_name!r}; ML1 has: {', '.join(sorted(mw.ML1.ENV_NAMES))}")
    return mw.ML1(env_name, seed=benchmark_seed)


def family_name(env_name: str) -> str:
    return f"metaworld-ml1-{env_name}"


class MetaWorldML1Env(gym.Env):
    """One ML1 training goal of ``env_name`` (``task["goal"]`` indexes the benchmark's training tasks)."""

    metadata = {"render_modes": []}

    def __init__(self, env_name: str, benchmark_seed: int = 0, task: Task | None = None) -> None:
        self.env_name, self.benchmark_seed = env_name, benchmark_seed
        self.family = family_name(env_name)
        self.benchmark = ml1_benchmark(env_name, benchmark_seed)
        self.mw_env = self.benchmark.train_classes[env_name]()
        self.observation_space = self.mw_env.observation_space
        self.action_space = self.mw_env.action_space
        self.set_task(task or Task(self.family, (("goal", 0.0),)))

    def set_task(self, task: Task) -> None:
        goal = check_task(task, self.family, ["goal"])["goal"]
        index = int(goal)
        tasks = self.benchmark.train_tasks
        if index != goal or not 0 <= index < len(tasks):
            raise EnvError(f"{self.family}: goal must be an integer in [0, {len(tasks) - 1}], got {goal}")
        self.mw_env.set_task(tasks[index])
        self.task = task

    def get_task(self) -> Task:
        return self.task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.mw_env.reset(seed=seed, options=options)
        return np.asarray(obs, dtype=np.float64), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.mw_env.step(np.asarray(action, dtype=np.float32))
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.mw_env.close()


def split_recurrent_obs(obs_dim: int, act_dim: int) -> Any:
    """A :data:`~ssm_metarl.adapt.agents.SplitObs` for Meta-World envs made with ``recurrent_info_in_obs=True``
    (its ``RNNBasedMetaRLWrapper``: ``[obs, previous action, previous reward / 10, done]``): the observations
    and the previous rewards."""

    def split(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if obs.shape[-1] != obs_dim + act_dim + 2:
            raise EnvError(
                f"expected Meta-World recurrent observations of {obs_dim + act_dim + 2} features "
                f"(recurrent_info_in_obs=True), got {obs.shape[-1]}"
            )
        return obs[:, :obs_dim], obs[:, obs_dim + act_dim] * 10.0

    return split


def ml1_family(env_name: str, benchmark_seed: int = 0) -> TaskDistribution:
    """The task family of ML1 ``env_name``'s 50 training goals (registered on first call, with its env id
    ``ssm_metarl/MetaWorld-ML1-<env name>-v0``); one benchmark seed per process."""
    name = family_name(env_name)
    if name in TASK_FAMILIES:
        dist = TASK_FAMILIES[name]
        if dist.env_kwargs.get("benchmark_seed") != benchmark_seed:
            raise EnvError(f"{name} is registered with benchmark seed {dist.env_kwargs['benchmark_seed']}")
        return dist
    benchmark = ml1_benchmark(env_name, benchmark_seed)
    env_id = f"ssm_metarl/MetaWorld-ML1-{env_name}-v0"
    register_env(env_id, f"{__name__}:MetaWorldML1Env", HORIZON, disable_env_checker=True)
    goals = [{"goal": float(i)} for i in range(len(benchmark.train_tasks))]
    dist = FiniteTaskDistribution(
        name, env_id, goals, env_kwargs={"env_name": env_name, "benchmark_seed": benchmark_seed}
    )
    return register_family(dist)


__all__ = ["HORIZON", "MetaWorldML1Env", "family_name", "ml1_benchmark", "ml1_family", "split_recurrent_obs"]
