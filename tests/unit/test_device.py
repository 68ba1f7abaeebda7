"""PPO, RL², MAML, test-time adaptation and the protocol agents on a torch device (``--device cuda``).

Marked ``gpu``: ``make test`` skips them (``-m 'not gpu'``); on a machine with CUDA run ``pytest -m gpu``.
``SSM_METARL_TEST_DEVICE=cpu pytest -m gpu tests/unit/test_device.py`` runs the same code on the CPU, which is
how it is checked where no GPU is lent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ssm_metarl.adapt.agents import GradientAgent, InContextAgent, run_protocol
from ssm_metarl.adapt.standard import StandardAdapter
from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, PPOConfig, RunConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.envs.trial import rl2_env_id
from ssm_metarl.meta.maml import train_maml
from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
from ssm_metarl.rl.ppo import train_ppo

DEVICE = os.environ.get("SSM_METARL_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.gpu
KINDS = ["ssm", "gated_ssm", "gru", "lstm", "transformer", "mlp"]


def _on_device(module: torch.nn.Module) -> bool:
    return all(p.device.type == torch.device(DEVICE).type for p in module.parameters())


def _finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_ppo_trains_every_model_on_the_device(kind: str) -> None:
    cfg = PPOConfig(
        env_id="Pendulum-v1",
        model=ModelConfig(kind=kind, hidden_dim=16, state_dim=8),
        total_steps=4 * 32 * 2,
        num_envs=4,
        rollout_steps=32,
        num_minibatches=2,
        update_epochs=2,
        eval_episodes=1,
        normalize_obs=True,
        run=RunConfig(progress=False, device=DEVICE),
    )
    result = train_ppo(cfg)
    assert _on_device(result.policy) and _finite(result.policy)


def test_rl2_trains_and_evaluates_on_the_device() -> None:
    cfg = PPOConfig(
        env_id=rl2_env_id("navigation-2d", 2),
        model=ModelConfig(kind="gated_ssm", hidden_dim=16, state_dim=8, num_layers=2),
        total_steps=2 * 100 * 2,
        num_envs=2,
        rollout_steps=100,
        eval_episodes=1,
        run=RunConfig(progress=False, device=DEVICE),
    )
    policy = train_rl2(cfg).policy
    assert _on_device(policy) and _finite(policy)
    returns = evaluate_in_context(policy, "navigation-2d", get_family("navigation-2d").test[:2], 2)
    assert returns.values.shape == (1, 2, 2, 1) and np.isfinite(returns.values).all()


@pytest.mark.parametrize("first_order", [True, False])
def test_maml_and_adaptation_on_the_device(first_order: bool) -> None:
    cfg = MAMLConfig(
        family="navigation-2d",
        model=ModelConfig(kind="ssm", hidden_dim=16, state_dim=8),
        inner=AdaptConfig(steps=1, lr=0.1, episodes=2),
        meta_batch_size=2,
        meta_iterations=1,
        outer_epochs=2,
        first_order=first_order,
        run=RunConfig(progress=False, device=DEVICE),
    )
    policy = train_maml(cfg).policy
    assert _on_device(policy) and _finite(policy)
    run = StandardAdapter(policy, cfg.inner).adapt(get_family("navigation-2d").test[0], seed=0)
    assert len(run.returns) == 2 and all(
        v.device.type == torch.device(DEVICE).type for v in run.params.values()
    )


def test_the_protocol_agents_act_on_the_device() -> None:
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from ssm_metarl.envs.trial import TrialEnv
    from ssm_metarl.models import policy_from_config

    dist = get_family("navigation-2d")
    tasks = dist.test[:2]
    envs = SyncVectorEnv(
        [lambda t=t: dist.make_env(t) for t in tasks], autoreset_mode=AutoresetMode.SAME_STEP
    )
    env = dist.make_env(tasks[0])
    maml_policy = policy_from_config(
        ModelConfig(kind="ssm", hidden_dim=16), env.observation_space, env.action_space
    )
    agent = GradientAgent(StandardAdapter(maml_policy.to(DEVICE), AdaptConfig(lr=0.1, episodes=1)), 2)
    result = run_protocol(agent, envs, 1, 1, seed=0)
    assert np.isfinite(result.returns).all()
    trial = TrialEnv("navigation-2d", 2)
    rl2_policy = policy_from_config(
        ModelConfig(kind="gated_ssm"), trial.observation_space, trial.action_space
    )
    in_context = InContextAgent(rl2_policy.to(DEVICE), 2, split_obs=lambda o: (o, np.zeros(len(o))))
    result = run_protocol(in_context, envs, 1, 1, seed=0)
    assert np.isfinite(result.returns).all()
    env.close()
    trial.close()
    envs.close()
