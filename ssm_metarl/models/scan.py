"""Reset-aware diagonal linear scan: the one sequential part of a structured SSM.

Shape letters: B batch, T time, N state (one independent channel per state entry).

For every channel the recurrence is first-order and linear,

    h_t = a_t * (1 - reset_t) * h_{t-1} + b_t,        h_{-1} = h0 (zeros when not given),

with a, b, h real or complex. A reset is folded into the coefficient as an exact zero, so nothing
before a reset reaches anything after it (no log-space cumulative sums: they lose about 1e-3 relative
accuracy in float32 and cannot represent a zero coefficient).

Why a custom autograd function. On a CPU the loop itself is cheap (a few microseconds per step); what
is slow is building an autograd graph step by step. ``linear_scan`` therefore runs the forward without a
graph and supplies the backward by hand. The adjoint of a linear recurrence is the same recurrence run
backwards in time. PyTorch's complex gradients are conjugate Wirtinger derivatives (the gradient it
stores for z is dL/d(conj z) up to a factor), so with g_t = dL/dh_t:

    delta_t = g_t + conj(a_{t+1}) * delta_{t+1},      delta_T = 0     (a reverse scan)
    dL/db_t = delta_t
    dL/da_t = delta_t * conj(h_{t-1})                 (a_t here is the reset-folded coefficient)
    dL/dh0  = conj(a_0) * delta_0

Two forward kernels compute a scan (both also run in reverse for the backward):

* ``loop``: T steps, one fused multiply-add each, written in place into a preallocated output. Each
  step costs a few microseconds of dispatch overhead plus B*N work, so it wins when B*N is large.
* ``chunked``: split T into chunks of length C ~ sqrt(T/2). Pass 1 scans all chunks at once from a zero
  state (C vectorised steps) and multiplies up each chunk's coefficients; a short sequential pass over
  the chunk boundaries (T/C steps of size B*N) gives every chunk its true starting state; pass 2
  re-scans all chunks at once from those states. About 2C + T/C dispatches instead of T: it wins when
  per-step overhead dominates, i.e. small B*N. Everything is exact multiply-adds, resets included.

``kernel="auto"`` picks between them with a rule measured on a 2-core CPU (see ``_pick_kernel`` and
benchmarks/scan_speed.py). ``linear_scan_reference`` is the obvious autograd loop, kept as the oracle.
If the backward is itself differentiated (second-order MAML), it is computed with differentiable ops
(the reverse scan is again a ``linear_scan``), so double backward works too.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
from torch import Tensor

Kernel = Literal["auto", "loop", "chunked"]

# Measured crossover (benchmarks/scan_speed.py --crossover, 1 thread): the chunked scan is faster while
# the work per time step B*N is below about this many elements; above it the plain loop ties or wins.
CHUNKED_MAX_WIDTH = 8192
# Below this many steps the chunked scan has nothing to amortise.
CHUNKED_MIN_STEPS = 32


def linear_scan_reference(
    a: Tensor, b: Tensor, h0: Tensor | None = None, reset: Tensor | None = None
) -> Tensor:
    """The obvious loop with autograd: h_t = a_t * (1 - reset_t) * h_{t-1} + b_t.

    a: (B, T, N) or broadcastable to it, e.g. (N,); b: (B, T, N); h0: (B, N) or None (zeros);
    reset: (B, T) bool or None. Returns h: (B, T, N).
    """
    B, T, N = b.shape
    a = a.expand(B, T, N)  # (B, T, N)
    h = b.new_zeros(B, N) if h0 is None else h0  # (B, N)
    hs = []
    for t in range(T):
        if reset is not None:
            h = h * (~reset[:, t, None]).to(b.real.dtype)  # (B, N)
        h = a[:, t] * h + b[:, t]  # (B, N)
        hs.append(h)
    return torch.stack(hs, dim=1)  # (B, T, N)


def linear_scan(
    a: Tensor,
    b: Tensor,
    h0: Tensor | None = None,
    reset: Tensor | None = None,
    kernel: Kernel = "auto",
) -> Tensor:
    """Fast h_t = a_t * (1 - reset_t) * h_{t-1} + b_t with a hand-written reverse-scan backward.

    a: (B, T, N), (1, 1, N) or (N,) (broadcast over batch and time); b: (B, T, N), real or complex;
    h0: (B, N) or None (zeros); reset: (B, T) bool or None, True where h is zeroed before step t.
    kernel: "loop", "chunked", or "auto" (chosen from B*N and T). Returns h: (B, T, N), contiguous.
    """
    if b.dim() != 3:
        raise ValueError(f"expected b of shape (B, T, N), got {tuple(b.shape)}")
    B, T, N = b.shape
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        if tuple(h0.shape) != (B, N):
            raise ValueError(f"expected h0 of shape {(B, N)}, got {tuple(h0.shape)}")
        dtype = torch.promote_types(dtype, h0.dtype)
        h0 = h0.to(dtype)
    a, b = a.to(dtype), b.to(dtype)
    if reset is not None:
        if tuple(reset.shape) != (B, T):
            raise ValueError(f"expected reset of shape {(B, T)}, got {tuple(reset.shape)}")
        keep = (~reset.bool()).to(device=b.device, dtype=b.real.dtype)  # (B, T)
        a = a * keep[:, :, None]  # (B, T, N): a reset is an exact zero coefficient
    else:
        a = _as_3d(a, N)  # (B or 1, T or 1, N)
    if T == 0:
        return b.new_empty(B, 0, N)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (a, b, h0)
    )
    if not needs_grad:
        out = b.new_empty(B, T, N)  # (B, T, N)
        _scan_into(out, a.expand(B, T, N), b, h0, reverse=False, kernel=kernel)
        return out
    return _LinearScan.apply(a, b, h0, kernel)


def _as_3d(a: Tensor, N: int) -> Tensor:
    if a.dim() == 1:
        return a.view(1, 1, N)
    if a.dim() != 3:
        raise ValueError(f"expected a of shape (B, T, N), (1, 1, N) or (N,), got {tuple(a.shape)}")
    return a


@functools.lru_cache(maxsize=256)
def _chunk_length(T: int) -> int:
    """Chunk length C minimising the dispatch count 2C + T//C + T%C (about sqrt(T/2))."""
    best, best_cost = 1, 2 + T
    for C in range(2, max(3, int(2 * math.sqrt(T)) + 2)):
        cost = 2 * C + T // C + T % C
        if cost < best_cost:
            best, best_cost = C, cost
    return best


