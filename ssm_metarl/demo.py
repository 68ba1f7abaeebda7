"""``make demo``: the main job on embedded defaults, end to end in about a minute on a 2-core CPU.

Trains a structured-SSM policy with recurrent PPO on CartPole-v1 (tuned defaults, seed 0), then evaluates
it on seeded episodes next to a random policy and a constant-action policy, prints one table, and writes
the checkpoint and metrics under ``runs/demo``. (The meta-RL demo with test-time adaptation replaces this
once the pre-trained models ship.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ssm_metarl.config import replace
from ssm_metarl.defaults import ppo_defaults
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.rl.evaluate import evaluate_policy
from ssm_metarl.rl.ppo import train_ppo


def baseline_returns(env_id: str, episodes: int, seed: int, constant: int | None) -> list[float]:
    """Returns of a uniform-random (constant=None) or constant-action policy on seeded episodes."""
    envs = make_vec_env(env_id, episodes, seed=seed)
    envs.action_space.seed(seed)
    envs.reset(seed=seed)
    total, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        action = envs.action_space.sample() if constant is None else np.full(episodes, constant)
        _, reward, terminated, truncated, _ = envs.step(action)
        total += reward * running
        running &= ~(terminated | truncated)
    envs.close()
    return total.tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ssm-metarl demo: recurrent PPO with an SSM policy")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--steps", type=int, default=None, help="env steps (default: the tuned budget)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    args = parser.parse_args(argv)
    env_id = "CartPole-v1"
    cfg = replace(ppo_defaults(env_id), seed=0, out_dir=args.out)
    if args.steps is not None:
        cfg = replace(cfg, total_steps=args.steps)
    print(
        f"Training a structured-SSM policy with recurrent PPO on {env_id} for {cfg.total_steps} env steps ..."
    )
    result = train_ppo(cfg)
    policy = result.policy
    seed = 12_345
    rows = [
        ("random policy", baseline_returns(env_id, args.episodes, seed, None)),
        ("constant action (push left)", baseline_returns(env_id, args.episodes, seed, 0)),
        ("SSM policy, deterministic", evaluate_policy(policy, env_id, args.episodes, seed, True).returns),
        ("SSM policy, stochastic", evaluate_policy(policy, env_id, args.episodes, seed, False).returns),
    ]
    print(
        f"\n{env_id}: return over {args.episodes} seeded episodes (seed {seed}); trained in {result.seconds:.0f} s"
    )
    print(f"{'policy':<30} {'mean':>8} {'std':>7}")
    for name, rets in rows:
        print(f"{name:<30} {np.mean(rets):>8.1f} {np.std(rets):>7.1f}")
    print(f"\ncheckpoint: {Path(args.out) / 'final'}   metrics: {Path(args.out) / 'metrics.jsonl'}")
    print(f"evaluate again with: .venv/bin/ssm-metarl evaluate {Path(args.out) / 'final'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
