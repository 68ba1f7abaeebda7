"""The input-gated SSM (Griffin's RG-LRU): its coefficients stay in (0, 1) and depend on the input, its input
is normalised by sqrt(1 - a^2), and second derivatives flow through its scan (second-order MAML)."""

import torch

from ssm_metarl.models.gated_ssm import GatedSSM, RGLRULayer


def test_coefficients_are_in_0_1_and_input_dependent():
    torch.manual_seed(0)
    layer = RGLRULayer(hidden_dim=8, state_dim=6).double()
    v = torch.randn(4, 10, 8, dtype=torch.float64) * 5
    a, b = layer.coefficients(v)
    assert a.shape == b.shape == (4, 10, 6)
    assert (a > 0).all() and (a < 1).all()
    assert a.std(dim=(0, 1)).min() > 0  # gated: the forgetting rate moves with the input
    # sqrt(1 - a^2) normalisation: for a constant coefficient and i.i.d. unit-variance inputs the state's
    # stationary variance is (1 - a^2) / (1 - a^2) = 1, whatever a is
    u, r, i = layer.proj(v).chunk(3, -1)
    torch.testing.assert_close(b, torch.sqrt(1 - a.square()) * torch.sigmoid(i) * u)


def test_second_order_gradients_through_the_scan():
    torch.manual_seed(0)
    model = GatedSSM(input_dim=3, hidden_dim=4, state_dim=3, num_layers=2).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    reset = torch.zeros(2, 6, dtype=torch.bool)
    reset[:, 0] = reset[1, 3] = True
    params = [p for p in model.parameters()]

    def loss():
        y, _ = model(x, model.initial_state(2), reset)
        return y.square().mean()

    (g,) = torch.autograd.grad(loss(), [model.blocks[0].rnn.lam], create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), [model.blocks[0].rnn.proj.weight])
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda inp: model(inp, model.initial_state(2), reset)[0], (x.requires_grad_(),)
    )
    assert len(params) > 0


def test_ring_min_sets_the_fastest_decay_of_the_ring_and_fails_loudly_where_it_means_nothing():
    """``ModelConfig.ring_min`` reaches the gated ssm's a_min (sigmoid(lambda)^c in [ring_min, 0.999]) and
    the ssm's r_min; a backbone without a ring refuses it."""
    import gymnasium as gym
    import pytest

    from ssm_metarl.config import ModelConfig
    from ssm_metarl.errors import ConfigError
    from ssm_metarl.models import model_kwargs, policy_from_config
    from ssm_metarl.models.gated_ssm import GATE_SCALE

    spaces = gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Discrete(2)
    torch.manual_seed(0)
    policy = policy_from_config(ModelConfig(kind="gated_ssm", state_dim=256, ring_min=0.3), *spaces)
    a_c = torch.sigmoid(policy.backbone.blocks[0].rnn.lam.detach()) ** GATE_SCALE
    assert 0.3 <= a_c.min() < 0.35 and 0.95 < a_c.max() <= 0.999
    default = policy_from_config(ModelConfig(kind="gated_ssm", state_dim=256), *spaces)
    assert torch.sigmoid(default.backbone.blocks[0].rnn.lam.detach()).pow(GATE_SCALE).min() >= 0.9
    assert model_kwargs(ModelConfig(kind="ssm", ring_min=0.2))["r_min"] == 0.2
    with pytest.raises(ConfigError, match="ring_min"):
        model_kwargs(ModelConfig(kind="gru", ring_min=0.2))
