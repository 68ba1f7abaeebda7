"""Recurrent PPO with GAE (Schulman et al. 2017, 2016) for any ActorCritic on any Gymnasium env.

The loop reads top to bottom: collect a segment -> GAE -> a few epochs of clipped-surrogate updates over
minibatches of whole env sequences -> log, evaluate, checkpoint. Minibatches re-run the policy with
``forward`` from the stored segment-start state and the stored resets, so on the first epoch the new
log-probs equal the acting ones and the probability ratio is exactly 1 (tested). With the structured SSM
``forward`` is a parallel scan, so re-running whole sequences is cheap.

RL² (Duan et al. 2016) is this loop on a task family's trial env (:mod:`ssm_metarl.envs.trial`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from ssm_metarl.config import PGConfig, PPOConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.models.base import index_state, is_recurrence_parameter
from ssm_metarl.rl.evaluate import check_spaces, evaluate_policy
from ssm_metarl.rl.gae import gae
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.rollout import RewardScaler, RolloutCollector
from ssm_metarl.rl.run import Evaluator, Run, make_optimizer
from ssm_metarl.types import Rollout

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run returns: the final policy, its metrics and evaluation results."""

    policy: ActorCritic
    metrics: list[dict[str, Any]] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    final_eval: dict[str, float] = field(default_factory=dict)
    best_eval: float = float("-inf")
    seconds: float = 0.0


def ppo_update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantage: Tensor,
    ret: Tensor,
    cfg: PPOConfig,
    run: Run,
    update: int,
) -> dict[str, float]:
    """Epochs of PPO over minibatches of whole env sequences; returns the last epoch's mean stats."""
    B = rollout.num_envs
    obs, reset = rollout.obs.transpose(0, 1), rollout.reset.transpose(0, 1)  # (B, T, D), (B, T)
    action = rollout.action.transpose(0, 1)  # (B, T) or (B, T, A)
    old_log_prob, old_value = rollout.log_prob.T, rollout.value.T  # (B, T)
    advantage, ret = advantage.T, ret.T  # (B, T)
    stats_sum: dict[str, float] = {}
    n = 0
    grads = FlatGrads(clip_groups(policy, cfg))
    for epoch in range(cfg.update_epochs):
        stats_sum, n = {}, 0
        for mb in torch.randperm(B, device=obs.device).split(cfg.envs_per_minibatch):
            new_log_prob, entropy, new_value, _ = policy.evaluate(
                obs[mb], index_state(rollout.state0, mb), reset[mb], action[mb]
            )
            loss, stats = ppo_loss(
                new_log_prob,
                old_log_prob[mb],
                advantage[mb],
                new_value,
                old_value[mb],
                ret[mb],
                entropy,
                clip_coef=cfg.clip_coef,
                vf_coef=cfg.vf_coef,
                ent_coef=cfg.ent_coef,
                clip_vloss=cfg.clip_vloss,
                norm_adv=cfg.norm_adv,
            )
            grads.zero_()
            loss.backward()
            norms = grads.clip_(cfg.max_grad_norm)
            grad_norm = norms[0] if len(norms) == 1 else torch.stack(norms).norm()
            run.guard(f"update {update}, epoch {epoch + 1}", loss=loss, grad_norm=grad_norm)
            optimizer.step()
            stats["grad_norm"] = float(grad_norm)
            for k, v in stats.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + float(v)
            n += 1
        if cfg.target_kl is not None and stats_sum.get("approx_kl", 0.0) / n > cfg.target_kl:
            break
    run.guard_parameters(policy, f"update {update}")
    return {k: v / max(n, 1) for k, v in stats_sum.items()}


def clip_groups(policy: ActorCritic, cfg: PPOConfig) -> list[list[Tensor]]:
    """The parameter sets whose gradients are norm-clipped apart (``PPOConfig.clip_grad``): all of them
    together, or the critic's (``critic_backbone``, ``critic``) and the actor's (the rest)."""
    if cfg.clip_grad == "global":
        return [list(policy.parameters())]
    critic: list[Tensor] = [
        p for n, p in policy.named_parameters() if n.startswith(("critic_backbone.", "critic."))
    ]
    ids = {id(p) for p in critic}
    return [[p for p in policy.parameters() if id(p) not in ids], critic]


