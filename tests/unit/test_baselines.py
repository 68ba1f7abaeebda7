"""Model-specific behaviour of the seed's StateSpaceModel, ImprovedSSMBackbone and the baselines.

The generic contract (step == forward with resets, resets cut gradients, dtype/device) is checked for
every model in ``test_models_contract.py``; here are the properties particular to each model.
"""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ssm_metarl.models import rnn
from ssm_metarl.models.improved import ImprovedSSMBackbone
from ssm_metarl.models.mlp import MLP
from ssm_metarl.models.neural_ssm import StateSpaceModel, neural_ssm
from ssm_metarl.models.rnn import GRU, LSTM, forward_by_steps
from ssm_metarl.models.transformer import Transformer

F64 = torch.float64


def _close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# --- StateSpaceModel (neural_ssm.py) --------------------------------------------------------------


def test_neural_ssm_state_is_bounded_over_10k_steps_of_huge_inputs():
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=16, input_dim=3, output_dim=2, hidden_dim=32)
    with torch.no_grad():
        for p in [*model.trans_in.parameters(), *model.trans_out.parameters()]:
            p.mul_(50.0)  # an exploding MLP transition, as the seed's unbounded recurrence allowed
        model.decay_logit.fill_(10.0)
        state, reset, peak = model.initial_state(4), torch.zeros(4, dtype=torch.bool), 0.0
        for _ in range(10_000):
            _, state = model.step(1e4 * torch.randn(4, 3), state, reset)
            peak = max(peak, float(state[0].abs().max()))
    assert torch.isfinite(state[0]).all() and peak <= 1.0


def _trained_ssm(seed=0):
    torch.manual_seed(seed)
    model = neural_ssm(input_dim=3, hidden_dim=8, state_dim=6)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _outputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 7, 3, generator=g).to(next(model.parameters()).dtype)
    reset = torch.zeros(2, 7, dtype=torch.bool)
    reset[1, 4] = True
    with torch.no_grad():
        return model(x, model.initial_state(2), reset)[0]


