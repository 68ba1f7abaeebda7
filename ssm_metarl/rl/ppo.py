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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gymnasium.vector import VectorEnv
from torch import Tensor
from tqdm import tqdm

from ssm_metarl.config import PPOConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.envs.snapshot import check_snapshot, env_state, restore_env_state
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.models.base import index_state
from ssm_metarl.rl.evaluate import check_spaces, evaluate_policy
from ssm_metarl.rl.gae import gae
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.rollout import RewardScaler, RolloutCollector
from ssm_metarl.rl.run import Resumed, Run, make_optimizer
from ssm_metarl.spaces import batch_leaves, from_batch_leaves
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
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
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


def _collector_state(collector: RolloutCollector) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """What the collector carries between segments, as JSON and tensors (for resumable checkpoints)."""
    problems = check_snapshot(collector.envs)
    state: dict[str, Any] = {
        "episode_returns": collector.stats.returns,
        "episode_lengths": collector.stats.lengths,
        "total_steps": collector.total_steps,
        "env": env_state(collector.envs, strict=False),
        "env_exact": not problems,
    }
    space = collector.envs.single_observation_space
    tensors = {k: torch.as_tensor(v) for k, v in batch_leaves(space, collector.obs).items()}
    tensors |= {
        "reset": collector.reset,
        "ep_return": torch.as_tensor(collector.ep_return),
        "ep_length": torch.as_tensor(collector.ep_length),
    }
    for i, s in enumerate(collector.state):
        tensors[f"state.{i}"] = torch.view_as_real(s) if s.is_complex() else s
    if collector.reward_scaler is not None:
        rs = collector.reward_scaler
        tensors["reward_ret"] = torch.as_tensor(rs.ret)
        tensors.update({f"reward_norm.{k}": v for k, v in rs.norm.state_dict().items()})
    return state, tensors


def _restore_collector(collector: RolloutCollector, r: Resumed, seed: int) -> None:
    s, t = r.state, r.tensors
    collector.stats.returns = list(s["episode_returns"])
    collector.stats.lengths = list(s["episode_lengths"])
    collector.total_steps = int(s["total_steps"])
    if collector.reward_scaler is not None:
        collector.reward_scaler.ret = t["reward_ret"].numpy().copy()
        collector.reward_scaler.norm.load_state_dict(
            {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("reward_norm.")}
        )
    if not s["env_exact"]:
        logger.warning(
            "the environments of %s cannot be restored exactly (%s): the resumed run starts new episodes",
            r.path,
            "; ".join(s["env"].get("problems", [])),
        )
        collector.obs, _ = collector.envs.reset(seed=seed + 7919 * r.update)
        return
    restore_env_state(collector.envs, s["env"])
    space = collector.envs.single_observation_space
    collector.obs = from_batch_leaves(
        space, {k: v.numpy().copy() for k, v in t.items() if k.startswith("obs")}
    )
    collector.reset = t["reset"].to(collector.device)
    collector.ep_return = t["ep_return"].numpy().copy()
    collector.ep_length = t["ep_length"].numpy().copy()
    template = collector.state
    collector.state = tuple(
        torch.view_as_complex(t[f"state.{i}"].contiguous()) if z.is_complex() else t[f"state.{i}"]
        for i, z in enumerate(template)
    )


def build_policy(cfg: PPOConfig, envs: VectorEnv) -> ActorCritic:
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
    optimizer = make_optimizer(policy.parameters(), lr=cfg.lr, eps=1e-5)
    scaler = RewardScaler(cfg.num_envs, cfg.gamma) if cfg.normalize_reward else None
    collector = RolloutCollector(envs, policy, seed=cfg.run.seed, reward_scaler=scaler)
    result = TrainResult(policy)
    eval_due = cfg.eval_every or None
    start = 0
    resumed = run.resume(policy, optimizer)
    if resumed is not None:
        _restore_collector(collector, resumed, cfg.run.seed)
        start, result.episode_end_steps = resumed.update, list(resumed.state["end_steps"])
        result.best_eval, eval_due = float(resumed.state["best_eval"]), resumed.state["eval_due"]
    elif run.out is not None and cfg.run.checkpoint_every and check_snapshot(envs):
        logger.warning(
            "%s cannot be snapshot exactly (%s): a resumed run will start new episodes",
            cfg.env_id,
            "; ".join(check_snapshot(envs)),
        )
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.num_updates * cfg.batch_size, disable=not cfg.run.progress, unit="step", leave=False)
    bar.update(start * cfg.batch_size)

    for update in range(start, cfg.num_updates):
        if cfg.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (1.0 - update / cfg.num_updates)
        n_done = len(collector.stats.returns)
        policy.eval()
        rollout = collector.collect(policy, cfg.rollout_steps)
        policy.train()
        global_step = (update + 1) * cfg.batch_size
        result.episode_end_steps += [global_step] * (len(collector.stats.returns) - n_done)
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

        elapsed = time.perf_counter() - t0
        row = {
            "update": update + 1,
            "global_step": global_step,
            "seconds": elapsed,
            "sps": (global_step - start * cfg.batch_size) / max(elapsed, 1e-9),
            "episodes": len(collector.stats.returns),
            "return_mean20": collector.stats.recent(20),
            "return_mean100": collector.stats.recent(100),
            "lr": optimizer.param_groups[0]["lr"],
            **stats,
        }
        if eval_due is not None and global_step >= eval_due:
            eval_due += cfg.eval_every
            row.update(_evaluate(policy, cfg, run, result, update + 1))
        run.log(row)
        state, tensors = _collector_state(collector) if run.out is not None else ({}, {})
        state.update(
            {"end_steps": result.episode_end_steps, "best_eval": result.best_eval, "eval_due": eval_due}
        )
        run.maybe_checkpoint(update + 1, policy, optimizer, state, tensors)
        bar.update(cfg.batch_size)
        bar.set_postfix(ret=f"{row['return_mean20']:.1f}", sps=f"{row['sps']:.0f}")
        if callback is not None and callback(row):
            break

    bar.close()
    result.seconds = time.perf_counter() - t0
    final = _evaluate(policy, cfg, run, result, cfg.num_updates)
    run.log({"global_step": cfg.num_updates * cfg.batch_size, "final": True, **final})
    result.final_eval = final
    result.metrics = run.metrics.rows
    result.episode_returns = list(collector.stats.returns)
    run.finish(
        policy, {"env_id": cfg.env_id, "update": cfg.num_updates, "evaluation": final, **(metadata or {})}
    )
    envs.close()
    return result


def _evaluate(
    policy: ActorCritic, cfg: PPOConfig, run: Run, result: TrainResult, update: int
) -> dict[str, float]:
    """Deterministic and stochastic evaluation; keeps the best checkpoint by deterministic return."""
    from ssm_metarl.checkpoint import save_policy

    policy.eval()
    seed = cfg.run.seed
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 20_000, deterministic=False)
    policy.train()
    out = {
        "eval_return_det": det.mean,
        "eval_return_det_std": det.std,
        "eval_return_stoch": sto.mean,
        "eval_return_stoch_std": sto.std,
    }
    if det.mean > result.best_eval:
        result.best_eval = det.mean
        if run.out is not None:
            save_policy(
                run.out / "best",
                policy,
                {
                    "algo": "ppo",
                    "env_id": cfg.env_id,
                    "update": update,
                    "evaluation": out,
                    "config": cfg.to_dict(),
                },
            )
    return out


__all__ = ["TrainResult", "build_policy", "ppo_update", "train_ppo"]
