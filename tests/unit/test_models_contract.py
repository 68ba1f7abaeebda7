"""Every model in the registry keeps the SequenceModel contract (ARCHITECTURE.md, "The one contract")."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ssm_metarl.models import MODELS, make_model, make_policy
from ssm_metarl.models.base import SequenceModel

D, H, B, T = 5, 16, 3, 12

VARIANTS = [(k, {}) for k in MODELS] + [("ssm", {"complex": True}), ("improved", {"num_layers": 3})]
IDS = [f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" if kw else k for k, kw in VARIANTS]


def build(kind, kw, seed=0):
    torch.manual_seed(seed)
    return make_model(kind, D, H, **kw).double()


def resets(b=B, t=T):
    r = torch.zeros(b, t, dtype=torch.bool)
    r[:, 0] = True
    if t > 8:
        r[0, 5] = True
        r[1, 7] = r[1, 8] = True
    return r


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_protocol_and_output_shape(kind, kw):
    model = build(kind, kw)
    assert isinstance(model, SequenceModel)
    x = torch.randn(B, T, D, dtype=torch.float64)
    y, state = model(x, model.initial_state(B), resets())
    assert y.shape == (B, T, model.output_dim)
    assert all(s.shape[0] == B for s in state)


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_step_equals_forward_with_resets(kind, kw):
    model = build(kind, kw)
    torch.manual_seed(1)
    x = torch.randn(B, T, D, dtype=torch.float64)
    reset = resets()
    # a non-trivial starting state: run a prefix first
    _, state0 = model(torch.randn(B, 4, D, dtype=torch.float64), model.initial_state(B), resets(B, 4))
    y_seq, s_seq = model(x, state0, reset)
    state, ys = state0, []
    for t in range(T):
        y_t, state = model.step(x[:, t], state, reset[:, t])
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y_seq, rtol=1e-7, atol=1e-7)
    for a, b in zip(state, s_seq):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_reset_cuts_information_flow(kind, kw):
    model = build(kind, kw)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[:, 6] = True
    state0 = tuple(s.clone().requires_grad_(True) for s in model.initial_state(B))
    if state0:  # a non-zero state before the reset must not matter either
        state0 = tuple((s.detach() + 0.3).requires_grad_(True) for s in state0)
    y, _ = model(x, state0, reset)
    y[:, 6:].sum().backward()
    assert torch.count_nonzero(x.grad[:, :6]) == 0
    for s in state0:
        assert s.grad is None or torch.count_nonzero(s.grad) == 0


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_dtype_and_device_follow_parameters(kind, kw):
    model = build(kind, kw).float()
    x = torch.randn(B, T, D)
    y32, _ = model(x, model.initial_state(B), resets())
    assert y32.dtype == torch.float32
    model = model.to(torch.float64).to("cpu")
    assert all(s.device.type == "cpu" for s in model.initial_state(2))
    y64, _ = model(x.double(), model.initial_state(B), resets())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_same_seed_same_model(kind, kw):
    a, b = build(kind, kw, seed=3), build(kind, kw, seed=3)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)
    c = build(kind, kw, seed=4)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


@pytest.mark.gpu
@pytest.mark.parametrize(("kind", "kw"), VARIANTS, ids=IDS)
def test_cuda_round_trip(kind, kw):
    model = build(kind, kw).float().to("cuda")
    x = torch.randn(B, T, D, device="cuda")
    y, state = model(x, model.initial_state(B), resets().cuda())
    assert y.device.type == "cuda" and all(s.device.type == "cuda" for s in state)


SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "box": gym.spaces.Box(low=np.array([-2.0, 0.0]), high=np.array([2.0, 1.0]), dtype=np.float32),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("space", sorted(SPACES))
def test_policy_act_matches_evaluate(kind, space):
    """Log-probs and values from the acting path equal those recomputed over the sequence."""
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (D,), np.float32)
    policy = make_policy(kind, obs_space, SPACES[space], hidden_dim=H)
    obs = torch.randn(B, T, D)
    reset = resets()
    state0 = policy.initial_state(B)
    state, actions, logps, values = state0, [], [], []
    for t in range(T):
        a, lp, v, state = policy.act(obs[:, t], state, reset[:, t])
        actions.append(a), logps.append(lp), values.append(v)
    actions = torch.stack(actions, 1)
    with torch.no_grad():
        lp2, ent, v2, _ = policy.evaluate(obs, state0, reset, actions)
    torch.testing.assert_close(lp2, torch.stack(logps, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v2, torch.stack(values, 1), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(ent).all()
    env_a = policy.env_action(actions[:, 0])
    assert SPACES[space].contains(env_a[0].astype(SPACES[space].dtype))


def test_squashed_gaussian_log_prob_matches_change_of_variables():
    """log p(a) for a = tanh-rescaled u equals a numerical density estimate in 1-D."""
    torch.manual_seed(0)
    space = gym.spaces.Box(low=np.array([-2.0]), high=np.array([2.0]), dtype=np.float32)
    policy = make_policy("mlp", gym.spaces.Box(-1, 1, (D,), np.float32), space, hidden_dim=H).double()
    params = torch.tensor([[0.3]], dtype=torch.float64)
    u = torch.tensor([[0.7]], dtype=torch.float64)
    lp, _ = policy.log_prob_entropy(params, u)
    gauss = torch.distributions.Normal(0.3, 1.0).log_prob(torch.tensor(0.7, dtype=torch.float64))
    a = lambda v: 2.0 * torch.tanh(torch.tensor(v, dtype=torch.float64))  # noqa: E731
    eps = 1e-6
    jac = (a(0.7 + eps) - a(0.7 - eps)) / (2 * eps)
    torch.testing.assert_close(lp[0], gauss - torch.log(jac), rtol=1e-6, atol=1e-6)


def test_clipped_gaussian_acts_at_the_bounds_and_keeps_the_plain_density(tmp_path):
    """action_bounds="clip": the env gets clip(u, low, high), log_prob is the Gaussian's, and a checkpoint
    brings the mode back."""
    from ssm_metarl.checkpoint import load_policy, save_policy

    torch.manual_seed(0)
    space = gym.spaces.Box(low=np.array([-0.1, -0.1]), high=np.array([0.1, 0.1]), dtype=np.float32)
    obs_space = gym.spaces.Box(-1, 1, (D,), np.float32)
    policy = make_policy("mlp", obs_space, space, hidden_dim=H, action_bounds="clip").double()
    u = torch.tensor([[0.05, -3.0], [2.0, -0.02]], dtype=torch.float64)
    np.testing.assert_allclose(policy.env_action(u), [[0.05, -0.1], [0.1, -0.02]])
    params = torch.tensor([[0.0, -1.0], [0.5, 0.0]], dtype=torch.float64)
    lp, _ = policy.log_prob_entropy(params, u)
    expected = torch.distributions.Normal(params, 1.0).log_prob(u).sum(-1)
    torch.testing.assert_close(lp, expected)
    tanh = make_policy("mlp", obs_space, space, hidden_dim=H).double()
    assert not torch.allclose(tanh.log_prob_entropy(params, u)[0], expected)  # the default squashes
    save_policy(tmp_path / "ckpt", policy.float())
    assert load_policy(tmp_path / "ckpt").action_bounds == "clip"
    with pytest.raises(ValueError, match="action_bounds"):
        make_policy("mlp", obs_space, space, hidden_dim=H, action_bounds="squash")
