"""Per-env-family default hyper-parameters, chosen by measurement (see benchmarks/ and docs/tuning.md).

Families: discrete-action control (CartPole-like) and continuous control (MuJoCo, Pendulum). The family is
read off the env's action space, so any Gymnasium id gets sensible defaults.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym

from ssm_metarl.config import MAMLConfig, ModelConfig, PGConfig, PPOConfig


def is_discrete(env_id: str) -> bool:
    """Whether ``env_id`` has a Discrete action space (raises the env module's clear error if unknown)."""
    from ssm_metarl.envs.make import make_env

    env = make_env(env_id)
    try:
        return isinstance(env.action_space, gym.spaces.Discrete)
    finally:
        env.close()


# Measured on CartPole-v1 (3 seeds, ssm): a shared actor-critic trunk solved it at ~45k steps and then
# collapsed; a separate critic with these settings kept the last-100 mean >= 475 from 77k-112k steps on.
DISCRETE_PPO = PPOConfig(
    total_steps=150_000,
    num_envs=8,
    num_steps=64,
    lr=1e-3,
    update_epochs=10,
    num_minibatches=2,
    gamma=0.98,
    gae_lambda=0.8,
    ent_coef=0.0,
    model=ModelConfig(kind="ssm", hidden_dim=64, state_dim=64, num_layers=1, separate_critic=True),
)

# Measured on HalfCheetah-v5 (ssm, seed 0, 60k steps): lr 3e-4 / 10 epochs / log-std 0 reached a training
# return of -10; lr 1e-3 alone 39; lr 1e-3 with 5 epochs and initial log-std -0.5 reached 479 (eval 1817).
CONTINUOUS_PPO = PPOConfig(
    total_steps=1_000_000,
    num_envs=8,
    num_steps=256,
    lr=1e-3,
    update_epochs=5,
    num_minibatches=8,
    gamma=0.99,
    gae_lambda=0.95,
    ent_coef=0.0,
    normalize_obs=True,
    normalize_reward=True,
    model=ModelConfig(
        kind="ssm", hidden_dim=64, state_dim=64, num_layers=1, separate_critic=True, init_log_std=-0.5
    ),
)


def ppo_defaults(env_id: str) -> PPOConfig:
    """The tuned PPO defaults for ``env_id``'s family."""
    base = DISCRETE_PPO if is_discrete(env_id) else CONTINUOUS_PPO
    return dataclasses.replace(base, env_id=env_id)


def pg_defaults(env_id: str) -> PGConfig:
    """REINFORCE defaults for ``env_id``'s family."""
    # A separate baseline network matters here too: on CartPole-v1 (seed 0, 800 episodes) a shared trunk
    # reached a last-50 mean of 101, a separate one 374.
    model = ModelConfig(kind="ssm", hidden_dim=64, state_dim=64, num_layers=1, separate_critic=True)
    if is_discrete(env_id):
        return PGConfig(env_id=env_id, lr=3e-3, num_envs=8, model=model)
    return PGConfig(env_id=env_id, lr=1e-3, num_envs=8, normalize_obs=True, model=model)


def _family_is_discrete(family: str) -> bool:
    from ssm_metarl.envs.tasks import get_family

    dist = get_family(family)
    env = dist.make_env(dist.train[0])
    try:
        return isinstance(env.action_space, gym.spaces.Discrete)
    finally:
        env.close()


def rl2_defaults(family: str) -> PPOConfig:
    """PPO settings for in-context RL² on ``family`` (the env id is set by ``train_rl2``).

    Measured on navigation-2d (ssm, 4 episodes per trial, seed 0): 16 envs x 200 steps without reward
    normalisation reached -8.9 in the second episode after 800k steps (172 s).
    """
    if _family_is_discrete(family):
        return dataclasses.replace(DISCRETE_PPO, num_envs=16, num_steps=128, gamma=0.99, gae_lambda=0.95)
    return dataclasses.replace(CONTINUOUS_PPO, num_envs=16, num_steps=200, normalize_reward=False)


def maml_defaults(family: str) -> MAMLConfig:
    """MAML settings for ``family``.

    navigation-2d uses rllab's linear feature baseline in the inner loss (``baseline="linear"``, as the MAML
    paper's code does) with our tanh-squashed Gaussian and inner lr 1.0. ``benchmarks/
    maml_navigation_variants.py`` (results/maml_navigation_variants.md; mlp, seed 0, 30 meta-iterations,
    held-out goals, return after 1 / 3 steps from about -45): tanh + critic baseline + lr 1.0: -40.5 / -32.7;
    tanh + linear + 1.0: -11.7 / -5.8; clipped Gaussian + critic + 0.1 (the paper's step): -44.9 / -44.4;
    clip + linear + 0.1: -20.7 / -11.1. The critic sees only the position, neither the goal nor the time
    step, so it cannot follow the return's decay within an episode; the linear fit on the support episodes
    can. With the critic the inner step size had to be 1.0 (one-step gain after 30 meta-iterations 0.6 with
    0.1, 6.8 with 1.0). Adam at 1e-3 moved the policy by an approx-KL of 2e-4 per meta-update, 3e-3 by 5e-3.

    Other continuous families keep the tanh Gaussian with inner lr 1.0: on halfcheetah-dir (mlp, seed 0)
    inner lr 0.1 left the post-step training return flat at about -12 for 43 meta-iterations; 1.0 lifted it
    above +30 within 55.

    pendulum-physics is adapted from a multi-task PPO policy (``benchmarks/adaptation.py``), where large
    steps destroy what PPO learned; ``benchmarks/pendulum_adapt_lr.py`` measures the return after 2 steps
    per step size (results/pendulum_adapt_lr.md, 2 seeds, wide intervals): -330 -> -320 with 0.03 (the best
    mean), -525 with 0.1, -1387 with 1.0.
    """
    base = MAMLConfig(family=family, inner_lr=1.0, outer_lr=3e-3)
    if _family_is_discrete(family):
        return dataclasses.replace(base, inner_lr=0.1, outer_lr=1e-3)
    if family == "pendulum-physics":
        return dataclasses.replace(base, inner_lr=0.03, outer_lr=3e-4)
    if family == "navigation-2d":
        return dataclasses.replace(base, baseline="linear")
    return base
