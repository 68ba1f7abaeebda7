"""Hybrid test-time adaptation: the standard loss plus ``experience_weight`` times an off-policy replay loss
on trajectories from an :class:`~ssm_metarl.adapt.replay.ExperienceBuffer` (``docs/architecture.md``).

Shape letters (see :mod:`ssm_metarl.types`): T time, B trajectories in a replay batch.

Per adaptation step (everything else as in :class:`~ssm_metarl.adapt.standard.StandardAdapter`)::

    loss = task_loss(params; fresh episodes of this task) + experience_weight * replay_loss(params; R)

where R is ``replay_batch_size`` trajectories drawn from the buffer: meta-training tasks (see
:func:`fill_buffer`) and the earlier episodes of this task (each batch is added after it was used). The
replay loss is :func:`~ssm_metarl.adapt.standard.surrogate_loss` on R: the importance ratio
``pi_params(a | history) / mu(a | history)`` to the stored behaviour log-prob is clipped as in PPO, and
the advantage is the trajectory's discounted return minus the detached critic value, normalised. The policy
is re-run over each replayed trajectory from its first step and its initial state, so the recurrent state
of every replayed step is recomputed from the whole history that preceded it (:func:`replay_log_prob`).

Each task starts from a copy of the buffer given at construction, so tasks and seeds never see each other's
episodes. With ``experience_weight = 0`` the replay term is still computed but adds exact zeros: the
parameters equal the standard adapter's bit for bit (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from ssm_metarl.adapt.replay import ExperienceBuffer, ReplayBatch
from ssm_metarl.adapt.standard import StandardAdapter, surrogate_loss, task_episodes
from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.functional import Params, call, params_of
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.rollout import Episodes


def replay_log_prob(policy: ActorCritic, params: Params, batch: ReplayBatch) -> Tensor:
    """(T, B) log-prob of the replayed actions under ``params``, the policy run over each whole trajectory
    from its initial state (what the replay loss uses); padding steps hold meaningless values."""
    ep = batch.to_episodes(policy.initial_state(batch.valid.shape[1]))
    r = ep.rollout
    args = (r.obs.transpose(0, 1), r.state0, r.reset.transpose(0, 1), r.action.transpose(0, 1))
    log_prob, _, _, _ = call(policy, params, "evaluate", *args)
    return log_prob.T


def replay_loss(
    policy: ActorCritic, params: Params | None, batch: ReplayBatch, gamma: float, clip_coef: float
) -> tuple[Tensor, dict[str, float]]:
    """Clipped importance-weighted policy-gradient loss on replayed whole trajectories (module docstring);
    ``params`` None means the policy's own parameters."""
    ep = batch.to_episodes(policy.initial_state(batch.valid.shape[1]))
    return surrogate_loss(policy, params, ep, gamma, clip_coef, bootstrap=False)


def check_buffer(policy: ActorCritic, buffer: ExperienceBuffer) -> None:
    """Raise ValueError unless ``buffer`` holds trajectories this policy can replay (or nothing)."""
    if buffer.kind not in (None, "trajectories"):
        raise ValueError(f"the hybrid adapter replays trajectories; this buffer holds {buffer.kind}")
    first = next(iter(buffer.items()), None)
    if first is None:
        return
    obs_dim, act_shape = policy.obs_dim, policy.action_shape
    if first.obs.shape[1] != obs_dim or tuple(first.action.shape[1:]) != act_shape:
        raise ValueError(
            f"the buffer's trajectories have obs dim {first.obs.shape[1]} and action shape "
            f"{tuple(first.action.shape[1:])}; the policy takes obs dim {obs_dim} and action shape {act_shape}"
        )


