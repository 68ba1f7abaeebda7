"""The seed 004 API (``SSMMetaPolicy``, ``TaskBatch``, ``MetaMAMLTrainer``): thin wrappers over
:func:`ssm_metarl.meta.maml.train_maml`.

    policy = SSMMetaPolicy(state_dim=2, action_dim=2, family="navigation-2d")
    trainer = MetaMAMLTrainer(policy, meta_lr=1e-3, inner_lr=0.1)
    task_batch = TaskBatch(get_family("navigation-2d").train, batch_size=16)
    meta_losses = trainer.meta_train(task_batch, num_meta_iterations=100)
    adapted_policy = trainer.adapt_to_new_task(new_task)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, RunConfig
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.functional import params_of, snapshot
from ssm_metarl.meta.maml import adapt, sample_episodes, train_maml
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.rl.rollout import Episodes
from ssm_metarl.spaces import flat_dim


def SSMMetaPolicy(  # noqa: N802 - the seed's class name
    state_dim: int,
    action_dim: int,
    family: str = "navigation-2d",
    hidden_dim: int = 64,
    ssm_state_dim: int = 32,
) -> ActorCritic:
    """An SSM actor-critic for ``family``; ``state_dim``/``action_dim`` (the seed's names for observation and
    action sizes) are checked against the family's spaces, so a mismatch fails here, not mid-training."""
    dist = get_family(family)
    env = dist.make_env(dist.train[0])
    act_space: Any = env.action_space
    try:
        obs_dim = flat_dim(env.observation_space)
    finally:
        env.close()
    act_dim = int(getattr(act_space, "n", None) or np.prod(act_space.shape))  # Discrete(n) or a Box
    if (obs_dim, act_dim) != (state_dim, action_dim):
        raise ValueError(
            f"{family} has observation size {obs_dim} and action size {act_dim}; got state_dim={state_dim}, "
            f"action_dim={action_dim}"
        )
    model = ModelConfig(kind="ssm", hidden_dim=hidden_dim, state_dim=ssm_state_dim, num_layers=1)
    policy = policy_from_config(model, env.observation_space, act_space)
    policy.spec["family"] = family
    return policy


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
        """Meta-train; returns the outer (meta) loss of each iteration."""
        cfg = self.cfg.replace(
            family=task_batch.family,
            meta_iterations=num_meta_iterations,
            meta_batch_size=task_batch.batch_size,
        )
        result = train_maml(cfg, policy=self.policy, task_source=task_batch)
        return [row["loss"] for row in result.metrics]

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
                params = adapt(self.policy, leaf, [ep], inner.lr, inner.gamma, True, inner.baseline)
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
            )
        with torch.no_grad():
            adapted: ActorCritic = snapshot(self.policy, params)
        return adapted
