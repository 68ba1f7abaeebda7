"""REINFORCE with a learned baseline (Williams 1992), the seeds' ``policy_gradient`` mode.

Each update collects one whole episode per env, computes the discounted reward-to-go (bootstrapping with
the critic only where the time limit cut an episode), and takes one gradient step on
``-log pi(a|s) * (G - V(s))`` plus the baseline's regression loss. Recurrent policies are re-run over
each whole episode from the initial state, so the gradient flows through the full history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ssm_metarl.config import PGConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models import ActorCritic
from ssm_metarl.rl.evaluate import check_spaces, evaluate_policy
from ssm_metarl.rl.gae import discounted_returns
from ssm_metarl.rl.losses import pg_loss
from ssm_metarl.rl.ppo import TrainResult, build_policy
from ssm_metarl.rl.rollout import collect_episodes
from ssm_metarl.rl.run import EnvCarry, Run, make_optimizer


def train_pg(
    cfg: PGConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train with REINFORCE + baseline for ``cfg.episodes`` episodes (``cfg.num_envs`` per update)."""
    run = Run("pg", cfg)
    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=cfg.run.seed, max_episode_steps=cfg.max_episode_steps)
    policy = (policy or build_policy(cfg, envs)).to(cfg.run.device)
    check_spaces(policy, envs, cfg.env_id)
    run.guard_parameters(policy, "the start of training")
    optimizer = make_optimizer(policy.parameters(), lr=cfg.lr)
    resumed = run.resume(policy, optimizer, EnvCarry(envs))
    saved: dict[str, Any] = (
        resumed.state if resumed else {"global_step": 0, "episode_returns": [], "end_steps": []}
    )
    global_step, returns, end_steps = saved["global_step"], saved["episode_returns"], saved["end_steps"]

    for update in run.updates(cfg.num_updates, callback=callback, show="return_mean"):
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
        returns += episode_returns
        end_steps += [global_step] * len(episode_returns)
        row = run.row(update=update + 1, episodes=(update + 1) * cfg.num_envs, global_step=global_step)
        row |= {"return_mean": sum(episode_returns) / len(episode_returns), **stats}
        run.end_update(row, {"global_step": global_step, "episode_returns": returns, "end_steps": end_steps})

    policy.eval()
    seed = cfg.run.seed
    det = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 10_000, deterministic=True)
    sto = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, seed=seed + 20_000, deterministic=False)
    final, seconds = {"eval_return_det": det.mean, "eval_return_stoch": sto.mean}, run.seconds
    run.log({"global_step": global_step, "final": True, **final})
    run.finish(policy, {"env_id": cfg.env_id, "global_step": global_step, "evaluation": final})
    envs.close()
    return TrainResult(policy, run.metrics.rows, returns, end_steps, final, seconds=seconds)


__all__ = ["train_pg"]