def _pick_kernel(width: int, T: int) -> Literal["loop", "chunked"]:
    """The measured rule: chunked for long sequences of narrow steps, the plain loop otherwise."""
    return "chunked" if T >= CHUNKED_MIN_STEPS and width <= CHUNKED_MAX_WIDTH else "loop"


def _scan_into(
    out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool, kernel: Kernel
) -> None:
    """Write the scan of (a, b) from h0 into ``out``; all (B, T, N) views, a possibly stride-0.

    Forward: out_t = a_t * out_{t-1} + b_t from out_{-1} = h0.
    Reverse: out_t = a_t * out_{t+1} + b_t from out_T = h0.
    """
    B, T, N = b.shape
    if kernel == "auto":
        kernel = _pick_kernel(B * N, T)
    C = _chunk_length(T)
    if kernel == "loop" or T // C < 2:
        _loop_into(out, a, b, h0, reverse)
    elif kernel == "chunked":
        _chunked_into(out, a, b, h0, reverse, C)
    else:
        raise ValueError(f"unknown scan kernel {kernel!r}; choose 'auto', 'loop' or 'chunked'")


def _loop_into(out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool) -> None:
    """Plain sequential scan, one in-place multiply-add per step, no graph."""
    T = b.shape[1]
    a_t, b_t, o_t = a.unbind(1), b.unbind(1), out.unbind(1)  # T views of (B, N)
    order = range(T - 1, -1, -1) if reverse else range(T)
    h = h0
    for t in order:
        h = o_t[t].copy_(b_t[t]) if h is None else torch.addcmul(b_t[t], a_t[t], h, out=o_t[t])


