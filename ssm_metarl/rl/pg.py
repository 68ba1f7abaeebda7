"""REINFORCE with a learned baseline (Williams 1992): the seeds' ``policy_gradient`` mode, done right.

Each update collects one whole episode per env, computes the discounted reward-to-go (bootstrapping with
the critic only where the time limit cut an episode), and takes one gradient step on
``-log pi(a|s) * (G - V(s))`` plus the baseline's regression loss. Recurrent policies are re-run over
each whole episode from the initial state, so the gradient flows through the full history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ssm_metarl.checkpoint import save_policy
from ssm_metarl.config import PGConfig
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.rl.evaluate import evaluate_policy
from ssm_metarl.rl.gae import discounted_returns
from ssm_metarl.rl.losses import pg_loss
from ssm_metarl.rl.metrics import MetricsLogger
from ssm_metarl.rl.optim import make_adam
from ssm_metarl.rl.ppo import TrainResult, prepare_run
from ssm_metarl.rl.rollout import collect_episodes


def train_pg(
    cfg: PGConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train with REINFORCE + baseline for ``cfg.episodes`` episodes (``cfg.num_envs`` per update)."""
    envs = prepare_run(cfg)
    if policy is None:
        policy = policy_from_config(
            cfg.model, envs.single_observation_space, envs.single_action_space, cfg.normalize_obs
        )
    policy = policy.to(cfg.device)
    optimizer = make_adam(policy.parameters(), lr=cfg.lr)
    metrics = MetricsLogger(cfg.out_dir)
    result = TrainResult(policy)
    num_updates = max(1, cfg.episodes // cfg.num_envs)
    t0, global_step = time.perf_counter(), 0

    for update in tqdm(range(num_updates), disable=not cfg.progress, unit="update", leave=False):
        policy.eval()
        rollout, valid = collect_episodes(
            envs, policy, seed=cfg.seed + update if update == 0 else None, update_obs_norm=cfg.normalize_obs
        )
        policy.train()
        ret = discounted_returns(
            rollout.reward, rollout.terminated, rollout.truncated, rollout.final_value, None, cfg.gamma
        )
        log_prob, entropy, value, _ = policy.evaluate(
            rollout.obs.transpose(0, 1),
            rollout.state0,
            rollout.reset.transpose(0, 1),
            rollout.action.transpose(0, 1),
        )
        mask, ret = valid.T, ret.T  # (B, T)
        loss, stats = pg_loss(
            log_prob,
            ret - value.detach(),
            entropy,
            cfg.ent_coef,
            value=value,
            ret=ret,
            vf_coef=cfg.vf_coef,
            mask=mask,
            norm_adv=True,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()

        episode_returns = (rollout.reward * valid).sum(0).tolist()  # raw rewards: no scaling in PG
        global_step += int(valid.sum())
        result.episode_returns += episode_returns
        result.episode_end_steps += [global_step] * len(episode_returns)
        row = {
            "update": update + 1,
            "episodes": (update + 1) * cfg.num_envs,
            "global_step": global_step,
            "seconds": time.perf_counter() - t0,
            "return_mean": sum(episode_returns) / len(episode_returns),
            **stats,
        }
        metrics.log(row)
        if callback is not None and callback(row):
            break

    policy.eval()
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 20_000, deterministic=False)
    result.final_eval = {"eval_return_det": det.mean, "eval_return_stoch": sto.mean}
    result.seconds = time.perf_counter() - t0
    metrics.log({"global_step": global_step, "final": True, **result.final_eval})
    result.metrics = metrics.rows
    if cfg.out_dir is not None:
        meta = {
            "algo": "pg",
            "env_id": cfg.env_id,
            "global_step": global_step,
            "evaluation": result.final_eval,
        }
        save_policy(Path(cfg.out_dir) / "final", policy, meta)
    metrics.close()
    envs.close()
    return result
