"""The input-gated SSM (Griffin's RG-LRU): its coefficients stay in (0, 1) and depend on the input, its input
is normalised by sqrt(1 - a^2), and second derivatives flow through its scan (second-order MAML)."""

import torch
from _step_equivalence import assert_steps_match_forward
from torch import nn

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


def _rglru_inputs(dtype, B=3, T=9, N=5, seed=0):
    torch.manual_seed(seed)
    p = (torch.randn(B, T, 3 * N, dtype=dtype) * 2).requires_grad_()
    d = (torch.rand(N, dtype=dtype) * 3 + 0.01).requires_grad_()
    h0 = torch.randn(B, N, dtype=dtype).requires_grad_()
    reset = torch.rand(B, T) < 0.3
    reset[0, 0] = reset[1, 4] = True
    return p, d, h0, reset


def test_fused_rglru_equals_the_reference_forward_and_backward():
    """The native gated recurrence (coefficients + scan in one call, its adjoint in one more) computes the
    reference's values and gradients, with and without h0 and resets, in float32 and float64."""
    import pytest

    from ssm_metarl.models import native
    from ssm_metarl.models.gated_ssm import rglru_scan, rglru_scan_reference

    if not native.available():
        pytest.skip("no C compiler: the fused kernel is not built here")
    for dtype, tol in ((torch.float64, {}), (torch.float32, {"rtol": 1e-5, "atol": 1e-5})):
        p, d, h0, reset = _rglru_inputs(dtype)
        for h, r in ((h0, reset), (None, None), (h0, None), (None, reset)):
            fused, ref = rglru_scan(p, d, h, r), rglru_scan_reference(p, d, h, r)
            torch.testing.assert_close(fused, ref, **tol)
            g = torch.randn_like(ref)
            inputs = [p, d] + ([h] if h is not None else [])
            for a, b in zip(torch.autograd.grad(fused, inputs, g), torch.autograd.grad(ref, inputs, g)):
                torch.testing.assert_close(a, b, **tol)
    p, d, h0, reset = _rglru_inputs(torch.float64, B=2, T=6, N=3)
    assert torch.autograd.gradcheck(lambda p, d, h: rglru_scan(p, d, h, reset), (p, d, h0))
    # double backward goes through the reference's differentiable adjoint (second-order MAML)
    assert torch.autograd.gradgradcheck(lambda p, d, h: rglru_scan(p, d, h, reset), (p, d, h0))
    with torch.no_grad():  # the graph-free path
        torch.testing.assert_close(rglru_scan(p, d, h0, reset), rglru_scan_reference(p, d, h0, reset))


