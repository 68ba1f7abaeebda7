"""Policies learn from reward: fixed seeds, thresholds on cheap tasks (ISSUE: RL core behaviour tests)."""

import numpy as np
from ssm_metarl.defaults import pg_defaults, ppo_defaults

from ssm_metarl.config import replace
from ssm_metarl.rl.pg import train_pg
from ssm_metarl.rl.ppo import train_ppo


def test_ppo_ssm_solves_cartpole_within_150k_steps():
    cfg = ppo_defaults("CartPole-v1")
    assert cfg.model.kind == "ssm" and cfg.total_steps <= 150_000
    result = train_ppo(replace(cfg, seed=1, progress=False))
    returns = np.asarray(result.episode_returns)
    # the mean of the last 20 training episodes reaches 475 at some point within the budget
    rolling = np.convolve(returns, np.ones(20) / 20, mode="valid")
    assert rolling.max() >= 475, f"best 20-episode mean {rolling.max():.1f}"
    assert result.final_eval["eval_return_det"] >= 475


def test_reinforce_beats_150_on_cartpole():
    cfg = replace(pg_defaults("CartPole-v1"), episodes=800, seed=0, progress=False)
    result = train_pg(cfg)
    last = float(np.mean(result.episode_returns[-50:]))
    assert last > 150, f"mean of the last 50 episodes {last:.1f}"
