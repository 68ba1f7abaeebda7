"""Reset-aware diagonal linear scan: the one sequential part of a structured SSM.

Shape letters: B batch, T time, N state (one independent channel per state entry).

For every channel the recurrence is first-order and linear,

    h_t = a_t * (1 - reset_t) * h_{t-1} + b_t,        h_{-1} = h0 (zeros when not given),

with a, b, h real or complex. A reset is folded into the coefficient as an exact zero, so nothing
before a reset reaches anything after it (no log-space cumulative sums: they lose relative accuracy in
float32 and cannot represent a zero coefficient).

Why a custom autograd function. On a CPU every small op costs a few microseconds of dispatch, and a
step-by-step autograd loop records several ops per step and replays as many backwards (the "autograd
loop" rows of ``benchmarks/results/scan_speed.md``; written with ``b[:, t]`` indexing its backward is even
O(T^2), see ``linear_scan_reference``). ``linear_scan`` runs the forward without a graph, in O(sqrt(T))
vectorised ops, and supplies the backward by hand. The adjoint of a linear recurrence is the same recurrence
run backwards in time. PyTorch's complex gradients are conjugate Wirtinger derivatives (the gradient it
stores for z is dL/d(conj z) up to a factor), so with g_t = dL/dh_t:

    delta_t = g_t + conj(a_{t+1}) * delta_{t+1},      delta_T = 0     (a reverse scan)
    dL/db_t = delta_t
    dL/da_t = delta_t * conj(h_{t-1})                 (a_t here is the reset-folded coefficient)
    dL/dh0  = conj(a_0) * delta_0

Three kernels compute a scan (all also run in reverse for the backward):

* ``loop``: T steps, one fused multiply-add each, written in place into a preallocated output. Each
  step costs a few microseconds of dispatch overhead plus B*N work, so it wins when B*N is large.
* ``chunked``: split T into chunks of length C ~ sqrt(T/2). Pass 1 scans all chunks at once from a zero
  state (C vectorised steps) and multiplies up each chunk's coefficients; a short sequential pass over
  the chunk boundaries (T/C steps of size B*N) gives every chunk its true starting state; pass 2
  re-scans all chunks at once from those states. About 2C + T/C dispatches instead of T: it wins when
  per-step overhead dominates, i.e. small B*N. Everything is exact multiply-adds, resets included.

* ``native`` (CPU tensors only): one call into the C loop of ``_scan.c`` (:mod:`ssm_metarl.models.native`),
  which costs one dispatch for the whole scan; the fast backward is one call too (reverse scan, coefficient
  gradient and h0 gradient together). At PPO's sizes it runs forward + backward faster than the better
  of the two Python kernels (``benchmarks/results/scan_speed.md``).

``kernel="auto"`` takes ``native`` where it is available, and otherwise picks between the Python kernels
with a rule read off the kernel crossover of ``benchmarks/results/scan_speed.md`` (see ``_pick_kernel``).
``linear_scan_reference`` is the obvious autograd loop, kept as the oracle.
If the backward is itself differentiated (second-order MAML), it is computed with differentiable ops
(the reverse scan is again a ``linear_scan``), so double backward works too.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
from torch import Tensor

from ssm_metarl.models import native

Kernel = Literal["auto", "loop", "chunked", "native"]
KERNELS: tuple[str, ...] = ("auto", "loop", "chunked", "native")

# Kernel rule for the Python kernels, read off the "Kernel crossover" table of
# benchmarks/results/scan_speed.md (forward + backward CPU time, B = 8, one thread, loop / chunked by width
# B*N and T). The chunked scan makes about three passes over the data to the loop's one, so it wins while
# per-step dispatch overhead dominates: below about 4096 real elements per step (near a tie there), or
# about a third of that complex.
CHUNKED_MAX_WIDTH = 4096
# Below this many steps the chunked scan has nothing to amortise.
CHUNKED_MIN_STEPS = 32
# A complex multiply-add costs about this many real ones in the crossover table.
COMPLEX_COST = 3


def linear_scan_reference(
    a: Tensor, b: Tensor, h0: Tensor | None = None, reset: Tensor | None = None
) -> Tensor:
    """The obvious loop with autograd: h_t = a_t * (1 - reset_t) * h_{t-1} + b_t.

    a: (B, T, N), (1, 1, N) or (N,); b: (B, T, N); h0: (B, N) or None (zeros); reset: (B, T) bool or None.
    Returns h: (B, T, N). Steps are taken with ``unbind`` rather than ``b[:, t]``: the backward of each
    ``b[:, t]`` writes a zero-filled (B, T, N) tensor, which makes a loop of them O(T^2) in memory traffic.
    """
    B, T, N = b.shape
    a_t = a.unbind(1) if a.dim() == 3 and a.shape[1] == T else [a.reshape(-1, N)] * T  # T x (B or 1, N)
    keep = (~reset.bool()).to(b.real.dtype)[:, :, None].unbind(1) if reset is not None else None
    h = b.new_zeros(B, N) if h0 is None else h0  # (B, N)
    hs = []
    for t, b_t in enumerate(b.unbind(1)):
        if keep is not None:
            h = h * keep[t]  # (B, N)
        h = a_t[t] * h + b_t  # (B, N)
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
    if kernel not in KERNELS:
        raise ValueError(f"unknown scan kernel {kernel!r}; choose one of {KERNELS}")
    if kernel == "native" and not native.supports(b):
        raise ValueError(
            f"the native scan kernel needs CPU tensors of float32/64 or complex64/128 and a C compiler, got "
            f"{b.dtype} on {b.device} (native kernel available: {native.available()}); use kernel='auto'"
        )
    B, T, N = b.shape
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        if tuple(h0.shape) != (B, N):
            raise ValueError(f"expected h0 of shape {(B, N)}, got {tuple(h0.shape)}")
        dtype = torch.promote_types(dtype, h0.dtype)
        h0 = h0.to(dtype)
    a, b = _as_3d(a.to(dtype), N), b.to(dtype)  # a: (B or 1, T or 1, N)
    keep = None
    if reset is not None:
        if tuple(reset.shape) != (B, T):
            raise ValueError(f"expected reset of shape {(B, T)}, got {tuple(reset.shape)}")
        keep = (~reset.bool()).to(device=b.device, dtype=b.real.dtype)  # (B, T)
    if T == 0:
        return b.new_empty(B, 0, N)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (a, b, h0))
    if not needs_grad:
        out = b.new_empty(B, T, N)  # (B, T, N)
        _scan_into(out, _fold_reset(a, keep, B, T), b, h0, reverse=False, kernel=kernel)
        return out
    return _LinearScan.apply(a, b, h0, keep, kernel)[0]


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


def _pick_kernel(width: int, T: int, is_complex: bool) -> Literal["loop", "chunked"]:
    """The measured rule: chunked for long sequences of narrow steps, the plain loop otherwise.

    width = B*N elements per step; a complex element costs about COMPLEX_COST real ones.
    """
    cost = width * (COMPLEX_COST if is_complex else 1)
    return "chunked" if T >= CHUNKED_MIN_STEPS and cost < CHUNKED_MAX_WIDTH else "loop"


def _scan_into(out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool, kernel: Kernel) -> None:
    """Write the scan of (a, b) from h0 into ``out``; all (B, T, N) views, a possibly stride-0.

    Forward: out_t = a_t * out_{t-1} + b_t from out_{-1} = h0.
    Reverse: out_t = a_t * out_{t+1} + b_t from out_T = h0.
    """
    B, T, N = b.shape
    if kernel == "auto":
        kernel = "native" if native.supports(b) else _pick_kernel(B * N, T, b.is_complex())
    if kernel == "native":
        native.scan_into(out, a, b, h0, reverse)
        return
    C = _chunk_length(T)
    if kernel == "loop" or T // C < 2:
        _loop_into(out, a, b, h0, reverse)
    elif kernel == "chunked":
        _chunked_into(out, a, b, h0, reverse, C)
    else:
        raise ValueError(f"unknown scan kernel {kernel!r}; choose one of {KERNELS}")


def _loop_into(out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool) -> None:
    """Plain sequential scan, one in-place multiply-add per step, no graph."""
    T = b.shape[1]
    a_t, b_t, o_t = a.unbind(1), b.unbind(1), out.unbind(1)  # T views of (B, N)
    order = range(T - 1, -1, -1) if reverse else range(T)
    h = h0
    for t in order:
        h = o_t[t].copy_(b_t[t]) if h is None else torch.addcmul(b_t[t], a_t[t], h, out=o_t[t])


def _chunked_into(out: Tensor, a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool, C: int) -> None:
    """Two-level scan: within-chunk scans vectorised over chunks, sequential only across chunks."""
    B, T, N = b.shape
    nc = T // C
    T0 = nc * C
    lo = T - T0 if reverse else 0  # the chunked region is [lo, lo + T0); the rest is a short loop
    av = a[:, lo : lo + T0].unflatten(1, (nc, C))  # (B, nc, C, N)
    bv = b[:, lo : lo + T0].unflatten(1, (nc, C))  # (B, nc, C, N)
    a_j, b_j = av.unbind(2), bv.unbind(2)  # C views of (B, nc, N); unbind once, indexing is slow
    o_j = out[:, lo : lo + T0].unflatten(1, (nc, C)).unbind(2)  # C views of (B, nc, N)
    js = range(C - 1, -1, -1) if reverse else range(C)

    # pass 1: every chunk from a zero state -> its end value; and its coefficient product
    end = b_j[js[0]]  # (B, nc, N)
    for j in js[1:]:
        end = torch.addcmul(b_j[j], a_j[j], end)  # (B, nc, N)
    prod = torch.prod(av, dim=2)  # (B, nc, N)

    # sequential pass over chunk boundaries: the true state entering each chunk
    ks = range(nc - 1, -1, -1) if reverse else range(nc)
    start = b.new_empty(B, nc, N)  # (B, nc, N)
    start_k, end_k, prod_k = start.unbind(1), end.unbind(1), prod.unbind(1)  # nc views of (B, N)
    if h0 is None:
        start_k[ks[0]].zero_()
    else:
        start_k[ks[0]].copy_(h0)
    for k, k_next in zip(ks[:-1], ks[1:]):
        torch.addcmul(end_k[k], prod_k[k], start_k[k], out=start_k[k_next])  # (B, N)
    h = torch.addcmul(end_k[ks[-1]], prod_k[ks[-1]], start_k[ks[-1]])  # (B, N): state after the region

    # pass 2: re-scan every chunk from its true start, writing the output
    s = start  # (B, nc, N)
    for j in js:
        s = torch.addcmul(b_j[j], a_j[j], s, out=o_j[j])  # (B, nc, N)

    # the remaining T - T0 < C steps continue from the chunked region's boundary state
    if T0 < T:
        rest = slice(0, lo) if reverse else slice(T0, T)
        _loop_into(out[:, rest], a[:, rest], b[:, rest], h, reverse)


def _fold_reset(a: Tensor, keep: Tensor | None, B: int, T: int) -> Tensor:
    """The effective coefficient a_t * (1 - reset_t): (B, T, N), a stride-0 view when there are no resets."""
    return a.expand(B, T, a.shape[-1]) if keep is None else a * keep[:, :, None]


def _conj(x: Tensor) -> Tensor:
    return x.conj().resolve_conj() if x.is_complex() else x


class _LinearScan(torch.autograd.Function):
    """h = scan(a * keep, b, h0) with the reverse-scan adjoint (see the module docstring).

    Also returns the reset-folded coefficient a_eff (non-differentiable) so that the backward can reuse
    it instead of allocating and computing it again.
    """

    @staticmethod
    def forward(
        ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None, keep: Tensor | None, kernel: Kernel
    ) -> tuple[Tensor, Tensor]:
        # ctx in forward (no setup_context): apply then skips binding the arguments by inspect.signature,
        # which costs more per call than the native kernel at RL²'s sizes
        B, T, N = b.shape
        a_eff = _fold_reset(a, keep, B, T)  # (B, T, N)
        out = b.new_empty(B, T, N)  # (B, T, N)
        _scan_into(out, a_eff, b, h0, reverse=False, kernel=kernel)
        ctx.mark_non_differentiable(a_eff)
        ctx.kernel = kernel
        ctx.has_h0, ctx.has_keep = h0 is not None, keep is not None
        ctx.save_for_backward(a, out, h0, keep, a_eff)
        return out, a_eff

    @staticmethod
    def backward(ctx: Any, g: Tensor, _: Tensor | None) -> tuple[Tensor | None, ...]:
        a, h, h0, keep, a_eff = ctx.saved_tensors
        h0 = h0 if ctx.has_h0 else None
        keep = keep if ctx.has_keep else None
        need_a, need_b, need_h0 = ctx.needs_input_grad[:3]
        grads: tuple[Tensor | None, Tensor, Tensor | None]
        if torch.is_grad_enabled():  # create_graph=True: differentiable ops only (double backward)
            grads = _backward_differentiable(a, h, h0, keep, g, ctx.kernel)
        elif ctx.kernel in ("auto", "native") and native.supports(h):
            mode = "none" if not need_a else "sum" if a.shape[:2] == (1, 1) else "full"
            delta, grad_a, grad_h0 = native.scan_backward(a_eff, g.to(h.dtype), h, h0, keep, mode)
            if grad_a is not None:
                grad_a = grad_a.reshape(a.shape) if mode == "sum" else grad_a.sum_to_size(a.shape)
            grads = grad_a, delta, grad_h0
        else:
            grads = _backward_fast(a, a_eff, h, h0, keep, g, ctx.kernel, need_a, need_h0)
        grad_a, delta, grad_h0 = grads
        return grad_a, delta if need_b else None, grad_h0 if need_h0 else None, None, None


def _backward_fast(
    a: Tensor,
    a_eff: Tensor,
    h: Tensor,
    h0: Tensor | None,
    keep: Tensor | None,
    g: Tensor,
    kernel: Kernel,
    need_a: bool,
    need_h0: bool,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """The adjoint without a graph: one reverse scan, then products; few full-size temporaries."""
    B, T, N = h.shape
    a_conj = _conj(a_eff)  # (B, T, N): conj(a_t (1 - reset_t)); no copy when real
    delta = torch.empty_like(h)  # (B, T, N)
    delta[:, -1] = g[:, -1]
    if T > 1:
        _scan_into(delta[:, :-1], a_conj[:, 1:], g[:, :-1], delta[:, -1], True, kernel)
    grad_h0 = a_conj[:, 0] * delta[:, 0] if need_h0 else None  # (B, N)
    if not need_a:
        return None, delta, grad_h0
    # dL/da_eff_t = delta_t conj(h_{t-1}); dL/da = sum over broadcast dims of keep_t * dL/da_eff_t
    if a.shape[:2] == (1, 1):  # one coefficient per channel (the SSM's lambda): never materialise (B, T, N)
        return _coefficient_grad_sum(delta, h, h0, keep).reshape(a.shape), delta, grad_h0
    grad = torch.empty_like(h)  # (B, T, N)
    torch.mul(delta[:, 1:], h[:, :-1].conj(), out=grad[:, 1:])
    if h0 is None:
        grad[:, 0].zero_()
    else:
        torch.mul(delta[:, 0], h0.conj(), out=grad[:, 0])
    if keep is not None:
        grad.mul_(keep[:, :, None])
    return grad.sum_to_size(a.shape), delta, grad_h0


def _coefficient_grad_sum(delta: Tensor, h: Tensor, h0: Tensor | None, keep: Tensor | None) -> Tensor:
    """sum over (B, T) of keep_t * delta_t * conj(h_{t-1}): (N,).

    Computed in blocks of time steps small enough to stay in cache: a full (B, T, N) temporary is a fresh
    allocation whose page faults cost more than the arithmetic.
    """
    B, T, N = h.shape
    acc = delta[:, 0] * h0.conj() if h0 is not None else delta.new_zeros(B, N)  # (B, N), t = 0
    acc = (acc * keep[:, :1] if keep is not None else acc).sum(0)  # (N,)
    block = max(1, (1 << 16) // (B * N))  # time steps per block: <= 64k elements
    for s in range(1, T, block):
        e = min(T, s + block)
        prod = delta[:, s:e] * h[:, s - 1 : e - 1].conj()  # (B, e - s, N)
        if keep is None:
            acc += prod.sum((0, 1))
            continue
        flat = (torch.view_as_real(prod) if prod.is_complex() else prod).reshape(B * (e - s), -1)
        summed = keep[:, s:e].reshape(1, -1) @ flat  # (1, N) or (1, 2N)
        acc += torch.view_as_complex(summed.reshape(N, 2)) if prod.is_complex() else summed[0]
    return acc


def _backward_differentiable(
    a: Tensor, h: Tensor, h0: Tensor | None, keep: Tensor | None, g: Tensor, kernel: Kernel
) -> tuple[Tensor, Tensor, Tensor]:
    """The same adjoint with autograd-tracked ops, so that it can itself be differentiated."""
    B, T, N = h.shape
    a_eff = _fold_reset(a, keep, B, T)  # (B, T, N)
    # in reversed time r = T-1-t the coefficient multiplying delta_{r-1} is conj(a_{T-r}); r = 0 has none
    coef = torch.cat([torch.zeros_like(a_eff[:, :1]), a_eff.flip(1)[:, :-1]], 1).conj()  # (B, T, N)
    delta = linear_scan(coef, g.flip(1), kernel=kernel).flip(1)  # (B, T, N)
    h_prev = torch.cat([h.new_zeros(B, 1, N) if h0 is None else h0[:, None], h[:, :-1]], 1)  # (B, T, N)
    grad_a_eff = delta * h_prev.conj()  # (B, T, N)
    grad_a = (grad_a_eff if keep is None else grad_a_eff * keep[:, :, None]).sum_to_size(a.shape)
    return grad_a, delta, a_eff[:, 0].conj() * delta[:, 0]