def test_fused_and_reference_paths_give_the_same_model():
    """A GatedSSM computes the same outputs and parameter gradients whether its layers take the native path
    or the reference (``SSM_METARL_NATIVE=0``'s path), and its acting step takes the same path as forward."""
    from ssm_metarl.models import gated_ssm

    torch.manual_seed(0)
    model = GatedSSM(input_dim=3, hidden_dim=8, state_dim=6, num_layers=2)
    x, reset = torch.randn(4, 12, 3), torch.rand(4, 12) < 0.2

    def run():
        model.zero_grad()
        y, state = model(x, model.initial_state(4), reset)
        (y.square().mean() + sum(s.sum() for s in state)).backward()
        with torch.no_grad():
            s, ys = model.initial_state(4), []
            for t in range(12):
                y_t, s = model.step(x[:, t], s, reset[:, t])
                ys.append(y_t)
        return y.detach(), torch.stack(ys, 1), [q.grad.clone() for q in model.parameters()]

    fused = run()
    original = gated_ssm._fused
    gated_ssm._fused = lambda *args: False
    try:
        reference = run()
    finally:
        gated_ssm._fused = original
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], fused[0], rtol=1e-5, atol=1e-5)  # step == forward
    for a, b in zip(fused[2], reference[2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_native_acting_step_equals_the_blocks_step():
    """Without grad a GatedSSM's step is one native call; it computes what the blocks' torch step and the
    sequence forward compute (float64 to 1e-10, float32 to 1e-5), resets and a non-zero state included, with
    and without a convolution."""
    import itertools

    import pytest

    from ssm_metarl.models import native

    if not native.available():
        pytest.skip("no C compiler: the native step is not built here")
    for (dtype, tol), K in itertools.product(((torch.float64, 1e-10), (torch.float32, 1e-5)), (0, 4)):
        torch.manual_seed(0)
        model = GatedSSM(5, 16, 12, num_layers=2, a_min=0.1, conv_width=K).to(dtype)
        with torch.no_grad():  # away from the initialisation (zero skip, zero biases, identity taps)
            for q in model.parameters():
                q.add_(torch.randn_like(q) * 0.1)
        x, reset = torch.randn(3, 7, 5, dtype=dtype), torch.rand(3, 7) < 0.3
        reset[0, 2] = True
        S = 12 + max(K - 1, 0) * 16  # with a convolution the state carries the last K - 1 inputs
        state0 = tuple(torch.randn(3, S, dtype=dtype) for _ in range(2))
        with torch.no_grad():
            assert model._native_step(x[:, 0]) is not None  # the native path runs here
        assert_steps_match_forward(model, x, state0, reset, tol)


def test_native_paths_refuse_what_the_kernels_cannot_take_and_are_reentrant():
    """Inputs the native kernels cannot take go to the torch path, which raises where they are wrong; a reset
    clears even a NaN state; two threads stepping one model at once get what each would get alone."""
    import threading

    import pytest

    from ssm_metarl.models import native
    from ssm_metarl.models.gated_ssm import rglru_scan
    from ssm_metarl.models.ssm import SSM

    if not native.available():
        pytest.skip("no C compiler: the native paths are not built here")
    p, d, h0, reset = _rglru_inputs(torch.float64, B=2, T=6, N=3)
    with pytest.raises(ValueError, match="reset"):
        rglru_scan(p, d, h0, reset[:, :1])
    with pytest.raises(ValueError, match="h0"):
        rglru_scan(p, d, h0[:1], reset)
    torch.manual_seed(0)
    for model in (GatedSSM(4, 8, 6, num_layers=2), SSM(4, 8, 6, num_layers=2, complex=True)):
        with torch.inference_mode():
            nan_state = tuple(torch.full_like(s, float("nan")) for s in model.initial_state(2))
            y, _ = model.step(torch.randn(2, 4), nan_state, torch.ones(2, dtype=torch.bool))
            assert torch.isfinite(y).all()  # a reset reads zeros, as masked_fill does
            with pytest.raises(RuntimeError):  # float64 inputs to a float32 model: torch's dtype error
                model.step(
                    torch.randn(2, 4, dtype=torch.float64), model.initial_state(2), torch.zeros(2).bool()
                )
            xs = {B: torch.randn(B, 4) for B in (1, 8)}
            alone = {B: model.step(xs[B], model.initial_state(B), torch.zeros(B).bool())[0] for B in xs}
            wrong = []

            def worker(B: int, model=model, xs=xs, alone=alone, wrong=wrong) -> None:
                with torch.inference_mode():
                    for _ in range(300):
                        y_b, _ = model.step(xs[B], model.initial_state(B), torch.zeros(B).bool())
                        wrong.append(not torch.equal(y_b, alone[B]))

            threads = [threading.Thread(target=worker, args=(B,)) for B in xs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(wrong) == 600 and not any(wrong)


def test_convolution_step_equals_forward_across_segments_and_resets():
    """With ``conv_width`` the model's step equals its forward (resets, a non-zero state), a sequence cut in
    two segments equals it whole (the state carries the last inputs), and a new model's convolution is the
    identity: it computes what the model without one computes, from the same initialisation."""
    torch.manual_seed(0)
    model = GatedSSM(input_dim=3, hidden_dim=8, state_dim=6, num_layers=2, conv_width=4).double()
    with torch.no_grad():  # taps and biases away from the identity
        for b in model.blocks:
            b.conv.weight.add_(torch.randn_like(b.conv.weight))
            b.conv.bias.add_(torch.randn_like(b.conv.bias) * 0.1)
    x, reset = torch.randn(3, 11, 3, dtype=torch.float64), torch.rand(3, 11) < 0.2
    reset[0, 0] = reset[1, 5] = reset[2, 9] = True
    state0 = tuple(torch.randn(3, 6 + 3 * 8, dtype=torch.float64) for _ in range(2))
    assert [s.shape[1] for s in model.initial_state(3)] == [6 + 3 * 8] * 2
    assert_steps_match_forward(model, x, state0, reset, 1e-10)
    whole, s_whole = model(x, state0, reset)
    y1, s1 = model(x[:, :6], state0, reset[:, :6])
    y2, s2 = model(x[:, 6:], s1, reset[:, 6:])
    torch.testing.assert_close(torch.cat([y1, y2], 1), whole)
    for a, b in zip(s2, s_whole):
        torch.testing.assert_close(a, b)
    # a reset at t: the output from t on does not depend on the inputs before it
    x2 = x.clone()
    x2[1, :5] += 1.0
    torch.testing.assert_close(model(x2, state0, reset)[0][1, 5:], whole[1, 5:])
    torch.manual_seed(1)
    plain = GatedSSM(input_dim=3, hidden_dim=8, state_dim=6, num_layers=2).double()
    torch.manual_seed(1)
    conv = GatedSSM(input_dim=3, hidden_dim=8, state_dim=6, num_layers=2, conv_width=4).double()
    zero = torch.zeros(3, 11, dtype=torch.bool)
    torch.testing.assert_close(
        conv(x, conv.initial_state(3), zero)[0], plain(x, plain.initial_state(3), zero)[0]
    )


def test_convolution_gradients_and_config():
    """Gradients through the convolution check numerically, second derivatives flow (MAML);
    ``ModelConfig.conv_width`` reaches the gated ssm, round-trips through the policy's description, and a
    backbone without a convolution refuses it."""
    import gymnasium as gym
    import pytest

    from ssm_metarl.config import ModelConfig
    from ssm_metarl.errors import ConfigError
    from ssm_metarl.models import model_kwargs, policy_from_config, policy_from_description

    torch.manual_seed(0)
    model = GatedSSM(input_dim=2, hidden_dim=4, state_dim=3, num_layers=1, conv_width=3).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(2, 6, dtype=torch.bool)
    reset[:, 0] = reset[1, 3] = True
    s0 = tuple(torch.randn(2, 3 + 2 * 4, dtype=torch.float64, requires_grad=True) for _ in range(1))
    assert torch.autograd.gradcheck(lambda inp, s: model(inp, (s,), reset)[0], (x, s0[0]))
    (g,) = torch.autograd.grad(
        model(x, s0, reset)[0].square().sum(), [model.blocks[0].conv.weight], create_graph=True
    )
    (gg,) = torch.autograd.grad(g.sum(), [model.blocks[0].rnn.proj.weight])
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0
    spaces = gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-1.0, 1.0, (2,))
    policy = policy_from_config(ModelConfig(kind="gated_ssm", conv_width=4, separate_critic=True), *spaces)
    assert policy.backbone.blocks[0].conv.width == 4 and policy.critic_backbone.blocks[0].conv.width == 4
    again = policy_from_description(policy.describe())
    assert again.backbone.blocks[0].conv.width == 4
    assert "conv_width" not in model_kwargs(ModelConfig(kind="gated_ssm"))
    with pytest.raises(ConfigError, match="conv_width"):
        model_kwargs(ModelConfig(kind="ssm", conv_width=4))


def test_native_convolution_equals_the_reference_forward_and_backward():
    """The native convolution (one call forward, one backward) computes the torch reference's outputs and
    gradients, new buffer included, with resets and a carried buffer, in float32 and float64; gradcheck, and
    double backward through the reference's differentiable adjoint (second-order MAML)."""
    import pytest

    from ssm_metarl.models import native
    from ssm_metarl.models.gated_ssm import CausalConv, causal_conv_reference

    if not native.available():
        pytest.skip("no C compiler: the native kernels are not built here")
    for dtype, tol in ((torch.float64, {}), (torch.float32, {"rtol": 1e-5, "atol": 1e-5})):
        torch.manual_seed(0)
        conv = CausalConv(5, 4).to(dtype)
        with torch.no_grad():
            conv.weight.add_(torch.randn_like(conv.weight))
            conv.bias.add_(torch.randn_like(conv.bias))
        v = torch.randn(3, 9, 5, dtype=dtype, requires_grad=True)
        buf = torch.randn(3, 3, 5, dtype=dtype, requires_grad=True)
        reset = torch.zeros(3, 9, dtype=torch.bool)
        reset[0, 0] = reset[1, 2] = reset[1, 7] = True  # row 2: no reset, the buffer read throughout
        fused = conv(v, buf, reset)
        t = torch.arange(9)
        last = torch.where(reset, t, torch.full_like(t, -4)).cummax(dim=1).values
        ref = causal_conv_reference(v, buf, conv.weight.t(), conv.bias, t - last, last[:, -1])
        params = [v, buf, conv.weight, conv.bias]
        g = [torch.randn_like(x) for x in ref]
        for a, b in zip(fused, ref):
            torch.testing.assert_close(a, b, **tol)
        for a, b in zip(torch.autograd.grad(fused, params, g), torch.autograd.grad(ref, params, g)):
            torch.testing.assert_close(a, b, **tol)
    conv = CausalConv(3, 3).double()
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))
    v = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    buf = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(2, 5, dtype=torch.bool)
    reset[1, 1] = True
    assert torch.autograd.gradcheck(lambda v, b: conv(v, b, reset), (v, buf))
    assert torch.autograd.gradgradcheck(lambda v, b: conv(v, b, reset), (v, buf))
    with pytest.raises(ValueError, match="needs buf"):  # never read out of bounds by the native kernel
        conv(v, buf[:, :1], reset)
    model = GatedSSM(3, 8, 6, conv_width=4)
    with pytest.raises(RuntimeError):  # a buffer on another device: torch's error, never the native kernel
        conv(v, buf.to("meta"), reset)
    with pytest.raises(ValueError, match="states of width"):  # a state of the model without a convolution
        model(torch.randn(2, 5, 3), tuple(torch.zeros(2, 6 + 8) for _ in model.blocks), reset)