def _chunked_into(
    out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool, C: int
) -> None:
    """Two-level scan: within-chunk scans vectorised over chunks, sequential only across chunks."""
    B, T, N = b.shape
    nc = T // C
    T0 = nc * C
    lo = T - T0 if reverse else 0  # the chunked region is [lo, lo + T0); the rest is a short loop
    av = a[:, lo : lo + T0].unflatten(1, (nc, C))  # (B, nc, C, N)
    bv = b[:, lo : lo + T0].unflatten(1, (nc, C))  # (B, nc, C, N)
    ov = out[:, lo : lo + T0].unflatten(1, (nc, C))  # (B, nc, C, N)
    js = range(C - 1, -1, -1) if reverse else range(C)

    # pass 1: every chunk from a zero state; its end value and its coefficient product
    j0 = js[0]
    end, prod = bv[:, :, j0], av[:, :, j0]  # (B, nc, N)
    for j in js[1:]:
        end = torch.addcmul(bv[:, :, j], av[:, :, j], end)  # (B, nc, N)
        prod = prod * av[:, :, j]  # (B, nc, N)

    # sequential pass over chunk boundaries: the true state entering each chunk
    ks = range(nc - 1, -1, -1) if reverse else range(nc)
    start = b.new_empty(B, nc, N)  # (B, nc, N)
    if h0 is None:
        start[:, ks[0]] = 0
    else:
        start[:, ks[0]] = h0
    for k, k_next in zip(ks[:-1], ks[1:]):
        torch.addcmul(end[:, k], prod[:, k], start[:, k], out=start[:, k_next])  # (B, N)
    h = torch.addcmul(end[:, ks[-1]], prod[:, ks[-1]], start[:, ks[-1]])  # (B, N): state after the region

    # pass 2: re-scan every chunk from its true start, writing the output
    s = start  # (B, nc, N)
    for j in js:
        s = torch.addcmul(bv[:, :, j], av[:, :, j], s, out=ov[:, :, j])

    # the remaining T - T0 < C steps continue from the chunked region's boundary state
    if T0 < T:
        rest = slice(0, lo) if reverse else slice(T0, T)
        _loop_into(out[:, rest], a[:, rest], b[:, rest], h, reverse)


def _conj(x: Tensor) -> Tensor:
    return x.conj().resolve_conj() if x.is_complex() else x


class _LinearScan(torch.autograd.Function):
    """h = scan(a, b, h0) with the reverse-scan adjoint; a already has resets folded in."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor | None, kernel: Kernel) -> Tensor:
        B, T, N = b.shape
        out = b.new_empty(B, T, N)  # (B, T, N)
        _scan_into(out, a.expand(B, T, N), b, h0, reverse=False, kernel=kernel)
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        a, b, h0, kernel = inputs
        ctx.kernel = kernel
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, output, h0)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        a, h, h0 = ctx.saved_tensors
        need_a, need_b, need_h0 = ctx.needs_input_grad[:3]
        B, T, N = h.shape
        a_full = a.expand(B, T, N)  # (B, T, N)
        if torch.is_grad_enabled():  # create_graph: keep every op differentiable
            delta = _reverse_scan_differentiable(a_full, g, ctx.kernel)
        else:
            delta = torch.empty_like(h)  # (B, T, N)
            delta[:, -1] = g[:, -1]
            if T > 1:
                a_conj = _conj(a).expand(B, T, N)  # (B, T, N), conjugated before broadcasting
                _scan_into(delta[:, :-1], a_conj[:, 1:], g[:, :-1], delta[:, -1], True, ctx.kernel)
        grad_a = grad_h0 = None
        if need_a:
            h_prev = torch.cat([h0[:, None] if ctx.has_h0 else h.new_zeros(B, 1, N), h[:, :-1]], 1)
            grad_a = (delta * h_prev.conj()).sum_to_size(a.shape)  # (B, T, N) summed to a's shape
        if need_h0:
            grad_h0 = a_full[:, 0].conj() * delta[:, 0]  # (B, N)
        return grad_a, delta if need_b else None, grad_h0, None


def _reverse_scan_differentiable(a: Tensor, g: Tensor, kernel: Kernel) -> Tensor:
    """delta_t = g_t + conj(a_{t+1}) delta_{t+1}, as a forward linear_scan in flipped time."""
    # in reversed time r = T-1-t the coefficient multiplying delta_{r-1} is conj(a_{T-r}); r = 0 has none
    a_rev = a.flip(1)[:, :-1]  # (B, T-1, N)
    coef = torch.cat([torch.zeros_like(a[:, :1]), a_rev], 1).conj()  # (B, T, N)
    return linear_scan(coef, g.flip(1), kernel=kernel).flip(1)  # (B, T, N)
