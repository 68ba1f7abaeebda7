"""The seed READMEs' ``StateSpaceModel`` examples, run as written (imports moved to our module path).

Seeds 003 (core API, MAML time series, adapter loop), 000 (load a saved model, then act) and 001
(CartPole-sized constructor). Each test also asserts what the example implies but the seeds never
checked: the state really advances, ``load`` really loads, the device/dtype follows ``.to()``.
"""

import gymnasium as gym
import pytest
import torch

from ssm_metarl.models.neural_ssm import StateSpaceModel


def test_seed003_core_example():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=128, input_dim=64, output_dim=32, device="cpu")
    batch_size = 4
    input_x = torch.randn(batch_size, 64)
    current_hidden = model.init_hidden(batch_size)
    # Forward pass requires current state and returns next state
    output, next_hidden = model(input_x, current_hidden)
    assert output.shape == torch.Size([4, 32])
    assert next_hidden.shape == torch.Size([4, 128])
    assert isinstance(next_hidden, torch.Tensor)  # seed style: a tensor in, a tensor out
    assert next_hidden.abs().sum() > 0  # the state advanced
    output2, _ = model(input_x, next_hidden)
    assert not torch.allclose(output, output2)  # ...and it matters


def test_seed003_time_series_example():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=64, input_dim=32, output_dim=16, device="cpu")
    support_x = torch.randn(4, 10, 32)
    initial_hidden = model.init_hidden(batch_size=4)
    y, h = model(support_x, initial_hidden)
    assert y.shape == (4, 10, 16) and h.shape == (4, 64)
    # the sequence call is the same as ten one-step calls
    h_step, ys = initial_hidden, []
    for t in range(10):
        y_t, h_step = model(support_x[:, t], h_step)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    torch.testing.assert_close(h_step, h)


def test_seed003_adapter_loop_model_part():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=64, input_dim=32, output_dim=32, device="cpu")
    hidden_state = model.init_hidden(batch_size=1)
    for _ in range(10):
        x = torch.randn(1, 32)
        current_hidden_state = hidden_state
        with torch.no_grad():
            output, hidden_state = model(x, current_hidden_state)
        assert output.shape == (1, 32) and hidden_state.shape == (1, 64)
        assert not torch.equal(hidden_state, current_hidden_state)


def test_seed003_wrong_batch_hidden_state_fails_loudly():
    model = StateSpaceModel(state_dim=64, input_dim=32, output_dim=16)
    with pytest.raises(ValueError, match=r"\(B, state_dim\) = \(2, 64\)"):
        model(torch.randn(2, 10, 32), model.init_hidden(batch_size=4))


def _cartpole_obs() -> torch.Tensor:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    env.close()
    return torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)  # (1, 4)


def test_seed000_load_pretrained_then_act(tmp_path):
    path = tmp_path / "cartpole_hybrid_real_model.pth"
    torch.manual_seed(1)
    trained = StateSpaceModel(state_dim=32, input_dim=4, output_dim=4, hidden_dim=64)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1 * torch.randn_like(p))  # stands in for training
    trained.save(path)

    # --- the README, verbatim apart from the path ---
    model = StateSpaceModel(state_dim=32, input_dim=4, output_dim=4, hidden_dim=64)
    model.load(path)
    model.eval()
    obs_tensor = _cartpole_obs()
    hidden_state = model.init_hidden(batch_size=1)
    action_logits, hidden_state = model(obs_tensor, hidden_state)
    # ---
    assert action_logits.shape == (1, 4) and hidden_state.shape == (1, 32)
    expected, _ = trained(obs_tensor, trained.init_hidden(1))
    assert torch.equal(action_logits, expected)  # the weights were really loaded
    for (n, a), (_, b) in zip(model.named_parameters(), trained.named_parameters()):
        assert torch.equal(a, b), n


def test_seed000_classmethod_style_load_returns_the_loaded_model(tmp_path):
    """The seeds called a static ``load`` and discarded its result; here both call styles load."""
    path = tmp_path / "cartpole_hybrid_real_model.pth"
    torch.manual_seed(2)
    trained = StateSpaceModel(state_dim=32, input_dim=4, output_dim=4, hidden_dim=64)
    trained.save(path)
    model = StateSpaceModel.load(path)
    assert isinstance(model, StateSpaceModel) and model.config() == trained.config()
    obs = _cartpole_obs()
    assert torch.equal(model(obs, model.init_hidden(1))[0], trained(obs, trained.init_hidden(1))[0])


def test_seed001_cartpole_constructor():
    model = StateSpaceModel(
        state_dim=32,  # Recurrent state dimension
        input_dim=4,  # Observation dimension
        output_dim=2,  # Action dimension
        hidden_dim=64,  # Hidden layer dimension
    )
    logits, h = model(_cartpole_obs(), model.init_hidden(1))
    assert logits.shape == (1, 2) and h.shape == (1, 32)
    assert torch.isfinite(logits).all()


def test_device_and_dtype_follow_the_parameters():
    """Seed bug: the device was frozen at construction, so ``.to("cuda")`` crashed."""
    model = StateSpaceModel(state_dim=8, input_dim=4, output_dim=2, device="cpu").to(torch.float64)
    h = model.init_hidden(3)
    assert h.dtype == torch.float64
    y, h = model(torch.randn(3, 4, dtype=torch.float64), h)
    assert y.dtype == torch.float64 and h.dtype == torch.float64


@pytest.mark.gpu
def test_to_cuda_after_construction():
    model = StateSpaceModel(state_dim=8, input_dim=4, output_dim=2, device="cpu").to("cuda")
    y, h = model(torch.randn(3, 4, device="cuda"), model.init_hidden(3))
    assert y.device.type == "cuda" and h.device.type == "cuda"
    built_on_cuda = StateSpaceModel(state_dim=8, input_dim=4, output_dim=2, device="cuda")
    assert built_on_cuda.init_hidden(1).device.type == "cuda"
