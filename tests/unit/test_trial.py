"""RL² trials: K episodes of one task back to back, state-carrying inputs, one task per trial."""

import gymnasium as gym
import numpy as np
import pytest

from ssm_metarl.envs.tasks import get_family
from ssm_metarl.envs.trial import TrialEnv, parse_rl2_env_id, rl2_env_id


def test_trial_runs_k_episodes_of_one_task_and_encodes_previous_step():
    env = TrialEnv("bandit", episodes_per_trial=3)
    obs, info = env.reset(seed=0)
    task = env.get_task()
    assert obs.shape == env.observation_space.shape and obs[-2:].tolist() == [0.0, 0.0]
    steps, done_flags, episode_idx = 0, [], []
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(1)
        steps += 1
        done_flags.append(obs[-1])
        episode_idx.append(info["episode_in_trial"])
        assert obs[1 + 1] == 1.0 and obs[-2] == reward  # one-hot of action 1 after the 1-dim obs; prev reward
        assert env.get_task() == task
    assert len(info["inner_episode_returns"]) == 3
    assert sum(done_flags) == 3  # the flag marks the first step after each inner episode end (and trial end)
    assert sorted(set(episode_idx)) == [0, 1, 2]
    assert steps == 3 * env.inner.unwrapped.n  # N pulls per inner episode
    env.reset(seed=1)
    assert env.get_task() != task  # a new trial draws a new task


def test_fixed_task_for_evaluation_and_registered_ids():
    dist = get_family("navigation-2d")
    env_id = rl2_env_id("navigation-2d", 2)
    assert parse_rl2_env_id(env_id) == ("navigation-2d", 2) and parse_rl2_env_id("CartPole-v1") is None
    env = gym.make(env_id, task=dist.test[0])
    env.reset(seed=0)
    assert env.unwrapped.get_task() == dist.test[0]
    env.reset(seed=5)
    assert env.unwrapped.get_task() == dist.test[0]
    a = np.zeros(2, dtype=np.float32)
    obs, *_ = env.step(a)
    assert obs.shape == (2 + 2 + 2,)
    env.close()


def test_rl2_training_and_per_episode_evaluation_run():
    import torch

    from ssm_metarl.config import ModelConfig, PPOConfig, RunConfig
    from ssm_metarl.errors import ConfigError
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2

    torch.manual_seed(0)
    cfg = PPOConfig(
        env_id=rl2_env_id("bandit", 2),
        model=ModelConfig(kind="ssm", hidden_dim=16, state_dim=8),
        total_steps=512,
        num_envs=2,
        rollout_steps=64,
        eval_episodes=1,
        run=RunConfig(progress=False),
    )
    result = train_rl2(cfg)
    tasks = get_family("bandit").test[:3]
    returns = evaluate_in_context(result.policy, "bandit", tasks, episodes_per_trial=2, seeds=(0, 1))
    assert returns.values.shape == (2, 3, 2, 1) and returns.index == "episode"
    # every pull pays 0 or 1, and each inner episode has N pulls
    n = TrialEnv("bandit").inner.unwrapped.n
    assert ((returns.values >= 0) & (returns.values <= n)).all() and (returns.env_steps == n).all()
    with pytest.raises(ConfigError, match="trial env"):
        train_rl2(cfg.replace(env_id="CartPole-v1"))


def test_the_demos_trial_paths_are_the_raw_positions_of_each_episode():
    from ssm_metarl.demo import trial_paths
    from ssm_metarl.pretrained import load_pretrained

    policy = load_pretrained("navigation-ssm")  # it normalises observations: the paths must not be
    task = get_family("navigation-2d").test[0]
    paths = trial_paths(policy, "navigation-2d", task, 4, seed=0)
    assert len(paths) == 4
    for p in paths:
        assert p.shape[1] == 2 and 1 <= len(p) <= 100
        np.testing.assert_array_equal(p[0], [0.0, 0.0])  # every episode starts at the origin
        assert np.abs(np.diff(p, axis=0)).max() <= 0.1 + 1e-6  # actions are velocities in [-0.1, 0.1]