def test_convolution_reads_a_float_reset_as_bool():
    """A reset given as 0/1 floats is the same reset as the bool one."""
    from ssm_metarl.models.gated_ssm import CausalConv

    torch.manual_seed(0)
    conv = CausalConv(4, 3).double()
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))
    v, buf = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64)
    reset = torch.zeros(2, 5, dtype=torch.bool)
    reset[1, 3] = True
    for a, b in zip(conv(v, buf, reset.double()), conv(v, buf, reset)):
        torch.testing.assert_close(a, b)


def test_native_step_is_kept_while_the_parameters_are_and_follows_swaps_moves_and_hooks():
    """The native step is built once and reused (in-place updates, as an optimiser makes, are read live); a
    swapped parameter, a replaced submodule or a dtype conversion makes the next step rebuild it, a forward hook
    or a parametrization turns it off."""
    import pytest

    from ssm_metarl.models import native

    if not native.available():
        pytest.skip("no C compiler: the native step is not built here")
    torch.manual_seed(0)
    model = GatedSSM(3, 8, 6, num_layers=2, conv_width=3)
    x, reset = torch.randn(4, 3), torch.zeros(4, dtype=torch.bool)

    def torch_step() -> torch.Tensor:
        model.native_step_max_batch = 0
        try:
            return model.step(x.to(model.encoder.weight.dtype), model.initial_state(4), reset)[0]
        finally:
            del model.native_step_max_batch

    with torch.no_grad():
        first = model._native_step(x)
        assert first is not None and model._native_step(x) is first  # kept
        model.blocks[1].mix.weight.add_(0.5)  # in place: same step, new values
        assert model._native_step(x) is first
        torch.testing.assert_close(model.step(x, model.initial_state(4), reset)[0], torch_step())
        model.blocks[0].rnn.proj.weight = nn.Parameter(torch.randn(18, 8))  # swapped
        assert model._native_step(x) is not first
        torch.testing.assert_close(model.step(x, model.initial_state(4), reset)[0], torch_step())
        model.double()  # moved to new memory
        xd = x.double()
        stepper = model._native_step(xd)
        assert stepper is not None and stepper.dtype == torch.float64
        model.encoder = nn.Linear(3, 8).double()  # a replaced submodule
        torch.testing.assert_close(model.step(xd, model.initial_state(4), reset)[0], torch_step())
        torch.nn.utils.parametrize.register_parametrization(model.encoder, "weight", nn.Identity())
        assert model._native_step(xd) is None  # a parametrized weight is computed: the torch path
        model.encoder = nn.Linear(3, 8).double()
        model.blocks[0].register_forward_hook(lambda *args: None)
        assert model._native_step(xd) is None  # a hook: the torch path


