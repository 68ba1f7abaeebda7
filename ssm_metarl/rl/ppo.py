"""Recurrent PPO with GAE (Schulman et al. 2017, 2016) for any ActorCritic on any Gymnasium env.

The loop reads top to bottom: collect a segment -> GAE -> a few epochs of clipped-surrogate updates over
minibatches of whole env sequences -> log, evaluate, checkpoint. Minibatches re-run the policy with
``forward`` from the stored segment-start state and the stored resets, so on the first epoch the new
log-probs equal the acting ones and the probability ratio is exactly 1 (tested). With the structured SSM
``forward`` is a parallel scan, so re-running whole sequences is cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ssm_metarl.checkpoint import load_metadata, load_policy, save_policy
from ssm_metarl.config import PGConfig, PPOConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.models.base import index_state
from ssm_metarl.rl.evaluate import check_spaces, evaluate_policy
from ssm_metarl.rl.gae import gae
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.metrics import MetricsLogger
from ssm_metarl.rl.optim import make_adam
from ssm_metarl.rl.rollout import RewardScaler, RolloutCollector
from ssm_metarl.seeding import seed_everything, set_training_threads
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


def build_policy(cfg: PPOConfig, envs) -> ActorCritic:
    """The policy a config describes, for the spaces of ``envs``."""
    return policy_from_config(
        cfg.model, envs.single_observation_space, envs.single_action_space, cfg.normalize_obs
    )


def ppo_update(
    policy: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, advantage, ret, cfg: PPOConfig
) -> dict[str, float]:
    """Epochs of PPO over minibatches of whole env sequences; returns the last epoch's mean stats."""
    B = rollout.num_envs
    obs, reset = rollout.obs.transpose(0, 1), rollout.reset.transpose(0, 1)  # (B, T, D), (B, T)
    action = rollout.action.transpose(0, 1)  # (B, T) or (B, T, A)
    old_log_prob, old_value = rollout.log_prob.T, rollout.value.T  # (B, T)
    advantage, ret = advantage.T, ret.T  # (B, T)
    stats_sum: dict[str, float] = {}
    n = 0
    for _ in range(cfg.update_epochs):
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
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm))
            optimizer.step()
            for k, v in stats.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + float(v)
            n += 1
        if cfg.target_kl is not None and stats_sum.get("approx_kl", 0.0) / n > cfg.target_kl:
            break
    return {k: v / max(n, 1) for k, v in stats_sum.items()}


def prepare_run(cfg: PPOConfig | PGConfig):
    """What every training entry point does first: validate, one thread, seed, build the vector env."""
    cfg.validate()
    set_training_threads(cfg.threads)
    seed_everything(cfg.seed)
    return make_vec_env(cfg.env_id, cfg.num_envs, seed=cfg.seed, max_episode_steps=cfg.max_episode_steps)


def train_ppo(
    cfg: PPOConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train with PPO as ``cfg`` says. ``callback(row)`` sees each metrics row; returning True stops."""
    envs = prepare_run(cfg)
    start_update = 0
    if cfg.resume is not None:
        policy = load_policy(cfg.resume)
        start_update = int(load_metadata(cfg.resume).get("update", 0))
    if policy is None:
        policy = build_policy(cfg, envs)
    check_spaces(policy, envs, cfg.env_id)
    policy = policy.to(cfg.device)
    optimizer = make_adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    if cfg.resume is not None:
        _load_optimizer(optimizer, cfg.resume)
    scaler = RewardScaler(cfg.num_envs, cfg.gamma) if cfg.normalize_reward else None
    collector = RolloutCollector(envs, policy, seed=cfg.seed, reward_scaler=scaler)
    metrics = MetricsLogger(cfg.out_dir, cfg.tensorboard)
    result = TrainResult(policy)
    end_steps: list[int] = []
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.num_updates * cfg.batch_size, disable=not cfg.progress, unit="step", leave=False)
    bar.update(start_update * cfg.batch_size)
    eval_due = cfg.eval_every or None

    for update in range(start_update, cfg.num_updates):
        if cfg.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (1.0 - update / cfg.num_updates)
        n_done = len(collector.stats.returns)
        policy.eval()
        rollout = collector.collect(policy, cfg.num_steps)
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
        stats = ppo_update(policy, optimizer, rollout, advantage, ret, cfg)

        elapsed = time.perf_counter() - t0
        row = {
            "update": update + 1,
            "global_step": global_step,
            "seconds": elapsed,
            "sps": (global_step - start_update * cfg.batch_size) / max(elapsed, 1e-9),
            "episodes": len(collector.stats.returns),
            "return_mean20": collector.stats.recent(20),
            "return_mean100": collector.stats.recent(100),
            "lr": optimizer.param_groups[0]["lr"],
            **stats,
        }
        if eval_due is not None and global_step >= eval_due:
            eval_due += cfg.eval_every
            row.update(_evaluate(policy, cfg, result, update + 1))
        metrics.log(row)
        bar.update(cfg.batch_size)
        bar.set_postfix(ret=f"{row['return_mean20']:.1f}", sps=f"{row['sps']:.0f}")
        if callback is not None and callback(row):
            break

    bar.close()
    result.seconds = time.perf_counter() - t0
    final = _evaluate(policy, cfg, result, cfg.num_updates)
    metrics.log({"global_step": cfg.num_updates * cfg.batch_size, "final": True, **final})
    result.final_eval = final
    result.metrics = metrics.rows
    result.episode_returns = list(collector.stats.returns)
    result.episode_end_steps = end_steps
    if cfg.out_dir is not None:
        _save(policy, optimizer, cfg, Path(cfg.out_dir) / "final", cfg.num_updates, final)
    metrics.close()
    envs.close()
    return result


def _evaluate(policy: ActorCritic, cfg: PPOConfig, result: TrainResult, update: int) -> dict[str, float]:
    """Deterministic and stochastic evaluation; keeps the best checkpoint by deterministic return."""
    policy.eval()
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 20_000, deterministic=False)
    policy.train()
    out = {
        "eval_return_det": det.mean,
        "eval_return_det_std": det.std,
        "eval_return_stoch": sto.mean,
        "eval_return_stoch_std": sto.std,
    }
    if det.mean > result.best_eval:
        result.best_eval = det.mean
        if cfg.out_dir is not None:
            save_policy(Path(cfg.out_dir) / "best", policy, _metadata(cfg, update, out))
    return out


def _metadata(cfg: PPOConfig, update: int, evaluation: dict[str, float]) -> dict[str, Any]:
    return {
        "algo": "ppo",
        "env_id": cfg.env_id,
        "update": update,
        "global_step": update * cfg.batch_size,
        "config": asdict(cfg),
        "evaluation": evaluation,
    }


def _save(policy, optimizer, cfg: PPOConfig, path: Path, update: int, evaluation: dict[str, float]) -> None:
    """The policy checkpoint plus Adam's moments (safetensors, keyed by parameter index) for resuming."""
    save_policy(path, policy, _metadata(cfg, update, evaluation))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tensors = {}
    for i, p in enumerate(params):
        for k, v in optimizer.state.get(p, {}).items():
            tensors[f"{i}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
    save_file(tensors, str(path / "optimizer.safetensors"))


def _load_optimizer(optimizer: torch.optim.Optimizer, path: str) -> None:
    file = Path(path) / "optimizer.safetensors"
    if not file.exists():
        logger.warning("no optimizer state in %s: Adam restarts from zero moments", path)
        return
    tensors = load_file(str(file))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        keys = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == str(i)}
        if keys:
            optimizer.state[p] = {k: v.to(p.device) for k, v in keys.items()}
