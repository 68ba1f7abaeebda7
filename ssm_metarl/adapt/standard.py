"""Standard test-time adaptation: from the meta-learned parameters, K gradient steps on fresh rollouts of the
current task (ARCHITECTURE.md, "Test-time adaptation").

Shape letters (see :mod:`ssm_metarl.types`): T time, B episodes in a batch, D observation features.

One adaptation step, given ``B = num_trajectories`` whole episodes acted with the current parameters::

    pg:   params <- params - lr * grad inner_loss(params)      MAML's inner step, the very same loss
    ppo:  ppo_epochs times: params <- params - lr * grad surrogate_loss(params)

``inner_loss`` (:func:`ssm_metarl.meta.maml.inner_loss`) is REINFORCE with the critic as a detached
baseline and normalised advantages. ``surrogate_loss`` is the PPO-clip surrogate (Schulman et al. 2017,
eq. 7) with the same advantages and the ratio to the acting (behaviour) log-prob; its first epoch has
ratio 1, so its gradient equals the REINFORCE one, and the clip keeps later epochs near the data. Only the
policy adapts: the critic is a baseline, as in MAML's inner loop. Every step is first order (the gradient is
a constant), and recurrent policies are re-run over each whole episode from its initial state.

:meth:`StandardAdapter.adapt` runs the adaptation protocol on one task (EVALUATION.md): the episodes sampled
with the parameters after k steps give both the return reported at k and the data of step k + 1. Each
sampling is seeded, environments *and* the policy's action noise, without touching the global torch
generator, so two adapters given the same seed see the same first episodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.functional import Params, call, inner_update, params_of, snapshot
from ssm_metarl.meta.maml import Episodes, inner_loss, sample_episodes
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.gae import discounted_returns
from ssm_metarl.rl.losses import ppo_loss

AdaptAlgo = Literal["pg", "ppo"]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's generator (and that of ``device`` when it is a GPU) seeded with ``seed``;
    the global generator state is restored afterwards."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def seeded_episodes(envs: VectorEnv, policy: ActorCritic, params: Params, task: Task, seed: int) -> Episodes:
    """One whole episode per sub-env of ``envs`` on ``task``, acting with ``params``; env resets and action
    noise both seeded by ``seed`` (see :func:`seeded`)."""
    with seeded(seed, next(policy.parameters()).device):
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

        The advantage is :func:`~ssm_metarl.meta.maml.inner_loss`'s: discounted return minus the detached
        critic value (recomputed under ``params`` over each whole sequence from ``ep.rollout.state0`` with its
        resets), normalised over the valid steps. ``bootstrap=False`` stops returns at the data's end (whole
        episodes); ``bootstrap=True`` uses ``rollout.final_value`` at truncations and ``rollout.last_value``
        after the last step (segments cut mid-episode, as in online adaptation).

        Returns the scalar loss and the stats of :func:`~ssm_metarl.rl.losses.ppo_loss` (``approx_kl``,
        ``clipfrac``, ...); the value terms of ``ppo_loss`` get weight 0.
    """
    r = ep.rollout
    final_value, last_value = (r.final_value, r.last_value) if bootstrap else (None, None)
    ret = discounted_returns(r.reward, r.terminated, r.truncated, final_value, last_value, gamma).T  # (B, T)
    args = (r.obs.transpose(0, 1), r.state0, r.reset.transpose(0, 1), r.action.transpose(0, 1))
    log_prob, _, value, _ = (
        policy.evaluate(*args) if params is None else call(policy, params, "evaluate", *args)
    )
    zeros = torch.zeros_like(ret)
    loss, stats = ppo_loss(log_prob, r.log_prob.T, ret - value.detach(), zeros, zeros, zeros, None,
                           clip_coef=clip_coef, vf_coef=0.0, ent_coef=0.0, clip_vloss=False, norm_adv=True,
                           mask=ep.valid.T)  # fmt: skip
    del stats["value_loss"]
    return loss, stats


@dataclass
class AdaptationRun:
    """One adaptation of one task: K steps, K + 1 evaluations."""

    returns: list[float] = field(default_factory=list)
    """(K + 1): mean return of the episodes sampled with the parameters after k steps."""
    env_steps: list[int] = field(default_factory=list)
    """(K + 1): env steps of those episodes (the data of step k + 1)."""
    stats: list[dict[str, float]] = field(default_factory=list)
    """(K): loss statistics of each step."""
    params: Params = field(default_factory=dict)
    """The parameters after the last step (detached)."""


