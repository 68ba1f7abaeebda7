"""Standard test-time adaptation: from the meta-learned parameters, K gradient steps on fresh rollouts of the
current task (``docs/architecture.md``, "Test-time adaptation").

Shape letters (see :mod:`ssm_metarl.types`): T time, B episodes in a batch, D observation features.

One adaptation step (an :class:`~ssm_metarl.config.AdaptConfig` ``cfg``), given ``B = cfg.episodes`` whole
episodes acted with the current parameters::

    pg:   params <- params - lr * grad inner_loss(params)      MAML's inner step, the very same loss
    ppo:  cfg.ppo_epochs times: params <- params - lr * grad surrogate_loss(params)

``inner_loss`` (:func:`ssm_metarl.meta.maml.inner_loss`) is REINFORCE with a detached baseline (the critic or
the linear fit, ``cfg.baseline``) and normalised advantages. ``surrogate_loss`` is the PPO-clip surrogate
(Schulman et al. 2017, eq. 7) with the same advantages and the ratio to the acting (behaviour) log-prob; its
first epoch has ratio 1, so its gradient equals the REINFORCE one, and the clip keeps later epochs near the
data. Only the policy adapts: the critic is a baseline, as in MAML's inner loop. Every step is first order,
and recurrent policies are re-run over each whole episode from its initial state.

:meth:`StandardAdapter.adapt` runs the adaptation protocol on one task (``docs/concepts/evaluation.md``):
the episodes sampled with the parameters after k steps give both the return reported at k and the data of
step k + 1. Each sampling is seeded, environments *and* the policy's action noise, without touching the
global torch generator, so two adapters given the same seed see the same first episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.functional import Params, call, inner_update, params_of, snapshot
from ssm_metarl.meta.maml import inner_loss, sample_episodes
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.evaluate import seeded
from ssm_metarl.rl.gae import discounted_returns
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.rollout import Episodes


def task_episodes(envs: VectorEnv, policy: ActorCritic, params: Params, task: Task, seed: int) -> Episodes:
    """One whole episode per sub-env of ``envs`` on ``task``, acting with ``params``; env resets and action
    noise both seeded by ``seed``."""
    with seeded(seed, policy.device):
        return sample_episodes(envs, policy, params, [task] * envs.num_envs, seed=seed)


def surrogate_loss(
    policy: ActorCritic,
    params: Params | None,
    ep: Episodes,
    gamma: float,
    clip_coef: float,
    bootstrap: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip surrogate of ``ep``'s stored actions under ``params`` (None: the policy's own parameters,
    called directly), against their behaviour log-prob.

    The advantage is the discounted return minus the detached critic value (recomputed under ``params`` over
    each whole sequence from ``ep.rollout.state0`` with its resets), normalised over the valid steps.
    ``bootstrap=False`` stops returns at the data's end (whole episodes); ``bootstrap=True`` uses
    ``rollout.final_value`` at truncations and ``rollout.last_value`` after the last step (segments cut
    mid-episode, as in online adaptation). Returns the loss and :func:`~ssm_metarl.rl.losses.ppo_loss`'s
    stats without the (zero-weighted) value loss.
    """
    r = ep.rollout
    final_value, last_value = (r.final_value, r.last_value) if bootstrap else (None, None)
    ret = discounted_returns(r.reward, r.terminated, r.truncated, final_value, last_value, gamma).T  # (B, T)
    args = (r.obs.transpose(0, 1), r.state0, r.reset.transpose(0, 1), r.action.transpose(0, 1))
    log_prob, _, value, _ = (
        policy.evaluate(*args) if params is None else call(policy, params, "evaluate", *args)
    )
    zeros = torch.zeros_like(ret)
    loss, stats = ppo_loss(
        log_prob,
        r.log_prob.T,
        ret - value.detach(),
        zeros,
        zeros,
        zeros,
        None,
        clip_coef=clip_coef,
        vf_coef=0.0,
        ent_coef=0.0,
        clip_vloss=False,
        mask=ep.valid.T,
    )
    del stats["value_loss"]
    return loss, stats


@dataclass
class AdaptationRun:
    """The trace of one adaptation of one task: K steps, K + 1 evaluations."""

    returns: list[np.ndarray] = field(default_factory=list)
    """(K + 1) x (E,): the return of each episode sampled with the parameters after k steps."""
    env_steps: list[int] = field(default_factory=list)
    """(K + 1): env steps of those episodes (the data of step k + 1)."""
    stats: list[dict[str, float]] = field(default_factory=list)
    """(K): loss statistics of each step."""
    params: Params = field(default_factory=dict)
    """The parameters after the last step (detached)."""

    @property
    def mean_returns(self) -> list[float]:
        return [float(r.mean()) for r in self.returns]


