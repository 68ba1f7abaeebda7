"""The seed 004 API (``SSMMetaPolicy``, ``TaskBatch``, ``MetaMAMLTrainer``): thin wrappers over
:func:`ssm_metarl.meta.maml.train_maml`.

    policy = SSMMetaPolicy(state_dim=2, action_dim=2)          # or family="navigation-2d" to check sizes
    trainer = MetaMAMLTrainer(policy, meta_lr=1e-3, inner_lr=0.1)
    task_batch = TaskBatch(get_family("navigation-2d").train, batch_size=16)
    meta_losses = trainer.meta_train(task_batch, num_meta_iterations=100)
    adapted_policy = trainer.adapt_to_new_task(new_task)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, RunConfig, budget_from_env, scale_budget
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.errors import SpaceError
from ssm_metarl.meta.functional import params_of, snapshot
from ssm_metarl.meta.maml import adapt, sample_episodes, train_maml
from ssm_metarl.models import ActorCritic, model_kwargs
from ssm_metarl.rl.rollout import Episodes
from ssm_metarl.spaces import flat_dim


class SSMMetaPolicy(ActorCritic):
    """The seed's SSM meta-policy: an ``ssm`` actor-critic (:class:`~ssm_metarl.models.heads.ActorCritic`).

    ``state_dim`` / ``action_dim`` are the seed's names for the observation and action sizes. Without
    ``family`` the policy is generic: a ``Box`` observation of ``state_dim`` features and ``action_dim``
    continuous actions in [-1, 1] (``discrete=True``: ``Discrete(action_dim)``). With ``family`` the spaces
    are that task family's, and sizes that do not match it fail here, not mid-training; a generic policy
    meta-trained on a family whose spaces differ fails when :meth:`MetaMAMLTrainer.meta_train` starts.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        family: str | None = None,
        hidden_dim: int = 64,
        ssm_state_dim: int = 32,
        discrete: bool = False,
    ) -> None:
        from ssm_metarl.models import policy_parts

        if state_dim < 1 or action_dim < 1:
            raise ValueError(f"state_dim and action_dim must be >= 1, got {state_dim} and {action_dim}")
        if family is None:
            obs_space: Any = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
            act_space: Any = (
                gym.spaces.Discrete(action_dim)
                if discrete
                else gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
            )
        else:
            dist = get_family(family)
            env = dist.make_env(dist.train[0])
            obs_space, act_space = env.observation_space, env.action_space
            env.close()
            obs_dim = flat_dim(obs_space)
            act_dim = _action_size(act_space)
            if (obs_dim, act_dim) != (state_dim, action_dim):
                raise ValueError(
                    f"{family} has observation size {obs_dim} and action size {act_dim}; got "
                    f"state_dim={state_dim}, action_dim={action_dim}"
                )
        model = ModelConfig(kind="ssm", hidden_dim=hidden_dim, state_dim=ssm_state_dim, num_layers=1)
        parts = policy_parts(
            model.kind,
            obs_space,
            act_space,
            hidden_dim=model.hidden_dim,
            init_log_std=model.init_log_std,
            action_bounds=model.action_bounds,
            **model_kwargs(model),
        )
        super().__init__(**parts)
        if family is not None:
            self.spec["family"] = family


def _action_size(space: Any) -> int:
    """Discrete(n) -> n; a Box -> its number of entries."""
    return int(getattr(space, "n", None) or np.prod(space.shape))


class TaskBatch:
    """A pool of tasks to meta-train on, sampled ``batch_size`` at a time (without replacement per batch)."""

    def __init__(self, tasks: Sequence[Task], batch_size: int) -> None:
        if not tasks:
            raise ValueError("TaskBatch needs at least one task")
        if len({t.family for t in tasks}) != 1:
            raise ValueError("all tasks of a TaskBatch must come from one family")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tasks, self.batch_size = list(tasks), batch_size
        self.family = self.tasks[0].family

    def sample(self, rng: np.random.Generator, n: int | None = None) -> list[Task]:
        n = n or self.batch_size
        idx = rng.choice(len(self.tasks), size=n, replace=n > len(self.tasks))
        return [self.tasks[i] for i in idx]


class MetaMAMLTrainer:
    """MAML for RL on an :func:`SSMMetaPolicy` (or any ActorCritic): ``meta_lr`` is MAMLConfig.outer_lr,
    ``inner_lr`` its inner.lr; other settings are kwargs of :meth:`MAMLConfig.replace`
    (``inner__steps=2``, ...)."""

    def __init__(
        self, policy: ActorCritic, meta_lr: float = 1e-3, inner_lr: float = 0.1, **maml_kwargs: Any
    ) -> None:
        self.policy = policy
        base = MAMLConfig(outer_lr=meta_lr, inner=AdaptConfig(lr=inner_lr), run=RunConfig(progress=False))
        self.cfg = base.replace(**maml_kwargs)

    def meta_train(self, task_batch: TaskBatch, num_meta_iterations: int) -> list[float]:
        """Meta-train; returns the outer (meta) loss of each iteration.

        ``SSM_METARL_BUDGET`` (:data:`~ssm_metarl.config.BUDGET_ENV`) scales ``num_meta_iterations``, so a
        snippet runs as written at a smoke-test budget. A policy built for other spaces than the family's
        fails here, naming both.
        """
        self._check_fits(task_batch.family)
        cfg = self.cfg.replace(
            family=task_batch.family,
            meta_iterations=num_meta_iterations,
            meta_batch_size=task_batch.batch_size,
        )
        scale = budget_from_env()
        if scale is not None:
            cfg = scale_budget(cfg, scale)
        result = train_maml(cfg, policy=self.policy, task_source=task_batch)
        return [row["loss"] for row in result.metrics]

    def _check_fits(self, family: str) -> None:
        dist = get_family(family)
        env = dist.make_env(dist.train[0])
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
        if flat_dim(obs_space) != self.policy.obs_dim or act_space != self.policy.action_space:
            sizes = f"state_dim={flat_dim(obs_space)}, action_dim={_action_size(act_space)}"
            raise SpaceError(
                f"the policy observes {self.policy.obs_dim} features and acts in {self.policy.action_space}; "
                f"{family} observes {obs_space} and acts in {act_space}. Build the policy for the family: "
                f"SSMMetaPolicy({sizes}, family={family!r})"
            )

    def adapt_to_new_task(self, task_data: Task | Sequence[Episodes], seed: int = 0) -> ActorCritic:
        """An adapted copy of the policy: ``inner_steps`` gradient steps on support episodes of ``task_data``
        (a Task, whose episodes are collected here, or support episodes already collected)."""
        inner = self.cfg.inner
        if isinstance(task_data, Task):
            dist = get_family(task_data.family)
            envs = dist.make_vec_env([task_data] * inner.episodes, seed=seed, fast=True)
            params = {k: v.detach() for k, v in params_of(self.policy).items()}
            for i in range(max(inner.steps, 1)):
                ep = sample_episodes(envs, self.policy, params, [task_data] * inner.episodes, seed + i)
                leaf = {k: v.requires_grad_(True) for k, v in params.items()}
                params = adapt(
                    self.policy, leaf, [ep], inner.lr, inner.gamma, True, inner.baseline, inner.params
                )
                params = {k: v.detach() for k, v in params.items()}
            envs.close()
        else:
            params = adapt(
                self.policy,
                params_of(self.policy),
                list(task_data),
                inner.lr,
                inner.gamma,
                True,
                inner.baseline,
                inner.params,
            )
        with torch.no_grad():
            adapted: ActorCritic = snapshot(self.policy, params)
        return adapted