class FlatGrads:
    """The gradients of parameter sets (:func:`clip_groups`) as views into one flat buffer per set, so that
    zeroing, the norm and the clipping of a set are one operation each instead of one per tensor: backward
    accumulates into a defined ``.grad`` in place. On a gated-ssm RL² policy (61 tensors) the clipping is
    several times faster than ``clip_grad_norm_`` over the tensors (``benchmarks/results/optimizer_speed.md``).
    The clipping is
    ``clip_grad_norm_``'s: grads times min(1, max_norm / (norm + 1e-6)). Frozen parameters (``requires_grad``
    False) get ``.grad`` None, as ``zero_grad(set_to_none=True)`` leaves them, so Adam skips them. One that
    requires grad but is not reached by a minibatch's loss gets a zero gradient, not None: Adam then steps it
    with its momentum, where with None it would skip it. Every PPO minibatch runs the same graph, so a
    parameter is reached by all of them or by none (and one never reached has zero moments, so Adam leaves it
    where it is). A set of mixed dtypes or devices is one buffer per (dtype, device)."""

    def __init__(self, sets: list[list[Tensor]]) -> None:
        self.sets: list[list[Tensor]] = []  # per set, its buffers
        self.bound: list[tuple[Tensor, Tensor]] = []  # (parameter, the view it was given)
        for params in sets:
            by_kind: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
            for p in params:
                if p.requires_grad:
                    by_kind.setdefault((p.dtype, p.device), []).append(p)
                else:
                    p.grad = None  # whatever an earlier update left, Adam must not apply it again
            buffers = []
            for (dtype, device), ps in by_kind.items():
                buf = torch.zeros(sum(p.numel() for p in ps), dtype=dtype, device=device)
                offset = 0
                for p in ps:
                    p.grad = buf[offset : offset + p.numel()].view_as(p)
                    self.bound.append((p, p.grad))
                    offset += p.numel()
                buffers.append(buf)
            self.sets.append(buffers)

    def zero_(self) -> None:
        """Zero every gradient; raises where something replaced a parameter's ``.grad`` since (it would
        not be zeroed, clipped or seen)."""
        for p, g in self.bound:
            if p.grad is not g:
                raise RuntimeError(
                    "a parameter's .grad was replaced during the PPO update (zero_grad(set_to_none=True) or an "
                    "assignment); FlatGrads owns the gradients there"
                )
        for buffers in self.sets:
            for buf in buffers:
                buf.zero_()

    def clip_(self, max_norm: float) -> list[Tensor]:
        """Scale each set's gradients to a total 2-norm of at most ``max_norm``; returns each set's norm
        before clipping (as ``clip_grad_norm_`` does)."""
        norms = []
        for buffers in self.sets:
            if not buffers:
                norms.append(torch.zeros(()))
                continue
            parts = [torch.linalg.vector_norm(buf) for buf in buffers]
            if len(parts) == 1:
                norm = parts[0]
            else:
                norm = torch.linalg.vector_norm(torch.stack([q.to(parts[0].device) for q in parts]))
            coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
            for buf in buffers:
                buf.mul_(coef.to(buf.device, buf.dtype))
            norms.append(norm)
        return norms


