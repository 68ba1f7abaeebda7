"""The external-protocol agents (ssm_metarl.adapt.agents) on navigation-2d: an in-context agent acts as the
same policy does on a TrialEnv, a gradient agent's recorded episodes re-run to their behaviour log-probs and
its adapted parameters are per sub-env, and run_protocol scores every sub-env's episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ssm_metarl.adapt.agents import GradientAgent, InContextAgent, Timestep, run_protocol
from ssm_metarl.adapt.standard import StandardAdapter
from ssm_metarl.config import AdaptConfig, ModelConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.envs.trial import TrialEnv
from ssm_metarl.errors import ConfigError
from ssm_metarl.meta.functional import snapshot
from ssm_metarl.meta.maml import _evaluate
from ssm_metarl.models import policy_from_config

FAMILY = "navigation-2d"


def _plain_envs(tasks):
    dist = get_family(FAMILY)
    return SyncVectorEnv(
        [lambda t=t: dist.make_env(t) for t in tasks], autoreset_mode=AutoresetMode.SAME_STEP
    )


def _rl2_policy(kind: str = "gated_ssm"):
    env = TrialEnv(FAMILY, 2)
    torch.manual_seed(0)
    policy = policy_from_config(
        ModelConfig(kind=kind, hidden_dim=16, state_dim=8), env.observation_space, env.action_space
    )
    env.close()
    return policy


@pytest.mark.parametrize("kind", ["gated_ssm", "gru"])
def test_in_context_agent_acts_as_on_the_trial_env(kind: str) -> None:
    """Same seed, same task: the agent on a plain env takes the very actions the policy takes on the
    TrialEnv, through two inner episodes (its trial observation is TrialEnv's, the state carried over)."""
    policy = _rl2_policy(kind)
    task = get_family(FAMILY).test[0]
    trial = TrialEnv(FAMILY, 2, task=task)
    obs, _ = trial.reset(seed=0)
    state = policy.initial_state(1)
    reset = torch.ones(1, dtype=torch.bool)
    torch.manual_seed(7)
    expected, done = [], False
    while not done:
        x = policy.normalize(policy.encode_obs(obs[None]))
        action, _, _, state = policy.act(x, state, reset)
        reset = torch.zeros(1, dtype=torch.bool)
        env_action = policy.env_action(action)
        expected.append(env_action[0])
        obs, _, term, trunc, _ = trial.step(env_action[0])
        done = term or trunc

    envs = _plain_envs([task])
    agent = InContextAgent(policy, 1)
    obs, _ = envs.reset(seed=0)
    torch.manual_seed(7)
    got = []
    for _ in range(len(expected)):
        actions, aux = agent.adapt_action(obs)
        got.append(actions[0])
        next_obs, reward, term, trunc, _ = envs.step(actions)
        agent.step(Timestep(obs, actions, reward, term, trunc, aux))
        obs = next_obs
    np.testing.assert_allclose(np.stack(got), np.stack(expected), rtol=1e-5, atol=1e-6)
    envs.close()
    trial.close()


def test_in_context_agent_needs_the_reward_in_evaluation() -> None:
    policy = _rl2_policy()
    envs = _plain_envs(get_family(FAMILY).test[:2])
    agent = InContextAgent(policy, 2)
    with pytest.raises(ConfigError, match="recurrent_info_in_obs"):
        run_protocol(agent, envs, adaptation_episodes=1, evaluation_episodes=1)
    envs.close()


def test_in_context_agent_keeps_its_state_across_episodes_and_clears_it_on_init() -> None:
    policy = _rl2_policy()
    envs = _plain_envs(get_family(FAMILY).test[:2])
    agent = InContextAgent(policy, 2, split_obs=lambda o: (o, np.zeros(len(o))))
    obs, _ = envs.reset(seed=0)
    agent.adapt_action(obs)
    before = [s.clone() for s in agent.state]
    agent.reset(np.ones(2, dtype=bool))
    assert all(torch.equal(a, b) for a, b in zip(before, agent.state))  # reset: same state
    assert agent.done.tolist() == [1.0, 1.0]  # ... and the next observation's done flag raised
    agent.init()
    assert bool(agent.new_trial.all())
    envs.close()


def _maml_policy():
    dist = get_family(FAMILY)
    env = dist.make_env(dist.train[0])
    torch.manual_seed(0)
    policy = policy_from_config(
        ModelConfig(kind="ssm", hidden_dim=16, state_dim=8), env.observation_space, env.action_space
    )
    env.close()
    return policy


def test_gradient_agent_records_whole_episodes_that_rerun_to_their_log_probs() -> None:
    policy = _maml_policy()
    tasks = get_family(FAMILY).test[:3]
    envs = _plain_envs(tasks)
    agent = GradientAgent(StandardAdapter(policy, AdaptConfig(steps=1, lr=0.5, episodes=2)), len(tasks))
    result = run_protocol(agent, envs, adaptation_episodes=2, evaluation_episodes=2, adaptation_steps=0)
    assert result.returns.shape == (3, 2) and np.isnan(result.success).all()  # navigation has no success flag

    torch.manual_seed(1)
    agent.init()
    obs, _ = envs.reset(seed=3)
    done = np.zeros((0, 3), dtype=bool)
    while done.sum(0).min() < 2:  # two whole episodes per sub-env
        actions, aux = agent.adapt_action(obs)
        next_obs, reward, term, trunc, _ = envs.step(actions)
        agent.step(Timestep(obs, actions, reward, term, trunc, aux))
        done = np.concatenate([done, (term | trunc)[None]])
        obs = next_obs
    episodes = agent.episodes()
    for ep in episodes:
        assert ep is not None and ep.valid.shape[1] == 2
        assert ep.lengths.tolist() == [100, 100]  # navigation-2d's horizon: two whole episodes
        log_prob, _, _ = _evaluate(policy, dict(policy.named_parameters()), ep)
        mask = ep.valid.T
        torch.testing.assert_close(log_prob[mask], ep.rollout.log_prob.T[mask], rtol=1e-4, atol=1e-4)

    meta = {k: v.detach().clone() for k, v in policy.named_parameters()}
    agent.adapt()
    assert agent.params[0] is not agent.params[1]
    for b in range(3):
        changed = any(not torch.equal(agent.params[b][k], meta[k]) for k in meta)
        assert changed, f"sub-env {b} did not adapt"
    for k, v in policy.named_parameters():  # the policy itself is never modified
        assert torch.equal(v, meta[k])

    # each sub-env acts with its own parameters (deterministic: the mean action)
    agent.deterministic_eval = True
    obs, _ = envs.reset(seed=4)
    agent.reset(np.ones(3, dtype=bool))
    actions = agent.eval_action(obs)
    for b in range(3):
        own = snapshot(policy, agent.params[b])
        x = own.normalize(own.encode_obs(obs[b : b + 1]))
        a, _, _, _ = own.act(x, own.initial_state(1), torch.ones(1, dtype=torch.bool), True)
        np.testing.assert_allclose(actions[b], own.env_action(a)[0], rtol=1e-5, atol=1e-6)
    envs.close()


def test_gradient_agent_refuses_to_adapt_without_a_finished_episode() -> None:
    policy = _maml_policy()
    envs = _plain_envs(get_family(FAMILY).test[:1])
    agent = GradientAgent(StandardAdapter(policy, AdaptConfig(steps=1, lr=0.5, episodes=1)), 1)
    obs, _ = envs.reset(seed=0)
    actions, aux = agent.adapt_action(obs)
    obs2, reward, term, trunc, _ = envs.step(actions)
    agent.step(Timestep(obs, actions, reward, term, trunc, aux))
    with pytest.raises(RuntimeError, match="finished no episode"):
        agent.adapt()
    envs.close()


def test_run_protocol_adaptation_improves_navigation_with_a_large_step() -> None:
    """The protocol end to end: one MAML-style step (lr 0.5, 4 episodes) on its own data changes the
    evaluation episodes (the returns differ from those before adaptation on the same goals and seed)."""
    policy = _maml_policy()
    tasks = get_family(FAMILY).test[:2]
    envs = _plain_envs(tasks)
    agent = GradientAgent(StandardAdapter(policy, AdaptConfig(steps=1, lr=0.5, episodes=4)), 2)
    before = run_protocol(agent, envs, 4, 1, adaptation_steps=0, seed=0)
    after = run_protocol(agent, envs, 4, 1, adaptation_steps=1, seed=0)
    assert after.adaptation_returns.shape == (1, 2, 4)
    assert not np.allclose(before.returns, after.returns)
    envs.close()
