"""Tasks and task distributions for meta-RL: what varies between tasks, and the fixed evaluation splits.

A :class:`Task` is a frozen, JSON-serialisable value: a family name and named float parameters, e.g.
``Task("navigation-2d", (("goal_x", 0.31), ("goal_y", -0.12)))``. A :class:`TaskDistribution` samples
training tasks (``sample(rng, n)``), holds four fixed, seeded splits (``train``, ``validation``,
``test``, ``out_of_range``; ``docs/concepts/evaluation.md``, "Splits") and builds envs with one task
each (``make_env`` / ``make_vec_env``). Every family is also a registered Gymnasium id whose env has
``set_task(task)`` / ``get_task()`` on ``env.unwrapped`` and takes ``task=`` in its constructor.

Splits
------
The splits are generated from fixed seeds in this file (one per split, mixed with a CRC of the family
name), so every process, machine and method evaluates on the same tasks. ``test`` is drawn from the
training distribution and filtered to be disjoint from ``train``; ``validation`` likewise, disjoint from
both (recipes and step sizes are chosen on it; ``test`` is only reported); ``out_of_range`` puts *every*
parameter beyond its training range (families without a range have an empty ``out_of_range``). Families
with a finite task set (``halfcheetah-dir``, ``ant-dir``: the two directions) use all their tasks as
``train``, ``validation`` and ``test``: there is nothing held out.

The families themselves are defined in :mod:`ssm_metarl.envs.classic` and :mod:`ssm_metarl.envs.mujoco`;
importing :mod:`ssm_metarl.envs` registers them all in :data:`TASK_FAMILIES`.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space

from ssm_metarl.envs import make as _make
from ssm_metarl.errors import EnvError

__all__ = [
    "ENV_ID_TO_FAMILY",
    "TASK_FAMILIES",
    "BoxTaskDistribution",
    "FiniteTaskDistribution",
    "Task",
    "TaskDistribution",
    "check_task",
    "family_for_env_id",
    "get_family",
    "register_env",
    "register_family",
    "set_tasks",
]

Interval = tuple[float, float]
_SPLIT_SEEDS = {"train": 20_240_001, "validation": 20_240_004, "test": 20_240_002, "out_of_range": 20_240_003}


@dataclass(frozen=True)
class Task:
    """One task: ``family`` and its named parameters, in a fixed order.

    ``params`` may be given as a mapping or as (name, value) pairs; it is stored as a tuple of
    ``(str, float)`` pairs, so a Task is hashable, comparable and JSON-serialisable
    (``to_dict`` / ``from_dict``).
    """

    family: str
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family:
            raise EnvError(f"Task.family must be a non-empty string, got {self.family!r}")
        raw: Iterable[Any] = self.params.items() if isinstance(self.params, Mapping) else self.params
        pairs = tuple((str(k), float(v)) for k, v in raw)
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            raise EnvError(f"Task {self.family!r} has duplicate parameter names: {names}")
        bad = [k for k, v in pairs if not math.isfinite(v)]
        if bad:
            raise EnvError(f"Task {self.family!r} has non-finite parameters: {bad}")
        object.__setattr__(self, "params", pairs)

    @classmethod
    def from_params(cls, family: str, params: Mapping[str, float]) -> Task:
        """``Task(family, params)`` from a mapping; the mapping's order is kept."""
        return cls(family, tuple(params.items()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.params)

    def param_dict(self) -> dict[str, float]:
        """The parameters as a new dict (name -> value)."""
        return dict(self.params)

    def values(self) -> np.ndarray:
        """(P,) float64 parameter values in order, e.g. as task features for an oracle policy."""
        return np.array([v for _, v in self.params], dtype=np.float64)

    def __getitem__(self, name: str) -> float:
        for k, v in self.params:
            if k == name:
                return v
        raise KeyError(f"task {self.family!r} has no parameter {name!r}; it has {list(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        """``{"family": str, "params": {name: value}}``: plain JSON."""
        return {"family": self.family, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """Inverse of :meth:`to_dict`."""
        if set(data) != {"family", "params"}:
            raise EnvError(f"a task dict has exactly the keys 'family' and 'params', got {sorted(data)}")
        return cls(str(data["family"]), tuple(dict(data["params"]).items()))

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params[:6])
        more = f", ... (+{len(self.params) - 6} more)" if len(self.params) > 6 else ""
        return f"{self.family}({shown}{more})"


def check_task(task: Task, family: str, names: Sequence[str]) -> dict[str, float]:
    """The task's parameters as a dict, after checking its family and parameter names (for ``set_task``)."""
    if not isinstance(task, Task):
        raise TypeError(f"expected a Task, got {type(task).__name__}: {task!r}")
    if task.family != family:
        raise EnvError(f"this env runs {family!r} tasks, got a {task.family!r} task: {task}")
    if set(task.names) != set(names):
        missing, extra = sorted(set(names) - set(task.names)), sorted(set(task.names) - set(names))
        raise EnvError(f"{family!r} task parameters do not match: missing {missing}, unexpected {extra}")
    return task.param_dict()


class TaskDistribution(ABC):
    """A family of tasks: a training distribution, fixed splits, and envs with one task each.

    Attributes:
        name: the family name (the key in :data:`TASK_FAMILIES`), e.g. ``"cartpole-physics"``.
        env_id: the registered Gymnasium id whose env runs these tasks.
        env_kwargs: constructor kwargs every env of this family gets (e.g. ``k``, ``n`` for bandits).
        finite: True when the family has a finite task set; then ``train`` and ``test`` are all of it.
    """

    finite: bool = False
    num_train: int = 100
    num_test: int = 20
    num_out_of_range: int = 20

    def __init__(self, name: str, env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.env_id = env_id
        self.env_kwargs: dict[str, Any] = dict(env_kwargs or {})
        self._splits: dict[str, tuple[Task, ...]] = {}

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks from the training distribution, drawn with ``rng``."""

    def sample_out_of_range(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks beyond the training ranges; empty for families without a range."""
        return []

    @property
    def train(self) -> list[Task]:
        """The fixed meta-training tasks (a new list each call; the tasks themselves are frozen)."""
        return list(self._split("train"))

    @property
    def validation(self) -> list[Task]:
        """The fixed tasks for choosing recipes, step sizes and variants: same distribution as training,
        disjoint from ``train`` and ``test``: choices are made here, never on ``test``
        (``docs/concepts/evaluation.md``)."""
        return list(self._split("validation"))

    @property
    def test(self) -> list[Task]:
        """The fixed held-out tasks: same distribution as training, disjoint from ``train``."""
        return list(self._split("test"))

    @property
    def out_of_range(self) -> list[Task]:
        """The fixed tasks with every parameter beyond its training range (empty without a range)."""
        return list(self._split("out_of_range"))

    def split(self, name: str) -> list[Task]:
        """``"train"``, ``"validation"``, ``"test"`` or ``"out_of_range"`` by name."""
        if name not in _SPLIT_SEEDS:
            raise EnvError(f"unknown split {name!r}; expected one of {list(_SPLIT_SEEDS)}")
        return list(self._split(name))

    def _split(self, split: str) -> tuple[Task, ...]:
        if split not in self._splits:
            rng = np.random.default_rng([_SPLIT_SEEDS[split], zlib.crc32(self.name.encode())])
            if split == "out_of_range":
                tasks = self.sample_out_of_range(rng, self.num_out_of_range)
            elif self.finite:
                tasks = self.all_tasks()
            elif split == "train":
                tasks = self.sample(rng, self.num_train)
            else:  # test, validation: fresh draws that are not training (or test) tasks
                taken = set(self._split("train")) | (
                    set(self._split("test")) if split == "validation" else set()
                )
                tasks = []
                while len(tasks) < self.num_test:
                    tasks += [t for t in self.sample(rng, self.num_test - len(tasks)) if t not in taken]
            self._splits[split] = tuple(tasks)
        return self._splits[split]

    def all_tasks(self) -> list[Task]:
        """Every task of a finite family."""
        raise NotImplementedError(f"{self.name!r} has infinitely many tasks")

    def make_env(self, task: Task, seed: int | None = None, **kwargs: Any) -> gym.Env:
        """``gym.make(self.env_id, task=task)``, seeded as :func:`ssm_metarl.envs.make.make_env` does.

        ``kwargs`` (e.g. ``max_episode_steps``) override the family's ``env_kwargs``.
        """
        if task.family != self.name:
            raise EnvError(f"family {self.name!r} cannot run a {task.family!r} task: {task}")
        return _make.make_env(self.env_id, seed, task=task, **{**self.env_kwargs, **kwargs})

    def task_env_id(self, task: Task) -> str:
        """A registered Gymnasium id whose env always runs ``task`` (so any env-id API, e.g. ``train_ppo``,
        can train on one task); registered on first use as ``ssm_metarl/<family>-task-<hash>-v0``."""
        if task.family != self.name:
            raise EnvError(f"family {self.name!r} cannot run a {task.family!r} task: {task}")
        digest = hashlib.sha1(json.dumps(task.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        env_id = f"ssm_metarl/{self.name}-task-{digest}-v0"
        if env_id not in gym.registry:
            spec = gym.spec(self.env_id)
            gym.register(
                id=env_id,
                entry_point=spec.entry_point,
                max_episode_steps=spec.max_episode_steps,
                kwargs={**spec.kwargs, **self.env_kwargs, "task": task},
            )
        return env_id

    def multitask_env_id(self) -> str:
        """A registered Gymnasium id whose env draws a new training task at every reset: plain RL on it is
        multi-task training (the policy never sees which task it is in); ``ssm_metarl/<family>-multitask-v0``."""
        env_id = f"ssm_metarl/{self.name}-multitask-v0"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="ssm_metarl.envs.tasks:MultiTaskEnv",
                kwargs={"family": self.name},
                disable_env_checker=True,
            )
        return env_id

    def make_vec_env(
        self, tasks: Sequence[Task], seed: int | None, fast: bool = False, **kwargs: Any
    ) -> VectorEnv:
        """One sub-env per task (B = ``len(tasks)``), same-step autoreset, sub-env ``i`` seeded ``seed + i``.

        Returns a ``SyncVectorEnv`` (see :mod:`ssm_metarl.envs.make` for the autoreset conventions).
        ``fast=True`` asks for the family's batched NumPy implementation where it has one (same API and
        autoreset semantics, e.g. ``Navigation2DVec``); other families ignore it.
        """
        if not tasks:
            raise EnvError("make_vec_env needs at least one task")
        env_fns = [
            functools.partial(self.make_env, task, None if seed is None else seed + i, **kwargs)
            for i, task in enumerate(tasks)
        ]
        vec_env = SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
        if seed is not None:
            vec_env.action_space.seed(seed)
            vec_env.observation_space.seed(seed)
        return vec_env

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, env_id={self.env_id!r})"


class BoxTaskDistribution(TaskDistribution):
    """Independent uniform parameters: ``params[p] ~ U(ranges[p])``.

    ``beyond[p] = (below, above)`` gives the intervals an out-of-range value is drawn from (either may be
    None): each out-of-range task draws every parameter beyond its range, on a random available side.
    """

    def __init__(
        self,
        name: str,
        env_id: str,
        ranges: Mapping[str, Interval],
        beyond: Mapping[str, tuple[Interval | None, Interval | None]] | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, env_id, env_kwargs)
        self.ranges: dict[str, Interval] = dict(ranges)
        self.beyond = dict(beyond or {})
        for p, (below, above) in self.beyond.items():
            lo, hi = self.ranges[p]
            if (below is None and above is None) or (below and below[1] >= lo) or (above and above[0] <= hi):
                raise EnvError(f"{name}: out-of-range intervals for {p!r} must lie outside [{lo}, {hi}]")
        if self.beyond and set(self.beyond) != set(self.ranges):
            raise EnvError(f"{name}: give out-of-range intervals for every parameter or none")

    def sample(self, rng: np.random.Generator, n: int) -> list[Task]:
        lo, hi = (np.array([r[i] for r in self.ranges.values()]) for i in (0, 1))
        values = rng.uniform(lo, hi, size=(n, len(self.ranges)))  # (n, P)
        return [Task(self.name, tuple(zip(self.ranges, row))) for row in values]

    def sample_out_of_range(self, rng: np.random.Generator, n: int) -> list[Task]:
        if not self.beyond:
            return []
        tasks = []
        for _ in range(n):
            params = []
            for p in self.ranges:
                sides = [s for s in self.beyond[p] if s is not None]
                lo, hi = sides[int(rng.integers(len(sides)))]
                params.append((p, float(rng.uniform(lo, hi))))
            tasks.append(Task(self.name, tuple(params)))
        return tasks

    def in_range(self, task: Task) -> dict[str, bool]:
        """For each parameter: whether the task's value lies in the training range."""
        return {p: lo <= task[p] <= hi for p, (lo, hi) in self.ranges.items()}


class FiniteTaskDistribution(TaskDistribution):
    """A finite set of tasks sampled uniformly; ``train`` and ``test`` are all of them, no out-of-range."""

    finite = True

    def __init__(
        self,
        name: str,
        env_id: str,
        tasks: Sequence[Mapping[str, float]],
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, env_id, env_kwargs)
        self._tasks = tuple(Task.from_params(name, p) for p in tasks)

    def all_tasks(self) -> list[Task]:
        return list(self._tasks)

    def sample(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [self._tasks[i] for i in rng.integers(len(self._tasks), size=n)]


class MultiTaskEnv(gym.Wrapper):
    """The family's env with a new task from the training distribution at every reset (drawn with the env's
    own seeded generator, so a seeded reset gives the same task sequence)."""

    def __init__(self, family: str) -> None:
        self.dist = get_family(family)
        super().__init__(self.dist.make_env(self.dist.train[0]))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._task_rng = np.random.default_rng(seed)
        elif not hasattr(self, "_task_rng"):
            self._task_rng = np.random.default_rng()
        env: Any = self.env.unwrapped
        env.set_task(self.dist.sample(self._task_rng, 1)[0])
        return self.env.reset(seed=seed, options=options)


TASK_FAMILIES: dict[str, TaskDistribution] = {}
"""Family name -> distribution; filled when :mod:`ssm_metarl.envs` is imported."""

ENV_ID_TO_FAMILY: dict[str, str] = {
    "CartPole-v1": "cartpole-physics",
    "Pendulum-v1": "pendulum-physics",
    "HalfCheetah-v5": "halfcheetah-vel",
    "Ant-v5": "ant-dir",
}
"""The task family a plain Gymnasium id stands for in a meta-RL command (``--env CartPole-v1``)."""


def register_family(dist: TaskDistribution) -> TaskDistribution:
    """Add ``dist`` to :data:`TASK_FAMILIES`; a second family with the same name is an error."""
    if dist.name in TASK_FAMILIES:
        raise EnvError(f"task family {dist.name!r} is already registered: {TASK_FAMILIES[dist.name]!r}")
    TASK_FAMILIES[dist.name] = dist
    return dist


def register_env(env_id: str, entry_point: str, max_episode_steps: int | None, **kwargs: Any) -> None:
    """``gym.register`` unless ``env_id`` is registered already (a module imported twice)."""
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, **kwargs)


def get_family(name: str) -> TaskDistribution:
    """The registered task family ``name``, or a ValueError listing the known families."""
    if name in TASK_FAMILIES:
        return TASK_FAMILIES[name]
    close = difflib.get_close_matches(name, list(TASK_FAMILIES), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise EnvError(f"unknown task family {name!r}.{hint} Known families: {', '.join(sorted(TASK_FAMILIES))}")


def family_for_env_id(env_id: str) -> str:
    """The task family for a Gymnasium id (``"CartPole-v1" -> "cartpole-physics"``).

    Accepts the ids in :data:`ENV_ID_TO_FAMILY`, a family's own registered id (e.g.
    ``"ssm_metarl/Navigation2D-v0"``; the first family registered with it) and a family name.
    """
    if env_id in ENV_ID_TO_FAMILY:
        return ENV_ID_TO_FAMILY[env_id]
    if env_id in TASK_FAMILIES:
        return env_id
    for name, dist in TASK_FAMILIES.items():
        if dist.env_id == env_id:
            return name
    known = ", ".join(f"{k} -> {v}" for k, v in ENV_ID_TO_FAMILY.items())
    raise EnvError(
        f"no task family for env id {env_id!r}. Meta-RL needs a task distribution: use one of {known}, "
        f"or a family name ({', '.join(sorted(TASK_FAMILIES))})."
    )


class BatchedTaskVec(VectorEnv):
    """What the families' batched vector envs (``make_vec_env(..., fast=True)``) share: same-step autoreset,
    B sub-envs each running a task, spaces seeded as ``make_vec_env`` seeds a ``SyncVectorEnv``'s. Subclasses
    set the spaces and implement ``set_tasks``, ``reset`` and ``step``."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def _init_spaces(self, observation: gym.Space, action: gym.Space) -> None:
        self.single_observation_space, self.single_action_space = observation, action
        self.observation_space = batch_space(observation, self.num_envs)
        self.action_space = batch_space(action, self.num_envs)

    def _check_num_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} envs")

    def _seed(self, seed: int | None) -> None:
        """Start of ``reset``: the vector env's generator and, when seeded, the spaces' samplers."""
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
            self.observation_space.seed(seed)

    @staticmethod
    def _autoreset_info(obs: np.ndarray, done: np.ndarray, final_info: dict[str, Any]) -> dict[str, Any]:
        """The step's info where episodes ended (``done`` (B,)), before ``obs`` (B, ...) is overwritten by the
        next episodes' first observations: copies of the last observations and ``final_info``, as
        ``SyncVectorEnv`` writes them."""
        final_obs = np.full(len(done), None, dtype=object)
        for b in np.flatnonzero(done):
            final_obs[b] = obs[b].copy()
        return {
            "final_obs": final_obs,
            "_final_obs": done,
            "final_info": final_info,
            "_final_info": done.copy(),
        }


def set_tasks(vec_env: VectorEnv, tasks: Sequence[Task]) -> None:
    """Give sub-env ``i`` of ``vec_env`` the task ``tasks[i]`` (at once: reset to start clean episodes).

    Works on the ``SyncVectorEnv`` from :meth:`TaskDistribution.make_vec_env` and on batched envs with a
    ``set_tasks`` method (``Navigation2DVec``). Call ``vec_env.reset()`` afterwards to start new episodes.
    """
    if len(tasks) != vec_env.num_envs:
        raise EnvError(f"got {len(tasks)} tasks for {vec_env.num_envs} sub-envs")
    if hasattr(vec_env, "set_tasks"):
        vec_env.set_tasks(tasks)
    elif isinstance(vec_env, SyncVectorEnv):
        for env, task in zip(vec_env.envs, tasks):
            env.unwrapped.set_task(task)  # type: ignore[attr-defined]
    else:
        raise TypeError(f"cannot set tasks on a {type(vec_env).__name__}")