def optimizer_groups(policy: ActorCritic, cfg: PPOConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: the recurrences' own parameters at ``recurrence_lr_scale`` x ``lr`` (see
    ``models.base.is_recurrence_parameter``), the rest at ``lr``; each group keeps its ``lr_scale`` for the
    annealing. With the scale at 1, one group."""
    named = list(policy.named_parameters())
    scale = cfg.recurrence_lr_scale
    if scale == 1.0:  # one group, in the parameters' order (as checkpoints from before the option have it)
        return [{"params": [p for _, p in named], "lr": cfg.lr, "lr_scale": 1.0}]
    rec = [p for n, p in named if is_recurrence_parameter(n)]
    rest = [p for n, p in named if not is_recurrence_parameter(n)]
    return [
        {"params": rest, "lr": cfg.lr, "lr_scale": 1.0},
        {"params": rec, "lr": cfg.lr * scale, "lr_scale": scale},
    ]


def build_policy(cfg: PPOConfig | PGConfig, envs: VectorEnv) -> ActorCritic:
    """The policy a config describes, for the spaces of ``envs``."""
    return policy_from_config(
        cfg.model, envs.single_observation_space, envs.single_action_space, cfg.normalize_obs
    )


def train_ppo(
    cfg: PPOConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    algo: str = "ppo",
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train with PPO as ``cfg`` says. ``callback(row)`` sees each metrics row; returning True stops.

    ``algo`` and ``metadata`` label the run and its checkpoints (``train_rl2`` passes ``"rl2"`` and the
    family)."""
    run = Run(algo, cfg)
    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=cfg.run.seed, max_episode_steps=cfg.max_episode_steps)
    policy = (policy or build_policy(cfg, envs)).to(cfg.run.device)
    check_spaces(policy, envs, cfg.env_id)
    run.guard_parameters(policy, "the start of training")
    optimizer = make_optimizer(optimizer_groups(policy, cfg), lr=cfg.lr, eps=1e-5)
    scaler = RewardScaler(cfg.num_envs, cfg.gamma) if cfg.normalize_reward else None
    collector = RolloutCollector(envs, policy, seed=cfg.run.seed, reward_scaler=scaler)
    resumed = run.resume(policy, optimizer, collector)
    end_steps = list(resumed.state["end_steps"]) if resumed else []  # global_step as each episode ended
    evaluator = Evaluator(
        partial(_evaluate, policy, cfg), cfg.eval_every, {"algo": "ppo", "env_id": cfg.env_id}
    )

    for update in run.updates(cfg.num_updates, cfg.batch_size, evaluator=evaluator, callback=callback):
        if cfg.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * group["lr_scale"] * (1.0 - update / cfg.num_updates)
        n_done = len(collector.stats.returns)
        policy.eval()
        rollout = collector.collect(policy, cfg.rollout_steps)
        policy.train()
        global_step = (update + 1) * cfg.batch_size
        end_steps += [global_step] * (len(collector.stats.returns) - n_done)
        advantage, ret = gae(
            rollout.reward,
            rollout.value,
            rollout.terminated,
            rollout.truncated,
            rollout.final_value,
            rollout.last_value,
            cfg.gamma,
            cfg.gae_lambda,
        )
        stats = ppo_update(policy, optimizer, rollout, advantage, ret, cfg, run, update + 1)

        row = run.row(update=update + 1, global_step=global_step) | {
            "episodes": len(collector.stats.returns),
            "return_mean20": collector.stats.recent(20),
            "return_mean100": collector.stats.recent(100),
            "lr": optimizer.param_groups[0]["lr"],
            **stats,
        }
        run.end_update(row, state={"end_steps": end_steps})

    seconds = run.seconds
    final = run.evaluate(cfg.num_updates)
    run.log({"global_step": cfg.num_updates * cfg.batch_size, "final": True, **final})
    labels = {"env_id": cfg.env_id, "update": cfg.num_updates, "evaluation": final, **(metadata or {})}
    run.finish(policy, labels)
    envs.close()
    returns = list(collector.stats.returns)
    return TrainResult(policy, run.metrics.rows, returns, end_steps, final, run.best_eval, seconds)


def _evaluate(policy: ActorCritic, cfg: PPOConfig) -> dict[str, float]:
    """Deterministic and stochastic evaluation returns of ``policy`` (mean and std of each)."""
    policy.eval()
    seed = cfg.run.seed
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 20_000, deterministic=False)
    policy.train()
    return {
        "eval_return_det": det.mean,
        "eval_return_det_std": det.std,
        "eval_return_stoch": sto.mean,
        "eval_return_stoch_std": sto.std,
    }


__all__ = ["FlatGrads", "TrainResult", "build_policy", "ppo_update", "train_ppo"]
