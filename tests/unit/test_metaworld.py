"""Meta-World ML1 (ssm_metarl.envs.metaworld) and our agents under Meta-World's own evaluation function.

Meta-World pins its own MuJoCo, so it is not in the project's venv: these tests are skipped there and run in
``.venv-metaworld`` by ``make bench-metaworld`` before the benchmark.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

metaworld = pytest.importorskip("metaworld")

import gymnasium as gym  # noqa: E402
from metaworld.evaluation import metalearning_evaluation  # noqa: E402

from ssm_metarl.adapt.agents import GradientAgent, InContextAgent, run_protocol  # noqa: E402
from ssm_metarl.adapt.standard import StandardAdapter  # noqa: E402
from ssm_metarl.config import AdaptConfig, ModelConfig  # noqa: E402
from ssm_metarl.envs.metaworld import HORIZON, ml1_family, split_recurrent_obs  # noqa: E402
from ssm_metarl.envs.tasks import Task  # noqa: E402
from ssm_metarl.envs.trial import TrialEnv  # noqa: E402
from ssm_metarl.errors import EnvError  # noqa: E402
from ssm_metarl.models import policy_from_config  # noqa: E402

ENV = "reach-v3"


@pytest.fixture(scope="module")
def family():
    return ml1_family(ENV)


def test_family_holds_the_50_training_goals_and_500_step_episodes(family) -> None:
    assert len(family.train) == 50 and family.finite
    env = family.make_env(family.train[3], seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,)
    steps, done = 0, False
    while not done:
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        steps += 1
        done = term or trunc
        assert 0.0 <= reward <= 10.0 and "success" in info
    assert steps == HORIZON and trunc and not term
    with pytest.raises(EnvError, match="integer in"):
        env.unwrapped.set_task(Task(family.name, (("goal", 50.0),)))
    with pytest.raises(EnvError, match="unknown Meta-World env"):
        ml1_family("reach-v0")
    env.close()


def test_training_goals_differ_and_a_goal_is_the_same_every_reset(family) -> None:
    env = family.make_env(family.train[0], seed=0)
    goals = []
    for i in (0, 0, 1):
        env.unwrapped.set_task(family.train[i])
        env.reset(seed=i)
        goals.append(np.array(env.unwrapped.mw_env._target_pos))
    np.testing.assert_allclose(goals[0], goals[1])
    assert not np.allclose(goals[0], goals[2])
    env.close()


def test_recurrent_observations_carry_the_previous_reward() -> None:
    """The split the in-context agent relies on: Meta-World's recurrent obs = [obs, action, reward/10, done]."""
    envs = gym.make_vec(
        "Meta-World/ML1-test", env_name=ENV, seed=0, meta_batch_size=2, recurrent_info_in_obs=True
    )
    split = split_recurrent_obs(39, 4)
    envs.call("sample_tasks")  # the test split draws its goals only when asked
    obs, _ = envs.reset(seed=0)
    inner, reward = split(obs)
    assert inner.shape == (2, 39) and np.all(reward == 0.0)
    actions = envs.action_space.sample()
    obs, r, _, _, _ = envs.step(actions)
    inner, reward = split(obs)
    np.testing.assert_allclose(reward, r, rtol=1e-5)
    np.testing.assert_allclose(obs[:, 39:43], actions, rtol=1e-5)
    with pytest.raises(EnvError, match="recurrent_info_in_obs"):
        split(obs[:, :39])
    envs.close()


def _policy(obs_space, act_space, kind: str):
    torch.manual_seed(0)
    return policy_from_config(ModelConfig(kind=kind, hidden_dim=16, state_dim=8), obs_space, act_space)


@pytest.mark.parametrize("algo", ["rl2", "maml"])
def test_agents_run_under_metaworlds_own_evaluation(family, algo: str) -> None:
    envs = gym.make_vec(
        "Meta-World/ML1-test", env_name=ENV, seed=0, meta_batch_size=2, recurrent_info_in_obs=algo == "rl2"
    )
    if algo == "rl2":
        trial = TrialEnv(family.name, 2)
        policy = _policy(trial.observation_space, trial.action_space, "gated_ssm")
        trial.close()
        agent = InContextAgent(policy, 2, split_obs=split_recurrent_obs(39, 4))
    else:
        env = family.make_env(family.train[0])
        policy = _policy(env.observation_space, env.action_space, "ssm")
        env.close()
        agent = GradientAgent(StandardAdapter(policy, AdaptConfig(steps=1, lr=0.1, episodes=1)), 2)
    success, mean_return, per_task = metalearning_evaluation(
        agent, envs, num_evals=1, adaptation_steps=1, adaptation_episodes=1, evaluation_episodes=1
    )
    assert 0.0 <= success <= 1.0 and np.isfinite(mean_return) and set(per_task) == {ENV}
    # our own scoring of every sub-env on the same envs
    envs.call("toggle_sample_tasks_on_reset", False)
    envs.call("sample_tasks")
    res = run_protocol(
        agent,
        envs,
        1,
        1,
        1,
        seed=0,
        on_phase=lambda p: envs.call("toggle_terminate_on_success", p == "evaluation"),
    )
    assert res.success.shape == (2, 1) and set(np.unique(res.success)) <= {0.0, 1.0}
    envs.close()
