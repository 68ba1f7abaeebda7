"""The seed READMEs' adaptation examples, run as written (imports moved to ssm_metarl): seed 003's supervised
``Adapter`` / ``AdaptationConfig`` loop and seed 001's ``TestTimeAdapter.adapt_online``; plus what they imply
but never checked: the loss drops, every config field acts (gradient clipping included), replay is used."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssm_metarl import Environment, ImprovedSSM, StateSpaceModel
from ssm_metarl.adapt import AdaptationConfig, Adapter, ExperienceBuffer, TestTimeAdapter

torch.set_num_threads(1)


def test_seed003_adapter_example():
    torch.manual_seed(0)
    # --- the README, verbatim apart from the imports and print -> assert ---
    model = StateSpaceModel(state_dim=64, input_dim=32, output_dim=32, device="cpu")
    config = AdaptationConfig(learning_rate=0.01, num_steps=5)
    adapter = Adapter(model=model, config=config, device="cpu")
    # Initialize hidden state
    hidden_state = model.init_hidden(batch_size=1)
    # Adaptation loop
    losses = []
    for _step in range(10):
        x = torch.randn(1, 32)
        y_target = torch.randn(1, 32)
        # Store current state
        current_hidden_state = hidden_state
        # Get next state prediction
        with torch.no_grad():
            output, hidden_state = model(x, current_hidden_state)
        # Adapt model
        loss, steps_taken = adapter.update_step(x=x, y=y_target, hidden_state=current_hidden_state)
        losses.append(loss)
        assert steps_taken == 5
    # ---
    assert all(np.isfinite(losses)) and all(loss > 0 for loss in losses)


def test_update_step_lowers_the_loss_and_keeps_the_given_state_as_context():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=8, input_dim=4, output_dim=2, hidden_dim=16)
    x, y, h = torch.randn(3, 6, 4), torch.randn(3, 6, 2), torch.randn(3, 8).tanh()
    reference = StateSpaceModel(state_dim=8, input_dim=4, output_dim=2, hidden_dim=16)
    reference.load_state_dict(model.state_dict())
    adapter = Adapter(
        model, AdaptationConfig(learning_rate=0.1, num_steps=3, grad_clip_norm=None, optimizer="sgd")
    )
    first, _ = adapter.update_step(x, y, h)
    # the same as three plain SGD steps, each from the same hidden state h
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(reference(x, h)[0], y).backward()
        opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    later = [adapter.update_step(x, y, h)[0] for _ in range(20)]
    assert later[-1] < 0.5 * first


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    x, y = torch.randn(4, 5, 3), 10 * torch.randn(4, 5, 2)

    def change(clip):
        model = StateSpaceModel(state_dim=6, input_dim=3, output_dim=2, hidden_dim=8)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        cfg = AdaptationConfig(learning_rate=1.0, num_steps=1, grad_clip_norm=clip, optimizer="sgd")
        Adapter(model, cfg).update_step(x, y)
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        return (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm(), grad.norm()

    clipped, grad_norm = change(1e-3)
    unclipped, raw_norm = change(None)
    assert grad_norm <= 1e-3 * (1 + 1e-5) and clipped <= 1e-3 * (1 + 1e-5)  # SGD step = lr * clipped grad
    assert raw_norm > 1.0 and unclipped > 100 * clipped


def test_experience_replay_in_the_supervised_adapter():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=4, input_dim=2, output_dim=2, hidden_dim=8)
    buffer = ExperienceBuffer(max_size=100, device="cpu")  # the seeds' constructor
    buffer.add(torch.randn(20, 2), torch.randn(20, 2), hidden_state=model.init_hidden(20))
    x, y = torch.randn(1, 2), torch.randn(1, 2)
    plain = Adapter(model, AdaptationConfig(num_steps=1, experience_weight=0.0))
    with_replay = Adapter(
        model,
        AdaptationConfig(num_steps=1, experience_weight=5.0, experience_batch_size=8),
        experience_buffer=buffer,
    )
    assert with_replay.update_step(x, y)[0] > plain.update_step(x, y)[0]  # the replay term is in the loss
    with pytest.raises(ValueError, match="needs an experience_buffer"):
        Adapter(model, AdaptationConfig(experience_weight=0.1))
    with pytest.raises(ValueError, match="grad_clip_norm"):
        Adapter(model, AdaptationConfig(grad_clip_norm=0.0))


def test_seed001_test_time_adapter_example():
    torch.manual_seed(0)
    env = Environment("Pendulum-v1", seed=0)
    model = ImprovedSSM(
        input_dim=env.observation_space.shape[0],
        action_dim=env.action_space.shape[0],
        state_dim=8,
        hidden_dim=16,
        num_layers=1,
        action_low=float(env.action_space.low[0]),
        action_high=float(env.action_space.high[0]),
    )
    before = [p.detach().clone() for p in model.parameters()]
    # --- the README, verbatim ---
    # Create adapter
    adapter = TestTimeAdapter(model=model, adaptation_lr=1e-3, adaptation_steps=10, buffer_size=1000)
    # Adapt online
    episode_rewards, stats = adapter.adapt_online(env=env, num_episodes=5, adapt_every=10)
    # ---
    env.close()
    assert len(episode_rewards) == 5 and all(-2000 < r < 0 for r in episode_rewards)
    assert stats.total_steps == 1000 and stats.num_updates == 100
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