def _block_case(K: int, B: int = 3, T: int = 7, H: int = 6, N: int = 4):
    from ssm_metarl.models.gated_ssm import GatedBlock

    torch.manual_seed(K)
    block = GatedBlock(H, N, a_min=0.1, conv_width=K).double()
    with torch.no_grad():  # away from the initialisation (zero skip, zero biases, identity taps)
        for q in block.parameters():
            q.add_(torch.randn_like(q) * 0.3)
    x = torch.randn(B, T, H, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(B, block.state_size(), dtype=torch.float64, requires_grad=True)
    reset = torch.rand(B, T) < 0.3
    reset[0, 2] = True
    return block, x, s0, reset


def test_fused_block_equals_the_torch_block_forward_backward_and_state_gradients():
    """GatedBlock's fused path (gated_fused: one autograd node over native kernels) computes the torch path's
    output and state, and the gradients of both with respect to the input, the state and every parameter,
    with and without a convolution and across resets."""
    import pytest

    from ssm_metarl.models import gated_fused, native

    if not native.available():
        pytest.skip("no C compiler: the fused block is not built here")
    for K in (0, 3):
        block, x, s0, reset = _block_case(K)
        params = block.fused_params()
        assert gated_fused.supported(x, s0, params)
        z, last = block(x, s0, reset)
        original = gated_fused.supported
        gated_fused.supported = lambda *args: False  # the torch path
        try:
            z_ref, last_ref = block(x, s0, reset)
        finally:
            gated_fused.supported = original
        torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-10)
        gz, glast = torch.randn_like(z), torch.randn_like(last)
        inputs = [x, s0, *params]
        got = torch.autograd.grad((z, last), inputs, (gz, glast), retain_graph=True)
        want = torch.autograd.grad((z_ref, last_ref), inputs, (gz, glast), retain_graph=True)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)
        got = torch.autograd.grad(z, inputs, gz, allow_unused=True)  # the state unused, as in PPO
        want = torch.autograd.grad(z_ref, inputs, gz, allow_unused=True)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)


