"""The fast reset-aware linear scan equals the reference loop, forward and backward (ARCHITECTURE.md)."""

import pytest
import torch

from ssm_metarl.models.scan import _chunk_length, _pick_kernel, linear_scan, linear_scan_reference

KERNELS = ["loop", "chunked", "native", "auto"]


def make_inputs(B, T, N, dtype, seed=0, r_max=0.99, broadcast_a=False):
    """a with |a| <= r_max (complex: random phase), b and h0 standard normal, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    shape = (N,) if broadcast_a else (B, T, N)
    a = torch.rand(shape, generator=g, dtype=real) * r_max
    if dtype.is_complex:
        a = torch.polar(a, torch.rand(shape, generator=g, dtype=real) * 6.28)
    b = torch.randn(B, T, N, generator=g, dtype=real).to(dtype)
    if dtype.is_complex:
        b = b + 1j * torch.randn(B, T, N, generator=g, dtype=real)
    h0 = torch.randn(B, N, generator=g, dtype=real).to(dtype)
    return tuple(x.requires_grad_(True) for x in (a, b, h0))


def make_resets(B, T, seed=0):
    """Random resets plus the edge cases: t = 0, consecutive steps, the last step."""
    g = torch.Generator().manual_seed(seed + 1)
    reset = torch.rand(B, T, generator=g) < 0.05
    reset[0, 0] = True
    if T > 3:
        reset[1 % B, 2] = reset[1 % B, 3] = True
    reset[-1, -1] = True
    return reset


def grads(fn, inputs, weight):
    h = fn(*inputs)
    loss = (h * weight).real.sum()
    return (h, *torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
@pytest.mark.parametrize("T", [1, 7, 128, 1000])
@pytest.mark.parametrize("with_reset", [False, True], ids=["no-reset", "reset"])
def test_scan_matches_reference_forward_and_backward(dtype, T, with_reset):
    B, N = 3, 8
    inputs = make_inputs(B, T, N, dtype)
    reset = make_resets(B, T) if with_reset else None
    weight = torch.randn(B, T, N, generator=torch.Generator().manual_seed(5))
    expected = grads(lambda a, b, h0: linear_scan_reference(a, b, h0, reset), inputs, weight)
    for kernel in KERNELS:
        got = grads(lambda a, b, h0, k=kernel: linear_scan(a, b, h0, reset, kernel=k), inputs, weight)
        for name, x, y in zip(["h", "grad_a", "grad_b", "grad_h0"], got, expected):
            # |a| < 1 keeps errors from compounding; summation order differs between kernels
            scale = y.abs().max().item()
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * scale, msg=f"{kernel}: {name} differs")


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
@pytest.mark.parametrize("kernel", ["loop", "chunked", "native"])
def test_broadcast_coefficient_matches_reference(dtype, kernel):
    """a of shape (N,) (one lambda per channel, as in the SSM), with resets: gradients sum correctly."""
    B, T, N = 4, 300, 6
    inputs = make_inputs(B, T, N, dtype, broadcast_a=True)
    reset = make_resets(B, T)
    weight = torch.randn(B, T, N, generator=torch.Generator().manual_seed(5))
    expected = grads(lambda a, b, h0: linear_scan_reference(a, b, h0, reset), inputs, weight)
    got = grads(lambda a, b, h0: linear_scan(a, b, h0, reset, kernel=kernel), inputs, weight)
    assert got[1].shape == (N,)
    for x, y in zip(got, expected):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * y.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["real", "complex"])
@pytest.mark.parametrize("kernel", ["loop", "chunked", "native"])
@pytest.mark.parametrize("broadcast_a", [False, True], ids=["full-a", "lambda-a"])
def test_gradcheck_and_double_backward(dtype, kernel, broadcast_a):
    """Exact gradients (finite differences, complex via Wirtinger calculus) and second derivatives."""
    B, T, N = 2, 11, 3  # T = 11 exercises the chunked path with a remainder (chunks of 2, 1 step left)
    a, b, h0 = make_inputs(B, T, N, dtype, r_max=0.9, broadcast_a=broadcast_a)
    reset = make_resets(B, T)
    reset[0, 0] = False  # keep some gradient flowing into h0

    def fn(a, b, h0):
        return linear_scan(a, b, h0, reset, kernel=kernel)

    assert torch.autograd.gradcheck(fn, (a, b, h0))
    assert torch.autograd.gradgradcheck(fn, (a, b, h0))


def test_gradcheck_without_reset_or_h0():
    a, b, _ = make_inputs(2, 20, 2, torch.complex128, r_max=0.9)
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, kernel="chunked"), (a, b))
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, kernel="loop"), (a, b))
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b, kernel="native"), (a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=["real", "complex"])
@pytest.mark.parametrize("kernel", ["loop", "chunked", "native"])
def test_reset_cuts_information_exactly(dtype, kernel):
    """After a reset, h depends on nothing before it: gradients are exactly zero, values unchanged."""
    B, T, N, t_reset = 2, 200, 5, 77
    a, b, h0 = make_inputs(B, T, N, dtype)
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[:, t_reset] = True
    h = linear_scan(a, b, h0, reset, kernel=kernel)
    ga, gb, gh0 = torch.autograd.grad(h[:, t_reset:].real.sum(), (a, b, h0))
    assert torch.count_nonzero(gb[:, :t_reset]) == 0
    assert torch.count_nonzero(ga[:, : t_reset + 1]) == 0  # a_t at the reset multiplies a zeroed state
    assert torch.count_nonzero(gh0) == 0
    assert torch.count_nonzero(gb[:, t_reset:]) > 0
    # changing everything before the reset leaves every later value bit-identical
    with torch.no_grad():
        b2 = b.clone()
        b2[:, :t_reset] += 3.0
        h2 = linear_scan(a, b2, -h0, reset, kernel=kernel)
    assert torch.equal(h2[:, t_reset:], h[:, t_reset:].detach())


def test_reset_at_t0_ignores_h0():
    a, b, h0 = make_inputs(2, 9, 4, torch.float64)
    reset = torch.zeros(2, 9, dtype=torch.bool)
    reset[:, 0] = True
    h = linear_scan(a, b, h0, reset)
    torch.testing.assert_close(h, linear_scan(a, b, None, reset))
    (g,) = torch.autograd.grad(h.sum(), h0)
    assert torch.count_nonzero(g) == 0


def test_no_grad_path_equals_grad_path_and_kernels_agree():
    a, b, h0 = make_inputs(4, 257, 16, torch.float32)
    with torch.no_grad():
        outs = [linear_scan(a, b, h0, kernel=k) for k in ("loop", "chunked", "native")]
    h = linear_scan(a, b, h0)
    assert h.requires_grad and not outs[0].requires_grad
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.detach(), outs[0], rtol=1e-5, atol=1e-5)


def test_only_h0_requires_grad():
    a, b, h0 = make_inputs(2, 50, 3, torch.float64)
    a, b = a.detach(), b.detach()
    (g,) = torch.autograd.grad(linear_scan(a, b, h0).sum(), h0)
    (g_ref,) = torch.autograd.grad(linear_scan_reference(a, b, h0).sum(), h0)
    torch.testing.assert_close(g, g_ref)


def test_chunk_length_is_about_sqrt_t_and_kernel_rule():
    for T in (64, 256, 1024, 4096):
        assert 0.3 * T**0.5 <= _chunk_length(T) <= 1.5 * T**0.5
    assert _pick_kernel(width=8 * 64, T=1024, is_complex=False) == "chunked"
    assert _pick_kernel(width=64 * 256, T=1024, is_complex=False) == "loop"
    assert _pick_kernel(width=8 * 64, T=8, is_complex=False) == "loop"


def test_shape_errors_are_loud():
    a, b, h0 = make_inputs(2, 5, 3, torch.float32)
    with pytest.raises(ValueError, match="h0"):
        linear_scan(a, b, h0[:1])
    with pytest.raises(ValueError, match="reset"):
        linear_scan(a, b, h0, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="kernel"):
        linear_scan(a, b, h0, kernel="magic")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 30, 4), (3, 1, 4)])
def test_partially_broadcast_coefficient(shape):
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(shape, generator=g, dtype=torch.float64) * 0.9).requires_grad_(True)
    b = torch.randn(3, 30, 4, generator=g, dtype=torch.float64, requires_grad=True)
    reset = make_resets(3, 30)
    for kernel in ("loop", "chunked", "native"):
        got = grads(lambda a, b, k=kernel: linear_scan(a, b, None, reset, kernel=k), (a, b), 1.0)
        expected = grads(lambda a, b: linear_scan_reference(a, b, None, reset), (a, b), 1.0)
        assert got[1].shape == shape
        for x, y in zip(got, expected):
            torch.testing.assert_close(x, y)


# ------------------------------------------------------------------------------------ the native kernel
@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """The native module with its library forgotten and an empty cache, restored afterwards."""
    from ssm_metarl.models import native

    monkeypatch.setenv("SSM_METARL_CACHE", str(tmp_path / "cache"))
    native._library.cache_clear()
    yield native
    native._library.cache_clear()


def test_native_kernel_builds_here_and_auto_uses_it(fresh_native):
    """CI machines have a C compiler: the kernel must build there, or the fast path silently never runs."""
    assert fresh_native.available()
    assert list((fresh_native.cache_dir()).glob("scan-*.so"))
    b = torch.randn(2, 40, 3)
    assert fresh_native.supports(b) and not fresh_native.supports(b.half())
    a = torch.rand(3) * 0.9
    torch.testing.assert_close(linear_scan(a, b), linear_scan_reference(a, b))


def test_native_switch(fresh_native, monkeypatch):
    from ssm_metarl.errors import ConfigError

    monkeypatch.setenv("SSM_METARL_NATIVE", "0")
    assert not fresh_native.available()
    b = torch.randn(2, 40, 3)
    with pytest.raises(ValueError, match="native scan kernel"):
        linear_scan(torch.rand(3), b, kernel="native")
    torch.testing.assert_close(linear_scan(torch.rand(3) * 0, b), b)  # auto runs the Python kernels
    fresh_native._library.cache_clear()
    monkeypatch.setenv("SSM_METARL_NATIVE", "maybe")
    with pytest.raises(ConfigError, match="SSM_METARL_NATIVE"):
        fresh_native.available()


def test_without_a_working_compiler_auto_warns_once_and_native_1_fails(fresh_native, monkeypatch, caplog):
    monkeypatch.setattr(fresh_native, "_compiler", lambda: None)
    with caplog.at_level("WARNING", logger="ssm_metarl.models.native"):
        assert not fresh_native.available()
        assert not fresh_native.available()
    assert [r.message for r in caplog.records if "unavailable" in r.message] == [
        "native scan kernel unavailable, using the Python kernels (slower): no C compiler found (tried $CC, "
        "cc, gcc, clang)"
    ]
    fresh_native._library.cache_clear()
    monkeypatch.setenv("SSM_METARL_NATIVE", "1")
    with pytest.raises(RuntimeError, match="SSM_METARL_NATIVE=1"):
        fresh_native.available()


def test_a_failing_compile_reports_the_compilers_message(fresh_native, monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(fresh_native, "SOURCE", bad)
    with pytest.raises(RuntimeError, match="failed to compile bad.c"):
        fresh_native.build()
    assert not list(fresh_native.cache_dir().glob("*.tmp"))  # no half-written library left behind