class StandardAdapter:
    """``cfg.steps`` steps of policy gradient (``cfg.algo="pg"``, MAML's inner loss) or PPO on fresh
    rollouts of the task, from ``policy``'s parameters (never modified)."""

    mode = "standard"

    def __init__(self, policy: ActorCritic, cfg: AdaptConfig | None = None) -> None:
        self.policy, self.cfg = policy, cfg or AdaptConfig()

    def initial_params(self) -> Params:
        """The meta-learned parameters, detached (a new dict; the policy is never modified)."""
        return {k: v.detach() for k, v in params_of(self.policy).items()}

    # ----- one step ---------------------------------------------------------------------------------
    def task_loss(self, params: Params, ep: Episodes) -> tuple[Tensor, dict[str, float]]:
        """The loss on the current task's episodes: ``inner_loss`` (pg) or ``surrogate_loss`` (ppo)."""
        cfg = self.cfg
        if cfg.algo == "pg":
            loss = inner_loss(self.policy, params, ep, cfg.gamma, cfg.baseline)
            return loss, {"loss": loss.item()}
        return surrogate_loss(self.policy, params, ep, cfg.gamma, cfg.clip_coef)

    def loss(self, params: Params, ep: Episodes, extra: Any = None) -> tuple[Tensor, dict[str, float]]:
        """The adaptation loss; ``extra`` is what :meth:`prepare` returned (unused here)."""
        return self.task_loss(params, ep)

    def prepare(self, ep: Episodes) -> Any:
        """Called once per step before the epochs (the hybrid adapter samples its replay batch here)."""
        return None

    def step(self, params: Params, ep: Episodes, k: int = 0) -> tuple[Params, dict[str, float]]:
        """Adaptation step ``k`` on the episodes ``ep`` acted with ``params``; returns new detached params."""
        extra = self.prepare(ep)
        stats: dict[str, float] = {}
        for _ in range(1 if self.cfg.algo == "pg" else self.cfg.ppo_epochs):
            leaf = {n: v.detach().requires_grad_(True) for n, v in params.items()}
            with torch.enable_grad():
                loss, stats = self.loss(leaf, ep, extra)
                params = inner_update(
                    leaf, loss, self.cfg.step_lr(k), first_order=True, which=self.cfg.params
                )
            params = {n: v.detach() for n, v in params.items()}
        return params, stats

    # ----- the protocol on one task -----------------------------------------------------------------
    def begin_task(self, task: Task, seed: int) -> None:
        """Called before adapting to ``task`` (a hook: the hybrid adapter resets its buffer here)."""

    def observe(self, ep: Episodes, task: Task) -> None:
        """Called with each batch of the task's episodes after it was used (a hook for the hybrid adapter)."""

    def adapt(self, task: Task, seed: int = 0, envs: VectorEnv | None = None) -> AdaptationRun:
        """Adapt to ``task`` for ``cfg.steps`` steps from the meta-learned parameters.

        The episodes of evaluation k are seeded ``seed + k``; ``envs`` (``cfg.episodes`` sub-envs of the
        task's family, e.g. from ``make_vec_env(..., fast=True)``) is made and closed here when None.
        """
        own = envs is None
        if envs is None:
            envs = get_family(task.family).make_vec_env([task] * self.cfg.episodes, seed=seed, fast=True)
        run = AdaptationRun(params=self.initial_params())
        self.begin_task(task, seed)
        try:
            for k in range(self.cfg.steps + 1):
                ep = task_episodes(envs, self.policy, run.params, task, seed + k)
                run.returns.append(ep.returns)
                run.env_steps.append(ep.num_steps)
                if k < self.cfg.steps:
                    run.params, stats = self.step(run.params, ep, k)
                    run.stats.append(stats)
                self.observe(ep, task)
        finally:
            if own:
                envs.close()
        return run

    def adapted_policy(self, params: Params) -> ActorCritic:
        """A detached copy of the policy holding ``params`` (e.g. ``run.params``), to act or save."""
        with torch.no_grad():
            adapted: ActorCritic = snapshot(self.policy, params)
        return adapted


__all__ = ["AdaptationRun", "StandardAdapter", "surrogate_loss", "task_episodes"]