def test_fused_block_gradcheck_and_double_backward():
    """The fused block's adjoint passes gradcheck, and a differentiated backward (second-order MAML) takes the
    reference's adjoint: gradgradcheck."""
    import pytest

    from ssm_metarl.models import gated_fused, native
    from ssm_metarl.models.gated_ssm import GATE_SCALE, conv_positions

    if not native.available():
        pytest.skip("no C compiler: the fused block is not built here")
    for K in (0, 3):
        block, x, s0, reset = _block_case(K, B=2, T=4, H=3, N=2)
        meta = gated_fused.BlockMeta(block.norm.eps, 2, K, GATE_SCALE)
        since, keep = conv_positions(reset, K) if K else (reset, reset)
        params = [p.detach().requires_grad_() for p in block.fused_params()]

        def fn(x, s0, *params, meta=meta, reset=reset, since=since, keep=keep):
            return gated_fused.block(meta, x, s0, reset, since, keep, list(params))

        assert torch.autograd.gradcheck(fn, (x, s0, *params))
        assert torch.autograd.gradgradcheck(fn, (x, s0, *params))


def test_fused_block_takes_what_the_torch_block_takes_and_steps_aside_for_hooks():
    """The fused block agrees with the torch path in float32, at B = T = 1, on a non-contiguous input (also in
    double backward) and with a strided ``skip`` given through functional_call; a forward hook on a submodule
    sends the block down the torch path, which runs it (rl2_diagnostics reads the RG-LRU's a_t that way)."""
    import pytest
    from torch.func import functional_call

    from ssm_metarl.models import gated_fused, native

    if not native.available():
        pytest.skip("no C compiler: the fused block is not built here")

    def both(fn):
        fused = fn()
        original = gated_fused.supported
        gated_fused.supported = lambda *args: False
        try:
            return fused, fn()
        finally:
            gated_fused.supported = original

    block, x, s0, reset = _block_case(3)
    xt = torch.randn(3, 6, 7, dtype=torch.float64, requires_grad=True)  # (B, H, T): transposed below
    strided = torch.randn(12, dtype=torch.float64)[::2]
    for fn, tol in (
        (lambda: block.float()(x.detach().float(), s0.detach().float(), reset)[0], 1e-5),
        (lambda: block.double()(x[:1, :1], s0[:1], reset[:1, :1])[0], 1e-12),
        (lambda: functional_call(block, {"rnn.skip": strided}, (x, s0, reset))[0], 1e-12),
    ):
        got, want = both(fn)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)

    def second_order():  # a gradient's norm, differentiated again, through a non-contiguous input
        z, _ = block(xt.transpose(1, 2), s0, reset)
        (g,) = torch.autograd.grad(z.pow(2).sum(), block.rnn.proj.weight, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), xt)[0]

    got, want = both(second_order)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    seen = []
    block.rnn.register_forward_hook(lambda *args: seen.append(1))
    with torch.no_grad():
        block(x, s0, reset)
    assert seen