@pytest.mark.parametrize("name", ["model.safetensors", "seed_style.pth", "dir"])
def test_save_then_load_both_call_styles_give_identical_outputs(tmp_path, name):
    model = _trained_ssm()
    target = tmp_path / name
    if name == "dir":
        target.mkdir()
    weights = model.save(target)
    in_place = neural_ssm(input_dim=3, hidden_dim=8, state_dim=6)
    assert not torch.equal(_outputs(in_place), _outputs(model))
    assert in_place.load(target) is in_place
    rebuilt = StateSpaceModel.load(target)
    assert rebuilt.config() == model.config()
    assert torch.equal(_outputs(in_place), _outputs(model))
    assert torch.equal(_outputs(rebuilt), _outputs(model))
    with safe_open(str(weights), framework="pt") as f:  # safetensors whatever the file is called
        assert json.loads(f.metadata()["config"]) == model.config()
    config_file = tmp_path / "dir" / "config.json" if name == "dir" else tmp_path / f"{name}.json"
    assert json.loads(config_file.read_text()) == model.config()
    leftovers = [p.name for p in weights.parent.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_classmethod_load_keeps_dtype_and_takes_a_device(tmp_path):
    model = _trained_ssm().double()
    model.save(tmp_path / "m.pth")
    loaded = StateSpaceModel.load(tmp_path / "m.pth", device="cpu")
    assert next(loaded.parameters()).dtype == F64
    assert torch.equal(_outputs(loaded), _outputs(model))


def test_load_errors_name_the_problem(tmp_path):
    model = _trained_ssm()
    path = tmp_path / "m.pth"
    model.save(path)
    data = path.read_bytes()

    with pytest.raises(FileNotFoundError, match="no StateSpaceModel checkpoint at .*missing.pth"):
        model.load(tmp_path / "missing.pth")
    for broken in (data[: len(data) // 2], data[:5], b"\x00" * 8 + data[8:]):
        path.write_bytes(broken)
        with pytest.raises(ValueError, match="m.pth is not a readable safetensors file.*truncated or"):
            model.load(path)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            StateSpaceModel.load(path)
    torch.save(model.state_dict(), tmp_path / "pickled.pth")  # what the seeds shipped
    with pytest.raises(ValueError, match="pickled PyTorch file"):
        model.load(tmp_path / "pickled.pth")

    path.write_bytes(data)
    other = neural_ssm(input_dim=3, hidden_dim=8, state_dim=5)
    with pytest.raises(
        ValueError, match=r"saved with \{'state_dim': 6.*decay_logit: checkpoint \(6,\) vs model \(5,\)"
    ):
        other.load(path)


def test_weights_without_config_load_in_place_only(tmp_path):
    model = _trained_ssm()
    save_file(dict(model.state_dict()), str(tmp_path / "bare.safetensors"))
    loaded = neural_ssm(input_dim=3, hidden_dim=8, state_dim=6).load(tmp_path / "bare.safetensors")
    assert torch.equal(_outputs(loaded), _outputs(model))
    with pytest.raises(ValueError, match="carries no model config"):
        StateSpaceModel.load(tmp_path / "bare.safetensors")


# --- GRU / LSTM (rnn.py) --------------------------------------------------------------------------


def _reset_patterns(B, T):
    none = torch.zeros(B, T, dtype=torch.bool)
    few = none.clone()
    few[0, 5], few[2, 11], few[1, 0] = True, True, True  # 2 reset columns: the split path
    many = torch.rand(B, T, generator=torch.Generator().manual_seed(0)) < 0.5  # > 40% columns: the loop
    return {"none": none, "few": few, "many": many}


@pytest.mark.parametrize("cls", [GRU, LSTM])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("pattern", ["none", "few", "many"])
def test_rnn_fast_paths_equal_the_step_loop(monkeypatch, cls, num_layers, pattern):
    """Single call (no resets), stretch split (few) and cell loop (many): outputs, states, gradients."""
    torch.manual_seed(0)
    model = cls(4, 8, num_layers).double()
    B, T = 3, 16
    reset = _reset_patterns(B, T)[pattern]
    taken = []
    for path in ("_split", "_loop"):
        original = getattr(rnn, path)
        monkeypatch.setattr(rnn, path, lambda *a, _o=original, _p=path: taken.append(_p) or _o(*a))
    x = torch.randn(B, T, 4, dtype=F64, requires_grad=True)
    state0 = tuple(0.5 * torch.randn_like(s) for s in model.initial_state(B))

    y, state = model(x, state0, reset)
    (g_fast,) = torch.autograd.grad(y.square().sum() + sum(s.sum() for s in state), x)
    y_ref, state_ref = forward_by_steps(model, x, state0, reset)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum() + sum(s.sum() for s in state_ref), x)

    assert taken == {"none": [], "few": ["_split"], "many": ["_loop"]}[pattern]
    _close(y, y_ref)
    for a, b in zip(state, state_ref):
        _close(a, b)
    _close(g_fast, g_ref)


def test_rnn_state_layout_is_batch_first():
    gru, lstm = GRU(3, 8, num_layers=2), LSTM(3, 8, num_layers=2)
    assert [s.shape for s in gru.initial_state(5)] == [(5, 2, 8)]
    assert [s.shape for s in lstm.initial_state(5)] == [(5, 2, 8), (5, 2, 8)]
    _, state = lstm(torch.randn(5, 4, 3), lstm.initial_state(5), torch.zeros(5, 4, dtype=torch.bool))
    assert [s.shape for s in state] == [(5, 2, 8), (5, 2, 8)]


# --- Transformer ----------------------------------------------------------------------------------


def test_transformer_sees_exactly_the_last_context_steps():
    """Output at t depends on inputs t - context + 1 .. t, never older ones, also through the layers."""
    torch.manual_seed(0)
    context, t0, T = 6, 4, 20
    model = Transformer(3, 16, num_layers=3, num_heads=2, context=context).double()
    x = torch.randn(2, T, 3, dtype=F64)
    no_reset = torch.zeros(2, T, dtype=torch.bool)
    y, _ = model(x, model.initial_state(2), no_reset)
    x2 = x.clone()
    x2[:, t0] += 3.0
    y2, _ = model(x2, model.initial_state(2), no_reset)
    changed = (y2 - y).abs().amax(dim=(0, 2)) > 0  # (T,)
    expected = torch.zeros(T, dtype=torch.bool)
    expected[t0 : t0 + context] = True
    assert torch.equal(changed, expected)


def test_transformer_never_attends_across_a_reset():
    torch.manual_seed(0)
    model = Transformer(3, 16, num_layers=2, num_heads=4, context=32).double()
    T, r = 12, 5
    x = torch.randn(2, T, 3, dtype=F64)
    reset = torch.zeros(2, T, dtype=torch.bool)
    reset[:, r] = True
    _, state0 = model(torch.randn(2, 4, 3, dtype=F64), model.initial_state(2), reset[:, :4])
    y, state = model(x, state0, reset)
    x2 = x.clone()
    x2[:, :r] = torch.randn(2, r, 3, dtype=F64)
    _, other_state0 = model(torch.randn(2, 4, 3, dtype=F64), model.initial_state(2), reset[:, :4])
    y2, state2 = model(x2, other_state0, reset)
    assert not torch.allclose(y[:, :r], y2[:, :r])
    assert torch.equal(y[:, r:], y2[:, r:])
    for a, b in zip(state, state2):  # nothing from before the reset survives in the state either
        assert torch.equal(a, b)


def test_transformer_long_sequences_use_blocks_and_still_match_step():
    """T > 2 * window takes the blocked attention path; it must equal the step loop."""
    torch.manual_seed(0)
    model = Transformer(3, 8, num_layers=2, num_heads=2, context=9).double()
    assert [b.window for b in model.blocks] == [5, 5]
    T = 37
    x = torch.randn(2, T, 3, dtype=F64)
    reset = torch.zeros(2, T, dtype=torch.bool)
    reset[0, 13] = reset[1, 2] = reset[1, 30] = True
    y, state = model(x, model.initial_state(2), reset)
    y_ref, state_ref = forward_by_steps(model, x, model.initial_state(2), reset)
    _close(y, y_ref)
    for a, b in zip(state, state_ref):
        _close(a, b)


# --- ImprovedSSMBackbone ----------------------------------------------------------------------------


def test_improved_has_one_distinct_state_per_layer():
    torch.manual_seed(0)
    model = ImprovedSSMBackbone(4, hidden_dim=16, state_dim=8, num_layers=3).double()
    x = torch.randn(2, 6, 4, dtype=F64)
    reset = torch.zeros(2, 6, dtype=torch.bool)
    state0 = model.initial_state(2)
    assert len(state0) == 3 and all(s.shape == (2, 8) for s in state0)
    y, state = model(x, state0, reset)
    assert len(state) == 3
    assert not torch.allclose(state[0], state[1]) and not torch.allclose(state[1], state[2])
    assert all(s.abs().max() <= 1.0 for s in state)  # tanh recurrence: bounded

    bump = 0.5 * torch.ones(2, 8, dtype=F64)
    y_l1, s_l1 = model(x, (bump, state0[1], state0[2]), reset)
    y_l2, s_l2 = model(x, (state0[0], bump, state0[2]), reset)
    assert not torch.allclose(y_l1, y) and not torch.allclose(y_l2, y)
    assert not torch.allclose(y_l1, y_l2)
    # a layer-2 state cannot reach layer 1: layer 1's final state is untouched by it
    assert torch.equal(s_l2[0], state[0]) and not torch.equal(s_l1[0], state[0])


def test_improved_without_norm_or_residual_still_steps_like_forward():
    torch.manual_seed(0)
    model = ImprovedSSMBackbone(4, 16, 8, num_layers=2, use_layer_norm=False, use_residual=False).double()
    assert model.out_norm is None and all(layer.norm is None for layer in model.layers)
    x = torch.randn(2, 9, 4, dtype=F64)
    reset = torch.zeros(2, 9, dtype=torch.bool)
    reset[0, 4] = True
    y, state = model(x, model.initial_state(2), reset)
    y_ref, state_ref = forward_by_steps(model, x, model.initial_state(2), reset)
    _close(y, y_ref)
    for a, b in zip(state, state_ref):
        _close(a, b)


def test_improved_recurrent_weights_start_orthogonal():
    model = ImprovedSSMBackbone(4, 16, 8, num_layers=2)
    for layer in model.layers:
        A = layer.rnn.weight_hh_l0.detach()
        _close(A @ A.T, torch.eye(8), tol=1e-5)


# --- MLP ------------------------------------------------------------------------------------------


def test_mlp_is_stateless_and_ignores_resets():
    torch.manual_seed(0)
    model = MLP(4, 16, num_layers=3)
    assert model.initial_state(3) == ()
    x = torch.randn(3, 5, 4)
    y, state = model(x, (), torch.zeros(3, 5, dtype=torch.bool))
    y2, _ = model(x, (), torch.ones(3, 5, dtype=torch.bool))
    assert state == () and y.shape == (3, 5, 16) and torch.equal(y, y2)
    y_t, _ = model.step(x[:, 2], (), torch.zeros(3, dtype=torch.bool))
    _close(y_t, y[:, 2], tol=1e-6)
