"""Input-gated diagonal SSM: Griffin's real-gated linear recurrent unit (RG-LRU; De et al. 2024), reset-aware.

Shape letters: B batch, T time, D input features, H model width, N state size, L layers.

The LRU's recurrence (``ssm.py``) is linear and time-invariant: how fast it forgets cannot depend on what
it sees, so it cannot "store this observation, ignore those". The RG-LRU gates the recurrence on the input,
per channel, and keeps it diagonal, so ``linear_scan`` still runs it in one pass with per-step coefficients::

    u_t = W_u v_t                      (N)   the candidate input, v_t = LayerNorm(x_t) (H)
    r_t = sigmoid(W_r v_t + b_r)       (N)   recurrence gate
    i_t = sigmoid(W_i v_t + b_i)       (N)   input gate
    a_t = exp(-c * r_t * softplus(-lambda))  = sigmoid(lambda) ** (c * r_t),  in (0, 1)
    h_t = a_t * (1 - reset_t) * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)         a reset is a zero coefficient
    y_t = W_y h_t + d * v_t            (H)

With ``conv_width`` K > 1, v_t is first mixed with the K - 1 inputs before it by a causal depthwise
convolution (Griffin's temporal Conv1D, width 4; Mamba's short convolution): ``v_t <- sum_k w_k * v_{t-k} +
bias``, per feature, taps before an episode's start reading zero. A one-step difference (where a reward is
going) is then one set of taps instead of a combination of decays. The convolution starts as the identity (w_0
= 1, the other taps 0), so a new model computes what it computes without one. The state of a layer then
carries the last K - 1 inputs beside h: (B, N + (K - 1) H).

With r_t near 0 the channel holds its state (a_t near 1); with r_t near 1 it decays at its fastest rate
sigmoid(lambda)^c. ``sqrt(1 - a_t^2)`` keeps the state's scale whatever the gate does. lambda is initialised
so that sigmoid(lambda)^c is uniform in [0.9, 0.999], as in Griffin. Blocks are pre-norm and residual with a
GLU, like the LRU's::

    x <- x + GLU(SiLU(RG-LRU(LayerNorm(x))))      (with a convolution: RG-LRU(Conv(LayerNorm(x))))

``GatedSSM``: x (B, T, D) -> Linear encoder (B, T, H) -> L blocks -> LayerNorm -> y (B, T, H); its state is a
tuple of L tensors (B, S), S = N (+ (K - 1) H with a convolution). ``step`` computes what ``forward``
computes for T = 1 (tested); without grad, on the CPU, it is one native call for the whole backbone
(``gated_step_*`` in ``_scan.c``, the convolution included).

On CPU tensors a whole block, forward and backward, is one autograd node over native kernels
(:mod:`ssm_metarl.models.gated_fused`; this module's torch path is its oracle and runs elsewhere). Within the
torch path, the gate (a_t, the input's scale and gates) and the scan are one native call (``rglru_scan``,
the ``rglru_*`` kernels of ``_scan.c``) and their adjoint one more: the gate is a dozen elementwise
operations, forward and backward, which at RL²'s sizes cost more than the scan itself. ``gate`` +
``linear_scan`` (``rglru_scan_reference``) is the same computation in torch operations: the path on other
devices and without a C compiler, the oracle in tests, and the double backward.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models import gated_fused, native
from ssm_metarl.models.base import State, check_inputs, param_like
from ssm_metarl.models.scan import linear_scan

GATE_SCALE = 8.0
"""c in a_t = sigmoid(lambda) ** (c * r_t) (Griffin's constant)."""
NATIVE_STEP_MAX_BATCH = 64
"""The native acting step runs up to this many rows, torch ops above: ``benchmarks/results/step_latency.md``
has native / torch ops at 0.88-0.94 for B = 64 and 1.20-1.23 for B = 128 (one and two layers)."""


class RGLRULayer(nn.Module):
    """One real-gated linear recurrent unit: H inputs, N diagonal state channels, H outputs."""

    def __init__(self, hidden_dim: int, state_dim: int, a_min: float = 0.9, a_max: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < a_min < a_max < 1.0:
            raise ValueError(f"need 0 < a_min < a_max < 1, got {a_min}, {a_max}")
        H, N = hidden_dim, state_dim
        self.state_dim = N
        self.proj = nn.Linear(H, 3 * N)  # [W_u; W_r; W_i], biases of the gates (u's bias is harmless)
        self.out = nn.Linear(N, H)
        self.skip = nn.Parameter(torch.zeros(H))
        # a^c uniform in [a_min, a_max]  ->  a = (a^c)^(1/c), lambda = logit(a)
        a_c = torch.rand(N) * (a_max - a_min) + a_min
        a = a_c ** (1.0 / GATE_SCALE)
        self.lam = nn.Parameter(torch.log(a) - torch.log1p(-a))  # (N,)
        nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(H))
        nn.init.zeros_(self.proj.bias)

    def decay(self) -> Tensor:
        """d = c * softplus(-lambda) (N,), > 0: a_t = exp(-sigmoid(r_t) * d)."""
        return GATE_SCALE * F.softplus(-self.lam)

    def coefficients(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """v (..., H) -> a (..., N) in (0, 1), b (..., N): the recurrence's coefficient and input."""
        return gate(self.proj(v), self.decay())

    def forward(self, v: Tensor, h0: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, T, H), h0 (B, N), reset (B, T) -> y (B, T, H), h (B, T, N)."""
        h = rglru_scan(self.proj(v), self.decay(), h0, reset)  # (B, T, N)
        return torch.addcmul(self.out(h), v, self.skip), h

    def step(self, v: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, H), h (B, N), reset (B, 1) bool -> y (B, H), h (B, N)."""
        p, d = self.proj(v), self.decay()  # (B, 3N), (N,)
        if not torch.is_grad_enabled() and _fused(p, d, h, reset):
            h = native.rglru(p[:, None], d, reset, h)[:, 0]  # (B, N)
        else:
            a, b = gate(p, d)  # (B, N) each
            h = torch.addcmul(b, a, h.masked_fill(reset, 0.0))  # (B, N)
        return torch.addcmul(self.out(h), v, self.skip), h


def gate(p: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """The projection p (..., 3N) = [u; r; i] and decay rates d (N,) -> a (..., N) in (0, 1), b (..., N)."""
    u, r, i = p.chunk(3, dim=-1)  # (..., N) each
    log_a = -torch.sigmoid(r) * d  # (..., N), < 0
    a = torch.exp(log_a)
    scale = torch.sqrt(-torch.expm1(2.0 * log_a))  # sqrt(1 - a^2), exact near a = 1
    return a, scale * torch.sigmoid(i) * u


def rglru_scan_reference(p: Tensor, d: Tensor, h0: Tensor | None, reset: Tensor | None) -> Tensor:
    """The gated recurrence from its projection, with autograd ops: :func:`gate`, then ``linear_scan``.
    p (B, T, 3N), d (N,), h0 (B, N) or None, reset (B, T) bool or None -> h (B, T, N)."""
    a, b = gate(p, d)  # (B, T, N) each
    return linear_scan(a, b, h0, reset)


def rglru_scan(p: Tensor, d: Tensor, h0: Tensor | None, reset: Tensor | None) -> Tensor:
    """:func:`rglru_scan_reference`'s values from one native call forward and one backward (``rglru_*`` in
    ``_scan.c``; tested against the reference) where the native kernels run (real CPU tensors of one dtype),
    the reference elsewhere. At RL²'s sizes the gate's dozen elementwise operations, forward and backward,
    cost more than the scan itself (``benchmarks/results/backbone_profile.md``). When the backward is itself
    differentiated (second-order MAML), it is the reference's, so double backward works too."""
    if not _fused(p, d, h0, reset):
        return rglru_scan_reference(p, d, h0, reset)  # also where shapes are wrong: it says how
    if torch.is_grad_enabled() and (
        p.requires_grad or d.requires_grad or (h0 is not None and h0.requires_grad)
    ):
        return cast(Tensor, _RGLRUScan.apply(p, d, h0, reset))
    return native.rglru(p, d, reset, h0)


def _fused(p: Tensor, d: Tensor, h0: Tensor | None, reset: Tensor | None) -> bool:
    """Whether the native kernels take these: p (B, T, 3N) (or (B, 3N) for a step) on the CPU in float32/64,
    d (N,), h0 (B, N) and reset (B, T) (or (B, 1)) beside it, of p's dtype."""
    if not native.supports_rglru(p) or p.shape[-1] % 3 or d.dtype != p.dtype or d.device.type != "cpu":
        return False
    B, N = p.shape[0], p.shape[-1] // 3
    T = p.shape[1] if p.dim() == 3 else 1
    if d.shape != (N,) or (reset is not None and (reset.shape != (B, T) or reset.device.type != "cpu")):
        return False
    return h0 is None or (h0.dtype == p.dtype and h0.shape == (B, N) and h0.device.type == "cpu")


class _RGLRUScan(torch.autograd.Function):
    """h = rglru(p, d, h0, reset) with the native adjoint; the reference's, differentiably, under create_graph."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, d: Tensor, h0: Tensor | None, reset: Tensor | None) -> Tensor:
        # ctx in forward, no setup_context: apply then binds no arguments by inspect.signature (see scan.py)
        output = native.rglru(p, d, reset, h0)
        ctx.has_h0, ctx.has_reset = h0 is not None, reset is not None
        ctx.save_for_backward(p, d, h0, reset, output)
        return output

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        p, d, h0, reset, h = ctx.saved_tensors
        h0 = h0 if ctx.has_h0 else None
        reset = reset if ctx.has_reset else None
        need_p, need_d, need_h0 = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: the reference's adjoint, itself differentiable
            inputs = [t for t in (p, d, h0) if t is not None and t.requires_grad]
            with torch.enable_grad():
                grads = torch.autograd.grad(
                    rglru_scan_reference(p, d, h0, reset), inputs, g, create_graph=True, allow_unused=True
                )
            by_id = {id(t): gr for t, gr in zip(inputs, grads)}
            return by_id.get(id(p)), by_id.get(id(d)), None if h0 is None else by_id.get(id(h0)), None
        dp, dd, dh0 = native.rglru_backward(p, d, reset, h0, h, g, need_h0)
        return dp if need_p else None, dd if need_d else None, dh0 if need_h0 else None, None


class CausalConv(nn.Module):
    """Depthwise causal convolution over time, reset-aware: out_t = sum_k w[:, K-1-k] * v_{t-k} + bias (H
    features, K taps), where an input from before the episode's start (a reset at or before t, after t - k)
    reads zero. Its state is the last K - 1 inputs (B, K - 1, H), those before the last reset zeroed."""

    def __init__(self, hidden_dim: int, width: int) -> None:
        super().__init__()
        if width < 2:
            raise ValueError(f"a causal convolution needs width >= 2, got {width}")
        self.width = width
        weight = torch.zeros(hidden_dim, width)
        weight[:, -1] = 1.0  # the identity: the current input, nothing from before
        self.weight = nn.Parameter(weight)  # (H, K), the last column the current input's tap
        self.bias = nn.Parameter(torch.zeros(hidden_dim))

    def forward(self, v: Tensor, buf: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, T, H), buf (B, K-1, H), reset (B, T) bool -> out (B, T, H), buf (B, K-1, H).

        On CPU tensors one native call forward and one backward (``conv_*`` in ``_scan.c``, tested against
        :func:`causal_conv_reference`); elsewhere, and for a differentiated backward, the reference."""
        K, (B, T, H) = self.width, v.shape
        if buf.shape != (B, K - 1, H) or reset.shape != (B, T):
            raise ValueError(
                f"CausalConv of {K} taps over v {tuple(v.shape)} needs buf (B, K-1, H) = {(B, K - 1, H)} and "
                f"reset (B, T) = {(B, T)}, got {tuple(buf.shape)} and {tuple(reset.shape)} (a state of another "
                "model's width?)"
            )
        since, keep_from = conv_positions(reset, K)
        wt = self.weight.t()  # (K, H)
        native_ok = all(x.device.type == "cpu" and x.dtype == v.dtype for x in (buf, self.weight, self.bias))
        if native.supports_conv(v) and native_ok:  # else the reference, which raises where they mismatch
            if torch.is_grad_enabled() and any(x.requires_grad for x in (v, buf, self.weight, self.bias)):
                out, new_buf = _CausalConv.apply(v, buf, wt, self.bias, since, keep_from)
                return out, new_buf
            return native.conv(v, buf, wt, self.bias, since, keep_from)
        return causal_conv_reference(v, buf, wt, self.bias, since, keep_from)

    def step(self, v: Tensor, buf: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, H), buf (B, K-1, H), reset (B, 1) bool -> out (B, H), buf (B, K-1, H)."""
        x = torch.cat([buf.masked_fill(reset[..., None], 0.0), v[:, None]], dim=1)  # (B, K, H)
        return torch.einsum("bkh,hk->bh", x, self.weight) + self.bias, x[:, 1:]


def conv_positions(reset: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """reset (B, T) -> since (B, T), the steps since each row's episode started (K or more where no reset in
    this segment precedes: the buffer is then all valid), and keep_from (B,), the time of each row's last reset
    (-K where none): what a K-tap convolution needs to know where episodes start."""
    T = reset.shape[1]
    t = torch.arange(T, device=reset.device)
    last = torch.where(reset.bool(), t, torch.full_like(t, -width)).cummax(dim=1).values  # (B, T)
    return t - last, last[:, -1].contiguous()


def causal_conv_reference(
    v: Tensor, buf: Tensor, wt: Tensor, bias: Tensor, since: Tensor, keep_from: Tensor
) -> tuple[Tensor, Tensor]:
    """:class:`CausalConv` in torch operations, one shifted slice per tap: v (B, T, H), buf (B, K-1, H), wt (K,
    H) the taps (row K-1 the current input's), bias (H,), since (B, T) the steps since each row's episode
    started, keep_from (B,) the time of each row's last reset -> out (B, T, H), the new buffer (B, K-1, H)."""
    K, T = wt.shape[0], v.shape[1]
    x = torch.cat([buf, v], dim=1)  # (B, K-1+T, H); x[:, m] is time m - (K - 1)
    out = torch.addcmul(bias, v, wt[K - 1])
    for k in range(1, K):  # lag k reads the same episode only k or more steps after its start
        lagged = x[:, K - 1 - k : K - 1 - k + T].masked_fill((since < k)[..., None], 0.0)  # not 0 * NaN
        out = out + lagged * wt[K - 1 - k]
    s = torch.arange(T - K + 1, T, device=v.device)  # the times the new buffer holds
    stale = s < keep_from[:, None]  # (B, K-1): before the segment's last reset
    return out, x[:, T:].masked_fill(stale[..., None], 0.0)


class _CausalConv(torch.autograd.Function):
    """:func:`causal_conv_reference` with the native forward and adjoint; the reference's adjoint,
    differentiably, under create_graph (second-order MAML)."""

    @staticmethod
    def forward(
        ctx: Any, v: Tensor, buf: Tensor, wt: Tensor, bias: Tensor, since: Tensor, keep_from: Tensor
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(v, buf, wt, bias, since, keep_from)
        return native.conv(v, buf, wt, bias, since, keep_from)

    @staticmethod
    def backward(ctx: Any, g: Tensor, gnb: Tensor | None) -> tuple[Tensor | None, ...]:
        v, buf, wt, bias, since, keep_from = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the reference's adjoint, itself differentiable
            inputs = [v, buf, wt, bias]
            with torch.enable_grad():  # inputs that need no grad become leaves so that grad() accepts them
                leaves = [t if t.requires_grad else t.detach().requires_grad_() for t in inputs]
                out, nb = causal_conv_reference(leaves[0], leaves[1], leaves[2], leaves[3], since, keep_from)
                outs, grads_out = [out], [g]
                if gnb is not None:
                    outs.append(nb)
                    grads_out.append(gnb)
                grads = torch.autograd.grad(outs, leaves, grads_out, create_graph=True, allow_unused=True)
            return (*grads, None, None)
        dv, dbuf, dwt, dbias = native.conv_backward(v, buf, wt, since, keep_from, g, gnb)
        need = ctx.needs_input_grad
        return (
            dv if need[0] else None,
            dbuf if need[1] else None,
            dwt if need[2] else None,
            dbias if need[3] else None,
            None,
            None,
        )


class GatedBlock(nn.Module):
    """Pre-norm residual block: x <- x + GLU(SiLU(RG-LRU(Conv(LayerNorm(x))))), the convolution only with
    ``conv_width`` > 1. Its state is h (B, N), with the convolution's buffer flattened after it."""

    def __init__(self, hidden_dim: int, state_dim: int, a_min: float = 0.9, conv_width: int = 0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.conv = CausalConv(hidden_dim, conv_width) if conv_width > 1 else None
        self.rnn = RGLRULayer(hidden_dim, state_dim, a_min=a_min)
        self.mix = nn.Linear(hidden_dim, 2 * hidden_dim)

    def fused_params(self) -> list[Tensor]:
        """The parameters in ``gated_fused.block``'s order."""
        rnn = self.rnn
        params = [self.norm.weight, self.norm.bias, rnn.proj.weight, rnn.proj.bias, rnn.lam, rnn.out.weight]
        params += [rnn.out.bias, rnn.skip, self.mix.weight, self.mix.bias]
        return params if self.conv is None else [*params, self.conv.weight, self.conv.bias]

    def forward(
        self, x: Tensor, s0: Tensor, reset: Tensor, positions: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """x (B, T, H), s0 (B, S), reset (B, T) bool, positions the convolution's (:func:`conv_positions` of
        reset, computed here when None) -> x (B, T, H), s (B, S) the state after T.

        On CPU tensors the whole block is one autograd node over native kernels (:mod:`gated_fused`, tested
        against this method's torch path, which runs elsewhere)."""
        params = self.fused_params()
        hooked = native.forward_hooked(self.modules())  # the torch path runs them
        fused = not hooked and reset.shape == x.shape[:2] and reset.device.type == "cpu"
        if fused and gated_fused.supported(x, s0, params):
            if s0.shape != (x.shape[0], self.state_size()):
                raise ValueError(
                    f"a gated block has states of width {self.state_size()} (N, plus (K - 1) H with a K-tap "
                    f"convolution) for {x.shape[0]} rows, got {tuple(s0.shape)} (a state of another model?)"
                )
            K = self.conv.width if self.conv is not None else 0
            if positions is None or not K:
                positions = conv_positions(reset, K) if K else (reset, reset)
            elif positions[0].shape != reset.shape or positions[0].dtype != torch.int64:
                raise ValueError(
                    "positions must be conv_positions(reset, K): (B, T) and (B,) int64 on the CPU"
                )
            meta = gated_fused.BlockMeta(self.norm.eps, self.rnn.state_dim, K, GATE_SCALE)
            return gated_fused.block(meta, x, s0, reset.bool(), *positions, params)
        v, N = self.norm(x), self.rnn.state_dim
        if self.conv is None:
            y, h = self.rnn(v, s0, reset)
            return x + F.glu(self.mix(F.silu(y)), dim=-1), h[:, -1].clone()
        v, buf = self.conv(v, self._buffer(s0), reset)
        y, h = self.rnn(v, s0[:, :N], reset)
        return x + F.glu(self.mix(F.silu(y)), dim=-1), torch.cat([h[:, -1], buf.flatten(1)], dim=1)

    def step(self, x: Tensor, s: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, H), s (B, S), reset (B, 1) -> x (B, H), s (B, S)."""
        v, N = self.norm(x), self.rnn.state_dim
        if self.conv is None:
            y, h = self.rnn.step(v, s, reset)
            return x + F.glu(self.mix(F.silu(y)), dim=-1), h
        v, buf = self.conv.step(v, self._buffer(s), reset)
        y, h = self.rnn.step(v, s[:, :N], reset)
        return x + F.glu(self.mix(F.silu(y)), dim=-1), torch.cat([h, buf.flatten(1)], dim=1)

    def _buffer(self, s: Tensor) -> Tensor:
        """The convolution's buffer (B, K-1, H) from a state (B, S); raises where S is not this block's."""
        assert self.conv is not None
        if s.shape[-1] != self.state_size():
            raise ValueError(
                f"a gated block with a {self.conv.width}-tap convolution has states of width {self.state_size()} "
                f"(N + (K - 1) H), got {s.shape[-1]} (a state of another model?)"
            )
        return s[:, self.rnn.state_dim :].unflatten(1, (self.conv.width - 1, -1))

    def state_size(self) -> int:
        """S: N, plus (K - 1) H with a convolution."""
        conv = 0 if self.conv is None else (self.conv.width - 1) * self.norm.normalized_shape[0]
        return self.rnn.state_dim + conv


class GatedSSM(nn.Module):
    """Stacked input-gated SSM keeping the SequenceModel contract (see base.py and the module docstring).

    Args:
        input_dim: D, features per time step.
        hidden_dim: H, model width and output width.
        state_dim: N, diagonal state size per layer.
        num_layers: L, number of residual blocks.
        a_min: the fastest decay of the ring initialisation, sigmoid(lambda)^c uniform in [a_min, 0.999].
        conv_width: K, taps of the causal convolution before each recurrence (0 or 1: none).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 64,
        state_dim: int = 64,
        num_layers: int = 1,
        a_min: float = 0.9,
        conv_width: int = 0,
    ) -> None:
        super().__init__()
        if conv_width < 0:
            raise ValueError(f"conv_width must be >= 0, got {conv_width}")
        self.input_dim, self.output_dim, self.state_dim = input_dim, hidden_dim, state_dim
        self.conv_width = conv_width
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            GatedBlock(hidden_dim, state_dim, a_min, conv_width) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self._native: tuple[native.ParamWatch, native.ModelStep] | None = None

    native_step_max_batch: int = NATIVE_STEP_MAX_BATCH
    """``step`` without grad runs natively up to this many rows (set 0 on a model for its torch operations)."""

    def _blocks(self) -> list[GatedBlock]:
        return cast(list[GatedBlock], list(self.blocks))

    def initial_state(self, batch_size: int) -> State:
        """L zero states (B, S): S = N, plus (K - 1) H with a convolution; device and dtype follow the
        parameters."""
        p = param_like(self)
        return tuple(p.new_zeros(batch_size, b.state_size()) for b in self._blocks())

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state L x (B, S), reset (B, T) bool -> y (B, T, H), state L x (B, S)."""
        check_inputs(x, reset, self.input_dim)
        z = self.encoder(x)  # (B, T, H)
        new_state = []
        positions = (
            conv_positions(reset, self.conv_width) if self.conv_width > 1 else None
        )  # once, all blocks
        for block, s0 in zip(self._blocks(), state):
            z, s = block(z, s0, reset, positions)  # (B, T, H), (B, S)
            new_state.append(s)
        return self.norm(z), tuple(new_state)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state L x (B, S), reset (B,) bool -> y (B, H), state L x (B, S).

        Without grad, on the CPU, the whole step is one native call (``gated_step_*`` in ``_scan.c``, reading
        the parameters where they are): acting costs one dispatch instead of about 15 per layer, which is
        most of a step's cost at a few envs. With grad, or elsewhere, the blocks' torch operations."""
        if not torch.is_grad_enabled() and x.shape[0] <= self.native_step_max_batch and state:
            stepper = self._native_step(x)
            if stepper is not None and stepper.accepts(x, reset, tuple(state)):
                return stepper(x, reset, tuple(state))
        z = self.encoder(x)  # (B, H)
        r = reset.bool().view(-1, 1)  # (B, 1)
        new_state = []
        for block, h in zip(self._blocks(), state):
            z, h = block.step(z, h, r)
            new_state.append(h)
        return self.norm(z), tuple(new_state)

    def _native_step(self, x: Tensor) -> native.ModelStep | None:
        """The native step over the parameters as they are now, or None where it cannot run (device, dtype,
        layout, a forward hook on a submodule, which it would skip). Built once and kept while
        :class:`native.ParamWatch` sees the same submodules, every parameter slot holding the same tensor at the
        same address, and no hook: the check is far cheaper than the rebuild (``optimizer_speed.md``: ``act``
        with the step kept against rebuilt per call). The kernel reads the parameters' memory, so in-place
        updates (an optimiser step) need no rebuild."""
        if not native.supports_rglru(x):
            return None
        cached = self._native
        if cached is not None and cached[1].dtype == x.dtype and cached[0].unchanged():
            return cached[1]
        watch = native.ParamWatch(self)
        if watch.hooked():
            return None
        weights = [self.encoder.weight, self.encoder.bias]
        for b in self._blocks():
            rnn = b.rnn
            weights += [b.norm.weight, b.norm.bias, rnn.proj.weight, rnn.proj.bias, rnn.lam]
            weights += [rnn.out.weight, rnn.out.bias, rnn.skip, b.mix.weight, b.mix.bias]
            if b.conv is not None:
                weights += [b.conv.weight, b.conv.bias]
        weights += [self.norm.weight, self.norm.bias]
        if not all(w.dtype == x.dtype and w.device.type == "cpu" and w.is_contiguous() for w in weights):
            return None
        eps = [b.norm.eps for b in self._blocks()] + [self.norm.eps]
        K = self.conv_width if self.conv_width > 1 else 0
        width = self._blocks()[0].state_size() if self.blocks else self.state_dim
        stepper = native.ModelStep("gated", weights, eps, [GATE_SCALE, K], self.state_dim, x.dtype, width)
        self._native = (watch, stepper)
        return stepper

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles never carry the native step: it holds this module's parameters' addresses."""
        return {**super().__getstate__(), "_native": None}


__all__ = [
    "GATE_SCALE",
    "CausalConv",
    "GatedBlock",
    "GatedSSM",
    "RGLRULayer",
    "gate",
    "rglru_scan",
    "rglru_scan_reference",
]