class StandardAdapter:
    """K steps of policy gradient (``algo="pg"``, MAML's inner loss) or PPO on fresh rollouts of the task.

    Args:
        policy: the meta-learned policy; its parameters are the starting point and are never modified.
        lr: SGD step size (``inner_lr`` of MAML; the same value MAML trained with is the natural choice).
        algo: ``pg`` (one step of :func:`~ssm_metarl.meta.maml.inner_loss` per adaptation step) or ``ppo``
            (``ppo_epochs`` steps of :func:`surrogate_loss` on the same episodes).
        gamma: discount of the returns.
        ppo_epochs: SGD steps per adaptation step with ``algo="ppo"``.
        clip_coef: PPO ratio clip.
    """

    mode = "standard"

    def __init__(
        self,
        policy: ActorCritic,
        lr: float = 0.1,
        algo: AdaptAlgo = "pg",
        gamma: float = 0.99,
        ppo_epochs: int = 4,
        clip_coef: float = 0.2,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"adaptation lr must be > 0, got {lr}")
        if algo not in ("pg", "ppo"):
            raise ValueError(f"algo must be 'pg' or 'ppo', got {algo!r}")
        if ppo_epochs < 1 or not 0 < clip_coef < 1:
            raise ValueError(f"need ppo_epochs >= 1 and 0 < clip_coef < 1, got {ppo_epochs}, {clip_coef}")
        self.policy, self.lr, self.algo = policy, lr, algo
        self.gamma, self.ppo_epochs, self.clip_coef = gamma, ppo_epochs, clip_coef

    def initial_params(self) -> Params:
        """The meta-learned parameters, detached (a new dict; the policy is never modified)."""
        return {k: v.detach() for k, v in params_of(self.policy).items()}

    # ----- one step ---------------------------------------------------------------------------------
    def task_loss(self, params: Params, ep: Episodes) -> tuple[Tensor, dict[str, float]]:
        """The loss on the current task's episodes: ``inner_loss`` (pg) or ``surrogate_loss`` (ppo)."""
        if self.algo == "pg":
            loss = inner_loss(self.policy, params, ep, self.gamma)
            return loss, {"loss": loss.item()}
        return surrogate_loss(self.policy, params, ep, self.gamma, self.clip_coef)

    def loss(self, params: Params, ep: Episodes, extra: Any = None) -> tuple[Tensor, dict[str, float]]:
        """The adaptation loss; ``extra`` is what :meth:`prepare` returned (unused here)."""
        return self.task_loss(params, ep)

    def prepare(self, ep: Episodes) -> Any:
        """Called once per step before the epochs (the hybrid adapter samples its replay batch here)."""
        return None

    def step(self, params: Params, ep: Episodes) -> tuple[Params, dict[str, float]]:
        """One adaptation step on the episodes ``ep`` acted with ``params``; returns new detached params."""
        extra = self.prepare(ep)
        stats: dict[str, float] = {}
        for _ in range(1 if self.algo == "pg" else self.ppo_epochs):
            leaf = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            with torch.enable_grad():
                loss, stats = self.loss(leaf, ep, extra)
                params = inner_update(leaf, loss, self.lr, first_order=True)
            params = {k: v.detach() for k, v in params.items()}
        return params, stats

    # ----- the protocol on one task -----------------------------------------------------------------
    def begin_task(self, task: Task, seed: int) -> None:
        """Called before adapting to ``task`` (a hook: the hybrid adapter resets its buffer here)."""

    def observe(self, ep: Episodes, task: Task) -> None:
        """Called with each batch of the task's episodes after it was used (a hook for the hybrid adapter)."""

    def adapt(
        self,
        task: Task,
        steps: int,
        num_trajectories: int = 20,
        seed: int = 0,
        envs: VectorEnv | None = None,
    ) -> AdaptationRun:
        """Adapt to ``task`` for ``steps`` steps from the meta-learned parameters.

        The episodes of evaluation k are seeded ``seed + k``; ``envs`` (``num_trajectories`` sub-envs of the
        task's family, e.g. from ``make_vec_env(..., fast=True)``) is made and closed here when None.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        own = envs is None
        if envs is None:
            envs = get_family(task.family).make_vec_env([task] * num_trajectories, seed=seed, fast=True)
        run = AdaptationRun(params=self.initial_params())
        self.begin_task(task, seed)
        try:
            for k in range(steps + 1):
                ep = seeded_episodes(envs, self.policy, run.params, task, seed + k)
                run.returns.append(ep.mean_return)
                run.env_steps.append(int(ep.valid.sum()))
                if k < steps:
                    run.params, stats = self.step(run.params, ep)
                    run.stats.append(stats)
                self.observe(ep, task)
        finally:
            if own:
                envs.close()
        return run

    def adapted_policy(self, params: Params) -> ActorCritic:
        """A detached copy of the policy holding ``params`` (e.g. ``run.params``), to act or save."""
        with torch.no_grad():
            return snapshot(self.policy, params)


__all__ = ["AdaptAlgo", "AdaptationRun", "StandardAdapter", "seeded", "seeded_episodes", "surrogate_loss"]
