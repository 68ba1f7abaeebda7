"""The gated ssm's residual block (``gated_ssm.GatedBlock``) as one autograd Function over native kernels.

Why. At the RL² recipe's sizes (a minibatch of 2 envs x 200 steps, H = 64, N = 32) the cost of a block's
torch path beyond its matmuls was per operation: each of its norm, convolution, projection, gate, SiLU, GLU and
residual operations is a dispatch, an autograd node and often a small allocation, forward and backward
(``benchmarks/results/backbone_profile.md`` has the update's phases per backbone). Here the forward is its three
matmuls, the layer norm and four native passes (``conv_*``, ``rglru_*``, ``skip_silu_*``, ``glu_res_*`` in
``_scan.c``) with no graph, and the backward is their adjoints written out: six matmuls, three bias sums, the
norm's backward and four native passes, under one autograd node.

What it computes, with v0 = LayerNorm(x) and, with a convolution, v = Conv(v0) (else v = v0)::

    p = W_proj v + b_proj;  h = rglru(p, c softplus(-lambda), h0, reset)
    y = W_out h + b_out;    a = SiLU(y + skip * v);  m = W_mix a + b_mix;  z = x + GLU(m)

and the state after T: h_T, then the convolution's new buffer. :func:`block_reference` is the same in torch
operations (the gated_ssm reference kernels for the recurrence and the convolution); it is the oracle in tests
and, when a backward is itself differentiated (second-order MAML, ``create_graph=True``), the differentiable
adjoint.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ssm_metarl.models import native


class BlockMeta(NamedTuple):
    """What a block's Function needs beside tensors: the norm's epsilon, N, K (0: no convolution), c."""

    eps: float
    state_dim: int
    conv_width: int
    gate_scale: float


def supported(x: Tensor, s0: Tensor, params: list[Tensor]) -> bool:
    """Whether the fused path takes these: CPU tensors of one float dtype (float32/64), native kernels built."""
    if not native.supports_rglru(x) or s0.dtype != x.dtype or s0.device.type != "cpu":
        return False
    return all(p.dtype == x.dtype and p.device.type == "cpu" for p in params)


def block(
    meta: BlockMeta, x: Tensor, s0: Tensor, reset: Tensor, since: Tensor, keep: Tensor, params: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """x (B, T, H), s0 (B, S), reset (B, T) bool, since (B, T) and keep (B,) int64 (the convolution's
    positions, see ``gated_ssm.conv_positions``; unused without one), params in ``GatedBlock.fused_params``
    order -> z (B, T, H), the state after T (B, S). One node of autograd where grad is needed."""
    if torch.is_grad_enabled() and (
        x.requires_grad or s0.requires_grad or any(p.requires_grad for p in params)
    ):
        z, last = _Block.apply(meta, x, s0, reset, since, keep, *params)
        return z, last
    return _forward(meta, x, s0, reset, since, keep, params)[:2]


def _split(meta: BlockMeta, s0: Tensor) -> tuple[Tensor, Tensor | None]:
    """The state (B, S) -> h0 (B, N), the convolution's buffer (B, K-1, H) or None."""
    N, K = meta.state_dim, meta.conv_width
    if K == 0:
        return s0, None
    return s0[:, :N], s0[:, N:].unflatten(1, (K - 1, -1))


