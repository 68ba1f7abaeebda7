"""The native scan kernel: ``_scan.c`` compiled on first use with the system C compiler, called via ctypes.

Why. On this project's CPUs the Python-level scan kernels of :mod:`ssm_metarl.models.scan` cost one torch
dispatch (a few microseconds) per step or per chunk, forward and backward, which at PPO's sizes (B = 4
envs, T = 64, N = 64) is a sizeable share of a whole minibatch update. One C loop does the same
multiply-adds in a single call: ``benchmarks/results/ppo_update_cost.md`` has the update with each kernel
and with no scan at all, ``benchmarks/results/scan_speed.md`` the scan alone.

The same library holds the gated ssm's fused recurrence (``rglru`` / ``rglru_backward``: the RG-LRU's gate
and scan in one call, see :mod:`ssm_metarl.models.gated_ssm`).

How. The C source ships with the package. The first scan on a CPU tensor compiles it (``cc -O3 -shared``
plus :func:`compile_flags`; no torch headers) into a cache directory, ``$SSM_METARL_CACHE`` or
``~/.cache/ssm_metarl``, under a name holding the hash of the source and the flags, written atomically, so
concurrent processes and upgrades are safe. ``SSM_METARL_NATIVE`` controls it:

* unset or ``auto``: use the kernel where it builds; where no C compiler is found or the build fails, log
  one warning saying why and use the Python kernels (same values, slower);
* ``0``: never build or use it;
* ``1``: require it (an error if it cannot be built).

Tensors on other devices (CUDA) always use the Python kernels. The kernel does the multiply-adds of the
``loop`` kernel in the same order (torch's vectorised ``addcmul`` may fuse them, so the last bit can
differ); ``tests/unit/test_scan.py`` checks it against the reference loop forward, backward and in double
backward; ``tests/unit/test_gated_ssm.py`` checks the fused recurrence against its torch reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssm_metarl.errors import ConfigError

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_scan.c")
_DTYPES = {
    torch.float32: "scan_float32",
    torch.float64: "scan_float64",
    torch.complex64: "scan_complex64",
    torch.complex128: "scan_complex128",
}
_ARGTYPES: list[Any] = [ctypes.c_int64] * 3 + ([ctypes.c_void_p] + [ctypes.c_int64] * 3) * 2
_ARGTYPES += [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p] + [ctypes.c_int64] * 3
_ARGTYPES += [ctypes.c_int]
_BACKWARD_ARGTYPES: list[Any] = [ctypes.c_int64] * 3 + ([ctypes.c_void_p] + [ctypes.c_int64] * 3) * 3
_BACKWARD_ARGTYPES += [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2
_BACKWARD_ARGTYPES += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_RGLRU = {torch.float32: "rglru_float32", torch.float64: "rglru_float64"}
_RGLRU_ARGTYPES: list[Any] = (
    [ctypes.c_int64] * 3 + [ctypes.c_void_p] + [ctypes.c_int64] * 2 + [ctypes.c_void_p]
)
_RGLRU_ARGTYPES += [ctypes.c_void_p] + [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int64]
_RGLRU_BACKWARD_ARGTYPES = [*_RGLRU_ARGTYPES, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 2
_RGLRU_BACKWARD_ARGTYPES += [ctypes.c_void_p] * 5
_RGLRU_ARGTYPES += [ctypes.c_void_p] * 2
_CONV = {torch.float32: "conv_float32", torch.float64: "conv_float64"}
_CONV_ARGTYPES: list[Any] = [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 8
_CONV_BACKWARD_ARGTYPES: list[Any] = [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 11
_TAIL = {torch.float32: "float32", torch.float64: "float64"}  # skip_silu_*, glu_res_* and their backwards
_TAIL_ARGTYPES: dict[str, list[Any]] = {
    "skip_silu": [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 4,
    "skip_silu_backward": [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 7,
    "glu_res": [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 3,
    "glu_res_backward": [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 3,
}
_GATED_STEP = {torch.float32: "gated_step_float32", torch.float64: "gated_step_float64"}  # and lru_step_*
_GATED_STEP_ARGTYPES: list[Any] = (
    [ctypes.c_int64] * 5 + [ctypes.c_double, ctypes.c_int64] + [ctypes.c_void_p] * 7
)
_LRU_STEP_ARGTYPES: list[Any] = [ctypes.c_int64] * 5 + [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 7


def _mode() -> str:
    mode = os.environ.get("SSM_METARL_NATIVE", "auto").strip().lower() or "auto"
    if mode not in ("auto", "0", "1"):
        raise ConfigError(f"SSM_METARL_NATIVE must be 'auto', '0' or '1', got {mode!r}")
    return mode


def cache_dir() -> Path:
    """Where the compiled kernel lives: ``$SSM_METARL_CACHE`` or ``~/.cache/ssm_metarl``."""
    root = os.environ.get("SSM_METARL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ssm_metarl"
    )
    return Path(root)


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if name:
            exe = shutil.which(name.split()[0])
            if exe:
                return exe
    return None


def compile_flags() -> list[str]:
    """The compiler flags: -O3; -fopenmp-simd -fno-math-errno so that the gated kernels' loops vectorise with
    their exp calls (see ``_scan.c``); -mavx2 -mfma where this CPU has them (Linux's /proc/cpuinfo says so)."""
    flags = ["-O3", "-fopenmp-simd", "-fno-math-errno"]
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        cpu = []
    if os.uname().machine == "x86_64" and "avx2" in cpu and "fma" in cpu:
        flags += ["-mavx2", "-mfma"]
    return flags


def build() -> Path:
    """Compile ``_scan.c`` into the cache (once per source version, platform, C library and flags); returns
    the library path. Compiles with :func:`compile_flags`, or with plain ``-O3`` where the compiler refuses
    those. Raises ``RuntimeError`` with the compiler's message when it cannot compile at all."""
    source = SOURCE.read_bytes()
    where = sys.platform + os.uname().machine + " ".join(platform.libc_ver())
    cc, error = _compiler(), ""
    for flags in (compile_flags(), ["-O3"]):
        key = source + where.encode() + " ".join(flags).encode()
        lib = cache_dir() / f"scan-{hashlib.sha256(key).hexdigest()[:16]}.so"
        if lib.exists():
            return lib
        if cc is None:
            raise RuntimeError("no C compiler found (tried $CC, cc, gcc, clang)")
        lib.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=lib.parent, prefix=lib.stem, suffix=".so.tmp")
        os.close(fd)
        try:
            command = [cc, *flags, "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 0:
                os.replace(tmp, lib)
                return lib
            error = f"{cc} failed to compile {SOURCE.name}: {done.stderr.strip()[-2000:]}"
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(error)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    mode = _mode()
    if mode == "0":
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (RuntimeError, OSError) as e:
        if mode == "1":
            raise RuntimeError(f"SSM_METARL_NATIVE=1 but the native scan kernel cannot be built: {e}") from e
        logger.warning("native scan kernel unavailable, using the Python kernels (slower): %s", e)
        return None
    for name in _DTYPES.values():
        getattr(lib, name).argtypes = _ARGTYPES
        getattr(lib, name).restype = None
        backward = getattr(lib, name.replace("scan_", "scan_backward_"))
        backward.argtypes = _BACKWARD_ARGTYPES
        backward.restype = None
    for name in _RGLRU.values():
        getattr(lib, name).argtypes = _RGLRU_ARGTYPES
        getattr(lib, name).restype = None
        getattr(lib, name.replace("rglru_", "rglru_backward_")).argtypes = _RGLRU_BACKWARD_ARGTYPES
        getattr(lib, name.replace("rglru_", "rglru_backward_")).restype = None
    for name in _CONV.values():
        getattr(lib, name).argtypes = _CONV_ARGTYPES
        getattr(lib, name).restype = None
        getattr(lib, name + "_backward").argtypes = _CONV_BACKWARD_ARGTYPES
        getattr(lib, name + "_backward").restype = None
    for suffix in _TAIL.values():
        for name, argtypes in _TAIL_ARGTYPES.items():
            getattr(lib, f"{name}_{suffix}").argtypes = argtypes
            getattr(lib, f"{name}_{suffix}").restype = None
    for name in _GATED_STEP.values():
        getattr(lib, name).argtypes = _GATED_STEP_ARGTYPES
        getattr(lib, name).restype = ctypes.c_int
        lru = getattr(lib, name.replace("gated_step_", "lru_step_"))
        lru.argtypes = _LRU_STEP_ARGTYPES
        lru.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether the native kernel is built (building it now if needed) and enabled."""
    return _library() is not None


def supports(x: Tensor) -> bool:
    """Whether ``scan_into`` can run on tensors like ``x`` (a CPU tensor of a supported dtype)."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and _library() is not None


def _resolved(x: Tensor) -> Tensor:
    """``x`` itself, or a materialised copy of a lazy conjugate or negation view (which has no real view)."""
    return x.resolve_conj().resolve_neg() if x.is_conj() or x.is_neg() else x


def _real_view(x: Tensor) -> tuple[int, int, int, int]:
    """(data pointer, strides over (B, T, N)) in units of the real scalar type; ``x`` must stay alive."""
    if x.is_complex():
        r = torch.view_as_real(x)
        s = r.stride()
        return r.data_ptr(), s[0], s[1], s[2]
    s = x.stride()
    return x.data_ptr(), s[0], s[1], s[2]


def scan_into(out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool) -> None:
    """Write the scan of (a, b) from h0 into ``out`` (all (B, T, N) views of one dtype, h0 (B, N) or None);
    the contract of ``scan._scan_into``. Callers check :func:`supports` first."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the native scan kernel is not available")
    if out.is_conj() or out.is_neg():
        raise ValueError("scan_into writes into out: it cannot be a lazy conjugate or negation view")
    B, T, N = b.shape
    a, b = _resolved(a), _resolved(b)  # held in locals for the duration of the call
    if h0 is None:
        h_ptr, hsb, hsn = None, 0, 0
    else:
        h0 = _resolved(h0)
        hr = torch.view_as_real(h0) if h0.is_complex() else h0
        h_ptr, hsb, hsn = hr.data_ptr(), hr.stride(0), hr.stride(1)
    getattr(lib, _DTYPES[b.dtype])(
        B, T, N, *_real_view(a), *_real_view(b), h_ptr, hsb, hsn, *_real_view(out), int(reverse)
    )


def scan_backward(
    a_eff: Tensor, g: Tensor, h: Tensor, h0: Tensor | None, keep: Tensor | None, grad_a: str
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The adjoint of ``h = scan(a_eff, b, h0)`` in one call (see ``_scan.c``): returns delta = dL/db
    (B, T, N), dL/da and dL/dh0 (None when ``h0`` is None).

    ``a_eff`` (B, T, N), possibly strided, is the reset-folded coefficient; ``keep`` (B, T) the real 0/1
    mask folded into it (None: no resets). ``grad_a``: ``"sum"`` gives dL/da summed over (B, T), shape (N,);
    ``"full"`` gives (B, T, N); ``"none"`` gives None.
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the native scan kernel is not available")
    B, T, N = h.shape
    a_eff, g, h = _resolved(a_eff), _resolved(g), _resolved(h)
    delta = torch.empty(B, T, N, dtype=h.dtype, device=h.device)
    mode = {"none": 0, "sum": 1, "full": 2}[grad_a]
    ga = None if mode == 0 else torch.empty((N,) if mode == 1 else (B, T, N), dtype=h.dtype, device=h.device)
    gh0 = None
    if h0 is None:
        h0_ptr, h0sb, h0sn = None, 0, 0
    else:
        h0 = _resolved(h0)
        gh0 = torch.empty(B, N, dtype=h.dtype, device=h.device)
        hr = torch.view_as_real(h0) if h0.is_complex() else h0
        h0_ptr, h0sb, h0sn = hr.data_ptr(), hr.stride(0), hr.stride(1)
    k_ptr, ksb, kst = (None, 0, 0) if keep is None else (keep.data_ptr(), keep.stride(0), keep.stride(1))
    getattr(lib, _DTYPES[h.dtype].replace("scan_", "scan_backward_"))(
        B,
        T,
        N,
        *_real_view(a_eff),
        *_real_view(g),
        *_real_view(h),
        h0_ptr,
        h0sb,
        h0sn,
        k_ptr,
        ksb,
        kst,
        delta.data_ptr(),
        None if ga is None else ga.data_ptr(),
        mode,
        None if gh0 is None else gh0.data_ptr(),
    )
    return delta, ga, gh0


def supports_rglru(p: Tensor) -> bool:
    """Whether :func:`rglru` and :func:`rglru_backward` can run on a projection like ``p`` (CPU, float32/64)."""
    return p.device.type == "cpu" and p.dtype in _RGLRU and _library() is not None


def _rglru_args(p: Tensor, d: Tensor, reset: Tensor | None, h0: Tensor | None) -> list[Any]:
    """The arguments the two rglru kernels share; every tensor must stay alive for the call (the caller
    holds them). p (B, T, 3N) and h0 (B, N) need element stride 1, d (N,) contiguous."""
    B, T, N3 = p.shape
    r_args: list[Any] = [None, 0, 0] if reset is None else [reset.data_ptr(), *reset.stride()]
    h_args: list[Any] = [None, 0] if h0 is None else [h0.data_ptr(), h0.stride(0)]
    return [B, T, N3 // 3, p.data_ptr(), p.stride(0), p.stride(1), d.data_ptr(), *r_args, *h_args]


def _rows(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def rglru(p: Tensor, d: Tensor, reset: Tensor | None, h0: Tensor | None) -> Tensor:
    """The gated layer's recurrence with its coefficients in one call (``rglru_*`` in ``_scan.c``): from the
    projection p (B, T, 3N) = [u; r; i], the decay rates d (N,), reset (B, T) bool or None and h0 (B, N) or
    None, the states h (B, T, N). Callers check :func:`supports_rglru` first; every tensor of p's dtype."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the native kernels are not available")
    p, d = _rows(p), d.contiguous()
    h0 = None if h0 is None else _rows(h0)
    reset = None if reset is None else reset.to(torch.bool)
    B, T, N3 = p.shape
    out = torch.empty(B, T, N3 // 3, dtype=p.dtype, device=p.device)
    zero = torch.zeros(N3 // 3, dtype=p.dtype, device=p.device)
    getattr(lib, _RGLRU[p.dtype])(*_rglru_args(p, d, reset, h0), out.data_ptr(), zero.data_ptr())
    return out


def rglru_backward(
    p: Tensor, d: Tensor, reset: Tensor | None, h0: Tensor | None, h: Tensor, g: Tensor, want_h0: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The adjoint of :func:`rglru` in one call: dL/dp (B, T, 3N), dL/dd (N,) and dL/dh0 (B, N) (None unless
    ``want_h0`` and h0 is given), from the forward's inputs, its output h and g = dL/dh (B, T, N)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the native kernels are not available")
    p, d, g, h = _rows(p), d.contiguous(), _rows(g.to(p.dtype)), h.contiguous()
    h0 = None if h0 is None else _rows(h0)
    reset = None if reset is None else reset.to(torch.bool)
    B, T, N3 = p.shape
    dp = torch.empty(B, T, N3, dtype=p.dtype, device=p.device)
    dd = torch.empty(N3 // 3, dtype=p.dtype, device=p.device)
    gh0 = torch.empty(B, N3 // 3, dtype=p.dtype, device=p.device) if want_h0 and h0 is not None else None
    scratch = torch.zeros(3 * (N3 // 3), dtype=p.dtype, device=p.device)  # two rows, then a row of zeros
    getattr(lib, _RGLRU[p.dtype].replace("rglru_", "rglru_backward_"))(
        *_rglru_args(p, d, reset, h0),
        h.data_ptr(),
        g.data_ptr(),
        g.stride(0),
        g.stride(1),
        dp.data_ptr(),
        dd.data_ptr(),
        None if gh0 is None else gh0.data_ptr(),
        scratch.data_ptr(),
        scratch[2 * (N3 // 3) :].data_ptr(),
    )
    return dp, dd, gh0


def supports_conv(v: Tensor) -> bool:
    """Whether :func:`conv` and :func:`conv_backward` can run on inputs like ``v`` (CPU, float32/64)."""
    return v.device.type == "cpu" and v.dtype in _CONV and _library() is not None


def conv(
    v: Tensor, buf: Tensor, wt: Tensor, bias: Tensor, since: Tensor, keep_from: Tensor
) -> tuple[Tensor, Tensor]:
    """The gated ssm's reset-aware causal convolution in one call (``conv_*`` in ``_scan.c``): v (B, T, H),
    buf (B, K-1, H) the inputs before the segment, wt (K, H) the taps (row K-1 the current input's), bias (H,),
    since (B, T) int64 the steps since each row's episode started, keep_from (B,) int64 the time of each row's
    last reset -> out (B, T, H), the new buffer (B, K-1, H). Callers check :func:`supports_conv`; every float
    tensor of v's dtype."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the native kernels are not available")
    v, buf, wt, bias = v.contiguous(), buf.contiguous(), wt.contiguous(), bias.contiguous()
    since, keep_from = since.contiguous(), keep_from.contiguous()
    (B, T, H), K = v.shape, wt.shape[0]
    out = torch.empty_like(v)
    newbuf = torch.empty(B, K - 1, H, dtype=v.dtype, device=v.device)
    ptrs = (v, buf, wt, bias, since, keep_from, out, newbuf)
    getattr(lib, _CONV[v.dtype])(B, T, H, K, *(t.data_ptr() for t in ptrs))
    return out, newbuf


def conv_backward(
    v: Tensor,
    buf: Tensor,
    wt: Tensor,
    since: Tensor,
    keep_from: Tensor,
    g: Tensor,
    gnb: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The adjoint of :func:`conv` in one call: from its inputs, g = dL/dout (B, T, H) and gnb = dL/dnewbuf
    (B, K-1, H) or None, the gradients of v, buf, wt and bias."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the native kernels are not available")
    v, buf, wt = v.contiguous(), buf.contiguous(), wt.contiguous()
    since, keep_from, g = since.contiguous(), keep_from.contiguous(), g.to(v.dtype).contiguous()
    gnb = None if gnb is None else gnb.to(v.dtype).contiguous()
    (B, T, H), K = v.shape, wt.shape[0]
    dv, dbuf, dwt = torch.zeros_like(v), torch.zeros_like(buf), torch.zeros_like(wt)
    dbias = torch.zeros(H, dtype=v.dtype, device=v.device)
    getattr(lib, _CONV[v.dtype] + "_backward")(
        B,
        T,
        H,
        K,
        *(t.data_ptr() for t in (v, buf, wt, since, keep_from, g)),
        None if gnb is None else gnb.data_ptr(),
        *(t.data_ptr() for t in (dv, dbuf, dwt, dbias)),
    )
    return dv, dbuf, dwt, dbias


def _tail(name: str, dtype: torch.dtype, R: int, H: int, *tensors: Tensor) -> None:
    lib = _library()
    if lib is None:
        raise RuntimeError("the native kernels are not available")
    getattr(lib, f"{name}_{_TAIL[dtype]}")(R, H, *(t.data_ptr() for t in tensors))


def skip_silu(a: Tensor, v: Tensor, skip: Tensor) -> Tensor:
    """silu(a + skip * v) in one pass (``skip_silu_*`` in ``_scan.c``): a, v (..., H) contiguous, skip (H,),
    one dtype (float32/64, CPU)."""
    y = torch.empty_like(a)
    _tail("skip_silu", a.dtype, a.numel() // a.shape[-1], a.shape[-1], a, v, skip, y)
    return y


def skip_silu_backward(a: Tensor, v: Tensor, skip: Tensor, g: Tensor, dv: Tensor) -> tuple[Tensor, Tensor]:
    """The adjoint of :func:`skip_silu` in one pass: g = dL/dy -> dL/da and dL/dskip; dL/dv is added into
    ``dv`` (contiguous, like v)."""
    da, dskip = torch.empty_like(a), torch.empty_like(skip)
    _tail("skip_silu_backward", a.dtype, a.numel() // a.shape[-1], a.shape[-1], a, v, skip, g, da, dv, dskip)
    return da, dskip


def glu_residual(x: Tensor, m: Tensor) -> Tensor:
    """x + m[..., :H] * sigmoid(m[..., H:]) in one pass (``glu_res_*`` in ``_scan.c``): x (..., H), m (...,
    2H), contiguous, one dtype (float32/64, CPU)."""
    z = torch.empty_like(x)
    _tail("glu_res", x.dtype, x.numel() // x.shape[-1], x.shape[-1], x, m, z)
    return z


def glu_residual_backward(m: Tensor, g: Tensor) -> Tensor:
    """dL/dm of :func:`glu_residual` in one pass, g = dL/dz contiguous (dL/dx is g itself)."""
    dm = torch.empty_like(m)
    _tail("glu_res_backward", m.dtype, g.numel() // g.shape[-1], g.shape[-1], m, g, dm)
    return dm


def forward_hooked(modules: Any) -> bool:
    """Whether any of ``modules`` has a forward (pre-)hook: a native path that skips the modules' own calls
    would skip the hooks too, so it steps aside."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


class ParamWatch:
    """A module tree's parameter slots as they are now, to tell cheaply whether a native step built from them
    still reads the right memory: :meth:`unchanged` is False once a submodule is replaced, any slot holds
    another tensor (swapped, as ``functional_call`` does) or its tensor another address (moved or converted by
    ``.to``), or once a submodule has a forward hook (which a native step would skip) or a parametrization. In-place value changes keep the memory, so
    they pass. Holds the tensors, so no id in its key can be reused while it lives."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.modules = list(module.modules())
        self.children = [list(m._modules.values()) for m in self.modules]  # a replaced submodule shows here
        self.slots = [(m._parameters, name) for m in self.modules for name in m._parameters]
        self.params = [d[name] for d, name in self.slots]
        self.key = [(id(p), None if p is None else p.data_ptr()) for p in self.params]

    def hooked(self) -> bool:
        """Whether any module of the tree has a forward (pre-)hook or a parametrization (whose computed
        weight a native plan would freeze)."""
        return forward_hooked(self.modules) or any("parametrizations" in m._modules for m in self.modules)

    def unchanged(self) -> bool:
        """Same submodules, the same tensors at the same addresses in every slot, and no hook."""
        if any(list(m._modules.values()) != c for m, c in zip(self.modules, self.children)):
            return False
        now = [d.get(name) for d, name in self.slots]
        return [(id(p), None if p is None else p.data_ptr()) for p in now] == self.key and not self.hooked()


class ModelStep:
    """One acting step of a whole backbone as one native call, its weights' addresses prepared once.

    ``kind`` is ``"gated"`` (``gated_step_*`` in ``_scan.c``, a GatedSSM; ``extra`` = [c, K], the gate
    constant and the convolution's taps, 0 for none) or ``"lru"`` (``lru_step_*``, an SSM from its acting
    plan; ``extra`` = [complex, glu]). ``weights`` are the tensors in the kernel's order (CPU, contiguous, one
    real dtype; complex lambda as (N, 2) reals), ``eps`` the L + 1 norms' epsilons, ``state_dim`` N,
    ``state_width`` a state row's width S (default N; a gated ssm with a convolution carries its last inputs
    too) and ``state_dtype`` the states' dtype (complex for the complex SSM). The object holds the tensors, so
    the addresses it prepared stay valid; the caller builds a new one when the tensors change (another plan, a
    swapped or moved parameter). Raises ``ValueError`` for weights it cannot take; :meth:`accepts` says whether
    a call's inputs fit the kernel (the caller takes its torch path where they do not, which raises where they
    are wrong)."""

    def __init__(
        self,
        kind: str,
        weights: list[Tensor],
        eps: list[float],
        extra: list[Any],
        state_dim: int,
        state_dtype: torch.dtype,
        state_width: int | None = None,
    ) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError("the native kernels are not available")
        dtype = weights[0].dtype
        if dtype not in _RGLRU or any(
            w.dtype != dtype or w.device.type != "cpu" or not w.is_contiguous() for w in weights
        ):
            raise ValueError("the native step needs contiguous CPU weights of one dtype, float32 or float64")
        self.fn = getattr(lib, f"{kind}_step_{_RGLRU[dtype].split('_')[-1]}")
        self.weights, self.dtype, self.extra = weights, dtype, extra
        self.D, self.H, self.N = weights[0].shape[1], weights[1].shape[0], state_dim
        self.S = state_dim if state_width is None else state_width
        self.state_dtype = state_dtype
        self.ptrs = (ctypes.c_void_p * len(weights))(*(t.data_ptr() for t in weights))
        self.eps = (ctypes.c_double * len(eps))(*eps)
        self.L = len(eps) - 1

    def accepts(self, x: Tensor, reset: Tensor | None, state: tuple[Tensor, ...]) -> bool:
        """Whether the kernel can take these inputs: x (B, D) of the weights' dtype, L states (B, S) of the
        state dtype (no lazy conjugate), reset None or B flags, all on the CPU."""
        if x.dtype != self.dtype or x.device.type != "cpu" or x.dim() != 2 or x.shape[1] != self.D:
            return False
        B = x.shape[0]
        if reset is not None and (reset.device.type != "cpu" or reset.dim() != 1 or reset.shape[0] != B):
            return False
        return len(state) == self.L and all(
            s.dtype == self.state_dtype
            and s.device.type == "cpu"
            and s.shape == (B, self.S)
            and not s.is_conj()
            for s in state
        )

    def __call__(
        self, x: Tensor, reset: Tensor | None, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (B, D), reset (B,) bool or None, L states (B, S) -> y (B, H), L new states (B, S); the inputs
        as :meth:`accepts` requires. Reentrant: the states' addresses go in arrays of this call's own."""
        L, B, H, N = self.L, x.shape[0], self.H, self.N
        x = x if x.is_contiguous() else x.contiguous()
        state = tuple(s if s.is_contiguous() else s.contiguous() for s in state)
        if reset is not None and (reset.dtype != torch.bool or not reset.is_contiguous()):
            reset = reset.to(torch.bool).contiguous()
        # one buffer: the L new states, then the output (x's real dtype; a complex state is 2 reals wide)
        width = 2 * N if self.state_dtype.is_complex else self.S
        buf = torch.empty(L * B * width + B * H, dtype=x.dtype, device=x.device)
        base, stride = buf.data_ptr(), B * width * buf.element_size()
        s_in = (ctypes.c_void_p * L)(*(s.data_ptr() for s in state))
        s_out = (ctypes.c_void_p * L)(*(base + i * stride for i in range(L)))
        reset_ptr = None if reset is None else reset.data_ptr()
        if self.fn(
            B, self.D, H, N, L, *self.extra, x.data_ptr(), reset_ptr, self.ptrs, self.eps, s_in, s_out,
            base + L * stride,
        ):  # fmt: skip
            raise MemoryError("the native acting step could not allocate its buffers")
        states = buf[: L * B * width].view(L, B, width)
        if self.state_dtype.is_complex:
            states = torch.view_as_complex(states.view(L, B, N, 2))
        return buf[L * B * width :].view(B, H), tuple(states.unbind(0))


__all__ = [
    "ParamWatch",
    "available",
    "build",
    "cache_dir",
    "compile_flags",
    "conv",
    "conv_backward",
    "forward_hooked",
    "glu_residual",
    "glu_residual_backward",
    "ModelStep",
    "rglru",
    "rglru_backward",
    "scan_backward",
    "scan_into",
    "skip_silu",
    "skip_silu_backward",
    "supports",
    "supports_conv",
    "supports_rglru",
]