def fill_buffer(
    policy: ActorCritic,
    family: str,
    tasks: Sequence[Task] | None = None,
    episodes_per_task: int = 10,
    seed: int = 0,
    capacity: int | None = None,
    buffer: ExperienceBuffer | None = None,
) -> ExperienceBuffer:
    """A buffer of ``episodes_per_task`` whole episodes on each of ``tasks`` (default: the first 10 of the
    family's training split), acting with ``policy``'s current parameters, seeded by ``seed``.

    ``capacity`` defaults to exactly what is collected; pass ``buffer`` to add to an existing one instead.
    """
    dist = get_family(family)
    tasks = list(dist.train[:10] if tasks is None else tasks)
    if not tasks:
        raise ValueError("fill_buffer needs at least one task")
    params = {k: v.detach() for k, v in params_of(policy).items()}
    envs = dist.make_vec_env([tasks[0]] * episodes_per_task, seed=seed, fast=True)
    batches = []
    try:
        for i, task in enumerate(tasks):
            batches.append((task_episodes(envs, policy, params, task, seed + 7919 * (i + 1)), task))
    finally:
        envs.close()
    if buffer is None:
        total = sum(ep.num_steps for ep, _ in batches)
        buffer = ExperienceBuffer(capacity or total, policy.device, seed=seed)
    for ep, task in batches:
        buffer.add_episodes(ep, task)
    return buffer


class HybridAdapter(StandardAdapter):
    """:class:`StandardAdapter` plus ``cfg.experience_weight`` times :func:`replay_loss` on the buffer.

    Args:
        policy: as for :class:`StandardAdapter`.
        cfg: as for :class:`StandardAdapter` (``cfg.experience_weight``: weight of the replay loss, 0
            gives exactly the standard adapter; ``cfg.replay_batch``: trajectories drawn with replacement
            from the buffer per step).
        buffer: trajectories to replay (meta-training tasks, e.g. from :func:`fill_buffer`); copied at the
            start of each task, never modified.
        add_task_episodes: add each batch of the current task's episodes to the task's copy of the buffer
            after it was used, so later steps also replay earlier episodes of this task.
        task_steps: room (env steps) the task's copy of the buffer has beyond the given buffer's capacity, so
            the task's own episodes do not evict the meta-training trajectories until that much is added.
    """

    mode = "hybrid"

    def __init__(
        self,
        policy: ActorCritic,
        buffer: ExperienceBuffer,
        cfg: AdaptConfig | None = None,
        add_task_episodes: bool = True,
        task_steps: int = 50_000,
    ) -> None:
        super().__init__(policy, cfg)
        check_buffer(policy, buffer)
        self.base_buffer, self.add_task_episodes = buffer, add_task_episodes
        self.task_capacity = buffer.capacity + max(task_steps, 0)
        self.buffer = buffer.copy(self.task_capacity)
        self.rng = np.random.default_rng(0)

    def begin_task(self, task: Task, seed: int) -> None:
        """Start the task from a fresh copy of the base buffer and a replay generator seeded by ``seed``."""
        self.buffer = self.base_buffer.copy(self.task_capacity)
        self.rng = np.random.default_rng([seed, 0x5EED])

    def observe(self, ep: Episodes, task: Task) -> None:
        if self.add_task_episodes:
            self.buffer.add_episodes(ep, task)

    def prepare(self, ep: Episodes) -> ReplayBatch | None:
        """The replay batch of this step (None while the buffer is empty)."""
        if len(self.buffer) == 0:
            return None
        return self.buffer.sample(self.cfg.replay_batch, self.rng)

    def loss(
        self, params: Params, ep: Episodes, extra: ReplayBatch | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        loss, stats = self.task_loss(params, ep)
        stats = {f"task_{k}": v for k, v in stats.items()}
        if extra is not None:
            rep, rep_stats = replay_loss(self.policy, params, extra, self.cfg.gamma, self.cfg.clip_coef)
            loss = loss + self.cfg.experience_weight * rep
            stats.update({f"replay_{k}": v for k, v in rep_stats.items()})
        stats["loss"] = float(loss.detach())
        return loss, stats


def make_adapter(
    mode: str, policy: ActorCritic, cfg: AdaptConfig | None = None, buffer: ExperienceBuffer | None = None
) -> StandardAdapter:
    """``"standard"`` -> :class:`StandardAdapter`, ``"hybrid"`` -> :class:`HybridAdapter` (needs ``buffer``)."""
    if mode == "standard":
        return StandardAdapter(policy, cfg)
    if mode == "hybrid":
        if buffer is None:
            raise ValueError("the hybrid adapter needs a buffer (see fill_buffer)")
        return HybridAdapter(policy, buffer, cfg)
    raise ValueError(f"unknown adaptation mode {mode!r}; expected 'standard' or 'hybrid'")


__all__ = ["HybridAdapter", "check_buffer", "fill_buffer", "make_adapter", "replay_log_prob", "replay_loss"]