def _forward(
    meta: BlockMeta, x: Tensor, s0: Tensor, reset: Tensor, since: Tensor, keep: Tensor, params: list[Tensor]
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """(z, the state after T, what the backward needs), with no graph."""
    nw, nb, pw, pb, lam, ow, ob, skip, mw, mb = params[:10]
    B, T, H = x.shape
    x_in, x, skip = x, x.contiguous(), skip.contiguous()  # the native passes read rows of stride 1
    v0, mean, rstd = torch.native_layer_norm(x, [H], nw, nb, meta.eps)
    h0, buf = _split(meta, s0)
    h0 = h0.contiguous()
    if buf is not None:
        wt = params[10].t().contiguous()
        v, new_buf = native.conv(v0, buf, wt, params[11], since, keep)
    else:
        wt, v, new_buf = v0.new_empty(0), v0, None
    rows = v.view(B * T, H)
    p = torch.addmm(pb, rows, pw.t()).view(B, T, -1)
    d = meta.gate_scale * F.softplus(-lam)
    h = native.rglru(p, d, reset, h0)  # (B, T, N)
    y = torch.addmm(ob, h.view(B * T, -1), ow.t())  # (B T, H)
    a = native.skip_silu(y, rows, skip)
    m = torch.addmm(mb, a, mw.t())  # (B T, 2H)
    z = native.glu_residual(x.view(B * T, H), m).view(B, T, H)
    last = h[:, -1] if new_buf is None else torch.cat([h[:, -1], new_buf.flatten(1)], dim=1)
    saved = (x_in, mean, rstd, v0, v, p, d, h, y, a, m, h0, wt, s0)  # x as given: the create_graph adjoint
    # differentiates through it
    return z, last.contiguous() if new_buf is not None else last.clone(), saved


class _Block(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, meta: BlockMeta, x: Tensor, s0: Tensor, reset: Tensor, since: Tensor, keep: Tensor, *params: Tensor) -> tuple[Tensor, Tensor]:  # fmt: skip
        # ctx in forward, no setup_context: apply then binds no arguments by inspect.signature (see scan.py)
        z, last, saved = _forward(meta, x, s0, reset, since, keep, list(params))
        ctx.meta = meta
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no zeros to push back)
        ctx.save_for_backward(*saved, reset, since, keep, *params)
        return z, last

    @staticmethod
    def backward(ctx: Any, gz: Tensor | None, glast: Tensor | None) -> tuple[Tensor | None, ...]:
        meta: BlockMeta = ctx.meta
        saved = ctx.saved_tensors
        x, mean, rstd, v0, v, p, d, h, y, a, m, h0, wt, s0, reset, since, keep = saved[:17]
        params = list(saved[17:])
        if torch.is_grad_enabled():  # create_graph=True: the reference's adjoint, itself differentiable
            return (None, *_reference_grads(ctx, meta, x, s0, reset, since, keep, params, gz, glast))
        nw, nb, pw, pb, lam, ow, ob, skip, mw, mb = params[:10]
        skip = skip.contiguous()
        B, T, H = x.shape
        N, K = meta.state_dim, meta.conv_width
        gz = torch.zeros(B, T, H, dtype=x.dtype) if gz is None else gz.contiguous()
        g_rows = gz.view(B * T, H)
        dm = native.glu_residual_backward(m, g_rows)  # (B T, 2H)
        d_mw, d_mb = dm.t().mm(a), dm.sum(0)
        da = dm.mm(mw)  # (B T, H)
        dv = torch.zeros_like(v)
        dy, d_skip = native.skip_silu_backward(y, v, skip, da, dv)  # dv += dy * skip
        h_rows = h.view(B * T, N)
        d_ow, d_ob = dy.t().mm(h_rows), dy.sum(0)
        dh = dy.mm(ow).view(B, T, N)
        gnb = None
        if glast is not None:
            dh[:, -1] += glast[:, :N]
            gnb = glast[:, N:].unflatten(1, (K - 1, H)).contiguous() if K else None
        dp, dd, dh0 = native.rglru_backward(p, d, reset, h0, h, dh, True)
        d_lam = dd * (-meta.gate_scale) * torch.sigmoid(-lam)  # d = c softplus(-lambda)
        dp_rows = dp.view(B * T, 3 * N)
        v_rows = v.view(B * T, H)
        d_pw, d_pb = dp_rows.t().mm(v_rows), dp_rows.sum(0)
        dv.view(B * T, H).addmm_(dp_rows, pw)
        grads: list[Tensor] = []
        dh0 = cast(Tensor, dh0)  # asked for (need_h0 True)
        _, buf = _split(meta, s0)
        if buf is not None:
            dv0, dbuf, dwt, dcb = native.conv_backward(v0, buf.contiguous(), wt, since, keep, dv, gnb)
            ds0 = torch.cat([dh0, dbuf.flatten(1)], dim=1)
            grads = [dwt.t(), dcb]
        else:
            dv0, ds0 = dv, dh0
        dx, d_nw, d_nb = torch.ops.aten.native_layer_norm_backward(
            dv0, x, [H], mean, rstd, nw, nb, [True, True, True]
        )
        dx = dx + gz
        out = [d_nw, d_nb, d_pw, d_pb, d_lam, d_ow, d_ob, d_skip, d_mw, d_mb, *grads][: len(params)]
        need = ctx.needs_input_grad
        return (
            None,
            dx if need[1] else None,
            ds0 if need[2] else None,
            None,
            None,
            None,
            *(g if need[6 + i] else None for i, g in enumerate(out)),
        )


def block_reference(
    meta: BlockMeta, x: Tensor, s0: Tensor, reset: Tensor, since: Tensor, keep: Tensor, params: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """:func:`block` in torch operations (differentiable to any order): the oracle, and the create_graph
    adjoint."""
    from ssm_metarl.models.gated_ssm import causal_conv_reference, rglru_scan_reference

    nw, nb, pw, pb, lam, ow, ob, skip, mw, mb = params[:10]
    H = x.shape[-1]
    v = F.layer_norm(x, (H,), nw, nb, meta.eps)
    h0, buf = _split(meta, s0)
    new_buf = None
    if buf is not None:
        v, new_buf = causal_conv_reference(v, buf, params[10].t(), params[11], since, keep)
    h = rglru_scan_reference(F.linear(v, pw, pb), meta.gate_scale * F.softplus(-lam), h0, reset)
    a = F.silu(torch.addcmul(F.linear(h, ow, ob), v, skip))
    z = x + F.glu(F.linear(a, mw, mb), dim=-1)
    last = h[:, -1] if new_buf is None else torch.cat([h[:, -1], new_buf.flatten(1)], dim=1)
    return z, last


def _reference_grads(
    ctx: Any,
    meta: BlockMeta,
    x: Tensor,
    s0: Tensor,
    reset: Tensor,
    since: Tensor,
    keep: Tensor,
    params: list[Tensor],
    gz: Tensor | None,
    glast: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """The gradients of (x, s0, reset, since, keep, *params) by the reference, with create_graph."""
    with torch.enable_grad():
        inputs = [x, s0, *params]
        leaves = [t if t.requires_grad else t.detach().requires_grad_() for t in inputs]
        z, last = block_reference(meta, leaves[0], leaves[1], reset, since, keep, leaves[2:])
        outs, grads_out = [], []
        for o, g in ((z, gz), (last, glast)):
            if g is not None:
                outs.append(o)
                grads_out.append(g)
        grads = torch.autograd.grad(outs, leaves, grads_out, create_graph=True, allow_unused=True)
    need = ctx.needs_input_grad
    dx, ds0, *dp = grads
    return (
        dx if need[1] else None,
        ds0 if need[2] else None,
        None,
        None,
        None,
        *(g if need[6 + i] else None for i, g in enumerate(dp)),
    )


__all__ = ["BlockMeta", "block", "block_reference", "supported"]
