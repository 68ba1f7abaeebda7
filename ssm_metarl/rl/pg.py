"""REINFORCE with a learned baseline (Williams 1992), the seeds' ``policy_gradient`` mode.

Each update collects one whole episode per env, computes the discounted reward-to-go (bootstrapping with
the critic only where the time limit cut an episode), and takes one gradient step on
``-log pi(a|s) * (G - V(s))`` plus the baseline's regression loss. Recurrent policies are re-run over
each whole episode from the initial state, so the gradient flows through the full history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

from ssm_metarl.config import PGConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.envs.snapshot import check_snapshot, env_state, restore_env_state
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.rl.evaluate import check_spaces, evaluate_policy
from ssm_metarl.rl.gae import discounted_returns
from ssm_metarl.rl.losses import pg_loss
from ssm_metarl.rl.ppo import TrainResult
from ssm_metarl.rl.rollout import collect_episodes
from ssm_metarl.rl.run import Run, make_optimizer


def train_pg(
    cfg: PGConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train with REINFORCE + baseline for ``cfg.episodes`` episodes (``cfg.num_envs`` per update)."""
    run = Run("pg", cfg)
    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=cfg.run.seed, max_episode_steps=cfg.max_episode_steps)
    if policy is None:
        policy = policy_from_config(
            cfg.model, envs.single_observation_space, envs.single_action_space, cfg.normalize_obs
        )
    policy = policy.to(cfg.run.device)
    check_spaces(policy, envs, cfg.env_id)
    run.guard_parameters(policy, "the start of training")
    optimizer = make_optimizer(policy.parameters(), lr=cfg.lr)
    result = TrainResult(policy)
    start, global_step = 0, 0
    resumed = run.resume(policy, optimizer)
    if resumed is not None:
        start, global_step = resumed.update, int(resumed.state["global_step"])
        result.episode_returns = list(resumed.state["episode_returns"])
        result.episode_end_steps = list(resumed.state["end_steps"])
        restore_env_state(envs, resumed.state["env"])
    t0 = time.perf_counter()

    for update in tqdm(
        range(start, cfg.num_updates), disable=not cfg.run.progress, unit="update", leave=False
    ):
        policy.eval()
        seed = cfg.run.seed if update == 0 else None
        ep = collect_episodes(envs, policy, seed=seed, update_obs_norm=cfg.normalize_obs)
        policy.train()
        r = ep.rollout
        ret = discounted_returns(r.reward, r.terminated, r.truncated, r.final_value, None, cfg.gamma)
        log_prob, entropy, value, _ = policy.evaluate(
            r.obs.transpose(0, 1), r.state0, r.reset.transpose(0, 1), r.action.transpose(0, 1)
        )
        mask, ret = ep.valid.T, ret.T  # (B, T)
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
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        run.guard(f"update {update + 1}", loss=loss, grad_norm=grad_norm)
        optimizer.step()
        run.guard_parameters(policy, f"update {update + 1}")

        episode_returns = ep.returns.tolist()  # raw rewards: no scaling in PG
        global_step += ep.num_steps
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
        run.log(row)
        if run.out is not None:
            state = {
                "global_step": global_step,
                "episode_returns": result.episode_returns,
                "end_steps": result.episode_end_steps,
                "env": env_state(envs, strict=not check_snapshot(envs)),
            }
            run.maybe_checkpoint(update + 1, policy, optimizer, state)
        if callback is not None and callback(row):
            break

    policy.eval()
    seed = cfg.run.seed
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 20_000, deterministic=False)
    result.final_eval = {"eval_return_det": det.mean, "eval_return_stoch": sto.mean}
    result.seconds = time.perf_counter() - t0
    run.log({"global_step": global_step, "final": True, **result.final_eval})
    result.metrics = run.metrics.rows
    run.finish(policy, {"env_id": cfg.env_id, "global_step": global_step, "evaluation": result.final_eval})
    envs.close()
    return result


__all__ = ["train_pg"]
