"""Structured SSM specifics (ARCHITECTURE.md, "The structured SSM"); the generic contract checks live in
test_models_contract.py."""

import inspect
import json
import math

import pytest
import torch
from _step_equivalence import assert_steps_match_forward
from torch.func import functional_call

from ssm_metarl.models.ssm import SSM, LRULayer

D, H, N, B, T = 5, 16, 12, 3, 40
VARIANTS = [False, True]
IDS = ["real", "complex"]


def build(complex_, seed=0, **kw):
    torch.manual_seed(seed)
    return SSM(D, H, N, num_layers=2, complex=complex_, **kw)


def mid_resets(b=B, t=T):
    reset = torch.zeros(b, t, dtype=torch.bool)
    reset[:, 0] = True
    reset[2, t - 1] = True
    if t > 21:
        reset[0, 13] = True
        reset[1, 20] = reset[1, 21] = True
    return reset


class Stepper(torch.nn.Module):
    """functional_call calls forward; this routes it to the wrapped model's step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, state, reset):
        return self.model.step(x, state, reset)


def run_steps(model, x, state, reset):
    ys = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state, reset[:, t])
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_lambda_inside_unit_disc_for_any_parameters(complex_):
    torch.manual_seed(0)
    layer = LRULayer(H, 1000, complex=complex_)
    for dtype in (torch.float32, torch.float64):
        layer = layer.to(dtype)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * 50)
            layer.nu_log[:4] = torch.tensor([-1e4, -40.0, 1e4, 200.0])
        lam = layer.lam()
        assert torch.all(lam.abs() < 1) and torch.isfinite(torch.view_as_real(lam) if complex_ else lam).all()
        lam.abs().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
        layer.zero_grad()


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_ring_initialisation(complex_):
    torch.manual_seed(0)
    r_min, r_max, max_phase = 0.4, 0.9, 1.5
    layer = LRULayer(H, 4000, complex=complex_, r_min=r_min, r_max=r_max, max_phase=max_phase).double()
    lam = layer.lam().detach()
    mag = lam.abs()
    assert mag.min() >= r_min - 1e-9 and mag.max() <= r_max + 1e-9
    # |lambda|^2 is uniform on [r_min^2, r_max^2] (uniform over the ring's area): check its mean
    assert abs((mag**2).mean().item() - (r_min**2 + r_max**2) / 2) < 0.01
    torch.testing.assert_close(torch.exp(layer.gamma_log).detach(), torch.sqrt(1 - mag**2))
    if complex_:
        phase = torch.exp(layer.theta_log).detach()
        assert phase.min() >= 0 and phase.max() <= max_phase
        assert phase.max() > 0.9 * max_phase and phase.min() < 0.1 * max_phase
    else:
        assert not lam.is_complex() and lam.min() > 0


def test_complex_and_real_variants_have_the_right_parameters():
    real = {n.split(".")[-1] for n, _ in build(False).blocks[0].lru.named_parameters()}
    cplx = {n.split(".")[-1] for n, _ in build(True).blocks[0].lru.named_parameters()}
    assert real == {"nu_log", "gamma_log", "B", "C", "D"}
    assert cplx == {"nu_log", "gamma_log", "theta_log", "B_re", "B_im", "C_re", "C_im", "D"}
    assert build(True).initial_state(2)[0].dtype == torch.complex64
    assert build(True).double().initial_state(2)[0].dtype == torch.complex128
    assert build(False).initial_state(2)[0].dtype == torch.float32


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_step_equals_forward_with_mid_sequence_resets(complex_, grad):
    model = build(complex_)
    torch.manual_seed(1)
    x = torch.randn(B, T, D)
    reset = mid_resets()
    _, state0 = model(torch.randn(B, 5, D), model.initial_state(B), mid_resets(B, 5))  # non-zero start
    with torch.set_grad_enabled(grad):
        y_seq, s_seq = model(x, state0, reset)
        y_step, s_step = run_steps(model, x, state0, reset)
    torch.testing.assert_close(y_step, y_seq, rtol=1e-5, atol=1e-5)
    for a, b in zip(s_step, s_seq):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_reset_makes_outputs_independent_of_the_past(complex_):
    model = build(complex_).double()
    t_reset = 17
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[:, t_reset] = True
    state0 = tuple((s + 0.5).requires_grad_(True) for s in model.initial_state(B))
    y, _ = model(x, state0, reset)
    y[:, t_reset:].sum().backward()
    assert torch.count_nonzero(x.grad[:, :t_reset]) == 0
    assert all(torch.count_nonzero(s.grad) == 0 for s in state0)
    assert torch.count_nonzero(x.grad[:, t_reset:]) > 0
    # values too: a different past gives bit-identical outputs after the reset
    with torch.no_grad():
        x2 = x.detach().clone()
        x2[:, :t_reset] = torch.randn(B, t_reset, D, dtype=torch.float64)
        y2, _ = model(x2, model.initial_state(B), reset)
    assert torch.equal(y2[:, t_reset:], y[:, t_reset:].detach())


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_every_parameter_gets_a_gradient(complex_):
    model = build(complex_)
    y, _ = model(torch.randn(B, T, D), model.initial_state(B), mid_resets())
    y.pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_step_cache_follows_parameter_changes(complex_):
    """Acting without grad caches lambda and the projections; any parameter update must show up."""
    model = build(complex_)
    x, reset = torch.randn(B, D), torch.zeros(B, dtype=torch.bool)
    state = model.initial_state(B)

    def check(m, params=None):
        with torch.no_grad():
            if params is None:
                y_step, _ = m.step(x, state, reset)
                y_seq, _ = m(x[:, None], state, reset[:, None])
            else:
                prefixed = {f"model.{n}": p for n, p in params.items()}
                y_step, _ = functional_call(Stepper(m), prefixed, (x, state, reset), strict=True)
                y_seq, _ = functional_call(m, params, (x[:, None], state, reset[:, None]))
        torch.testing.assert_close(y_step, y_seq[:, 0], rtol=1e-5, atol=1e-5)
        return y_step

    with torch.no_grad():
        model.step(x, state, reset)  # fills the cache
        cached = model._plan
        model.step(x, state, reset)
        assert model._plan is cached  # reused while nothing changes
    y0 = check(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(B, T, D), model.initial_state(B), mid_resets())[0].sum().backward()
    opt.step()  # in-place update of every parameter
    y1 = check(model)
    assert not torch.allclose(y0, y1)
    other = build(complex_, seed=7)
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(check(model), check(other))
    params = {n: p.detach() * 1.1 for n, p in model.named_parameters()}
    y_func = check(model, params)
    assert not torch.allclose(y_func, check(model))  # and back to the module's own parameters


def test_functional_call_step_gradients_reach_parameters():
    """MAML-style: step under functional_call with grad recomputes weights from the given tensors."""
    model = build(True)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    x, reset = torch.randn(B, D), torch.zeros(B, dtype=torch.bool)
    state = tuple(s + 0.5 for s in model.initial_state(B))  # non-zero, so lambda matters
    prefixed = {f"model.{n}": p for n, p in params.items()}
    y, _ = functional_call(Stepper(model), prefixed, (x, state, reset), strict=True)
    y_seq, _ = functional_call(model, params, (x[:, None], state, reset[:, None]), strict=True)
    torch.testing.assert_close(y, y_seq[:, 0], rtol=1e-5, atol=1e-5)
    g_step = torch.autograd.grad(y.pow(2).sum(), list(params.values()))
    g_seq = torch.autograd.grad(y_seq.pow(2).sum(), list(params.values()))
    for name, a, b in zip(params, g_step, g_seq):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_constructor_arguments_are_json_primitives():
    sig = inspect.signature(SSM.__init__)
    defaults = {k: v.default for k, v in sig.parameters.items() if k not in ("self", "input_dim")}
    assert json.loads(json.dumps(defaults)) == defaults
    kwargs = json.loads(json.dumps({"input_dim": D, **defaults, "complex": True, "num_layers": 1}))
    model = SSM(**kwargs)
    assert model.input_dim == D and model.output_dim == defaults["hidden_dim"]
    assert 0.0 < defaults["r_min"] < defaults["r_max"] < 1.0
    assert math.isclose(defaults["max_phase"], 2 * math.pi, rel_tol=1e-3)


def test_bad_ring_is_rejected():
    with pytest.raises(ValueError, match="r_min"):
        LRULayer(H, N, r_min=0.9, r_max=0.5)


@pytest.mark.parametrize("complex_", VARIANTS, ids=IDS)
def test_step_cache_follows_dtype_conversion_and_inference_mode(complex_):
    model = build(complex_)
    x, reset = torch.randn(B, D), torch.tensor([True, False, False])
    with torch.inference_mode():
        y32, _ = model.step(x, model.initial_state(B), reset)
    model.double()  # replaces every parameter's data: the cached float32 plan must not be reused
    with torch.no_grad():
        y64, s64 = model.step(x.double(), model.initial_state(B), reset)
        y_seq, _ = model(x.double()[:, None], model.initial_state(B), reset[:, None])
    assert y64.dtype == torch.float64 and s64[0].dtype == model.initial_state(1)[0].dtype
    torch.testing.assert_close(y64, y_seq[:, 0])
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-4)


def test_odd_width_complex_step():
    """Complex views need even strides: an odd model width H still steps correctly."""
    torch.manual_seed(0)
    model = SSM(D, 7, 5, num_layers=2, complex=True).double()
    x, reset = torch.randn(B, T, D, dtype=torch.float64), mid_resets()
    y_seq, _ = model(x, model.initial_state(B), reset)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y_step, _ = run_steps(model, x, model.initial_state(B), reset)
        torch.testing.assert_close(y_step, y_seq)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("glu", [True, False], ids=["glu", "linear"])
@pytest.mark.parametrize("hidden", [16, 15], ids=["even", "odd"])
def test_native_acting_step_equals_the_torch_step_and_forward(complex_, glu, hidden, monkeypatch):
    """Without grad an SSM's step is one native call (``lru_step_*`` in ``_scan.c``) from its acting plan; it
    computes what the sequence forward computes (float64 to 1e-10, float32 to 1e-5), from a non-zero state
    with resets, and what the torch-operations step computes."""
    from ssm_metarl.models import native

    if not native.available():
        pytest.skip("no C compiler: the native step is not built here")
    calls = []
    real_call = native.ModelStep.__call__
    monkeypatch.setattr(native.ModelStep, "__call__", lambda *a, **k: calls.append(1) or real_call(*a, **k))
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        torch.manual_seed(0)
        model = SSM(5, hidden, 12, num_layers=2, complex=complex_, glu=glu).to(dtype)
        x, reset = torch.randn(3, 7, 5, dtype=dtype), torch.rand(3, 7) < 0.3
        reset[0, 2] = True
        state0 = tuple(torch.randn_like(s) for s in model.initial_state(3))
        assert_steps_match_forward(model, x, state0, reset, tol)
    assert len(calls) == 14  # every step of both dtypes took the native path
