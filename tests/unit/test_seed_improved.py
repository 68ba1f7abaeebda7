"""The seed READMEs' ImprovedSSM and Environment examples (seed 001), with imports from ssm_metarl."""

import numpy as np
import torch

from ssm_metarl import Environment, ImprovedSSM, PPOConfig, load_policy, save_policy, train_ppo
from ssm_metarl.config import ModelConfig, RunConfig


def test_seed_improved_ssm_example_acts_in_halfcheetah(tmp_path):
    model = ImprovedSSM(
        input_dim=17,  # HalfCheetah observation
        action_dim=6,  # HalfCheetah action
        state_dim=64,  # Recurrent state
        hidden_dim=128,  # Hidden layers
        num_layers=2,  # SSM depth
        use_layer_norm=True,  # Layer normalization
        use_residual=True,  # Residual connections
    )
    state = model.initial_state(1)
    assert len(state) == 2 and all(s.shape == (1, 64) for s in state)  # one state per layer
    with Environment("HalfCheetah-v5", batch_size=1, seed=0) as env:
        obs, _ = env.reset(seed=0)
        reset = np.ones(1, dtype=bool)
        for _ in range(5):
            action, state = model.predict(obs, state, reset, deterministic=False)
            assert action.shape == (1, 6) and np.all(np.abs(action) <= 1.0)
            obs, reward, terminated, truncated, _ = env.step(action)
            reset = terminated | truncated
    loaded = load_policy(save_policy(tmp_path / "improved", model))
    x = torch.randn(2, 7, 17)
    r = torch.zeros(2, 7, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(x, model.initial_state(2), r)[0], loaded(x, loaded.initial_state(2), r)[0])


def test_seed_custom_environment_example_trains_with_ppo():
    env = Environment("Pendulum-v1")
    model = ImprovedSSM(
        input_dim=env.observation_space.shape[0],
        action_dim=env.action_space.shape[0],
        state_dim=16,
        hidden_dim=32,
        action_low=float(env.action_space.low[0]),
        action_high=float(env.action_space.high[0]),
    )
    env.close()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = PPOConfig(
        env_id="Pendulum-v1",
        model=ModelConfig(kind="improved"),
        total_steps=512,
        num_envs=2,
        rollout_steps=64,
        eval_episodes=1,
        run=RunConfig(progress=False),
    )
    result = train_ppo(cfg, policy=model)
    assert result.policy is model
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_discrete_improved_ssm():
    model = ImprovedSSM(input_dim=4, action_dim=2, discrete=True, hidden_dim=32, state_dim=16)
    action, logp, value, _ = model.act(
        torch.zeros(3, 4), model.initial_state(3), torch.ones(3, dtype=torch.bool)
    )
    assert (
        action.dtype == torch.int64 and set(action.tolist()) <= {0, 1} and logp.shape == value.shape == (3,)
    )
