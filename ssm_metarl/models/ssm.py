"""Structured diagonal state-space model: LRU / S5 parameterisation, reset-aware, batch first.

Shape letters: B batch, T time, D input features, H model width, N state size, L layers.

One layer (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences", the LRU)
keeps a diagonal state h_t in C^N (or R^N for the real variant) and reads an input x_t in R^H:

    lambda = exp(-exp(nu_log) + i * exp(theta_log))   complex variant: |lambda| < 1 for any parameters
    lambda = exp(-exp(nu_log))                        real variant: lambda in (0, 1), cheaper on a CPU
    gamma  = exp(gamma_log)                           initialised to sqrt(1 - |lambda|^2)
    h_t    = lambda * (1 - reset_t) * h_{t-1} + gamma * (B x_t)        a reset is a zero coefficient
    y_t    = Re(C h_t) + D * x_t

The recurrence is the only sequential part; ``forward`` runs it with ``linear_scan`` (one custom
autograd function for all T steps), ``step`` runs one multiply-add per layer. lambda starts on a ring:
|lambda|^2 uniform in [r_min^2, r_max^2] (so |lambda| in [r_min, r_max], memory from about 1/(1-r_min)
to 1/(1-r_max) steps) and phase uniform in [0, max_phase]. B is (N, H), C is (H, N), D is (H,).

A block is pre-norm and residual, as in the LRU and S5 papers (which use GELU where we use SiLU, as
Mamba does: on a CPU exact GELU is costly per single-step call and its tanh form on whole sequences, so
SiLU gives the cheapest training plus acting; no results file holds these timings):

    x <- x + GLU(SiLU(LRU(LayerNorm(x))))      GLU(v) = (W_a v) * sigmoid(W_b v)   (glu=True)
    x <- x + W(SiLU(LRU(LayerNorm(x))))                                              (glu=False)

``SSM``: x (B, T, D) -> Linear encoder (B, T, H) -> L blocks -> LayerNorm -> y (B, T, H). Its state is a
tuple of L tensors (B, N), one per layer, complex for the complex variant.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models import native
from ssm_metarl.models.base import State, check_inputs, param_like
from ssm_metarl.models.scan import linear_scan

# exp(nu_log) is kept in [1e-6, 30]: |lambda| <= exp(-1e-6) < 1 even in float32, and no inf/nan gradients;
# the phase exp(theta_log) is kept below 1e3 radians (larger phases only overflow: cos(inf) is nan)
NU_LOG_MIN, NU_LOG_MAX = math.log(1e-6), math.log(30.0)
THETA_LOG_MAX = math.log(1e3)
# The native acting step (one C call for the whole backbone) runs up to this many rows; above it torch's
# matmuls win: benchmarks/results/step_latency.md has native / torch ops at 0.83-0.91 for B = 32 and
# 1.06-1.16 for B = 64 (every ssm variant, one and two layers).
NATIVE_STEP_MAX_BATCH = 32


class LRULayer(nn.Module):
    """Linear recurrent unit: diagonal lambda, normalised input projection, real readout, skip."""

    def __init__(
        self,
        hidden_dim: int,
        state_dim: int,
        complex: bool = False,
        r_min: float = 0.5,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        if not 0.0 <= r_min < r_max < 1.0:
            raise ValueError(f"need 0 <= r_min < r_max < 1, got r_min={r_min}, r_max={r_max}")
        H, N = hidden_dim, state_dim
        self.hidden_dim, self.state_dim, self.complex = H, N, complex
        # ring initialisation: |lambda|^2 uniform in [r_min^2, r_max^2], phase uniform in [0, max_phase]
        mag_sq = torch.rand(N) * (r_max**2 - r_min**2) + r_min**2  # (N,)
        nu = -0.5 * torch.log(mag_sq.clamp_min(1e-12))  # (N,), |lambda| = exp(-nu)
        self.nu_log = nn.Parameter(torch.log(nu))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1.0 - mag_sq)))  # (N,)
        if complex:
            phase = (torch.rand(N) * max_phase).clamp_min(1e-6)  # (N,)
            self.theta_log = nn.Parameter(torch.log(phase))
            self.B_re = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
            self.B_im = nn.Parameter(torch.randn(N, H) / math.sqrt(2 * H))
            self.C_re = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
            self.C_im = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        else:
            self.B = nn.Parameter(torch.randn(N, H) / math.sqrt(H))
            self.C = nn.Parameter(torch.randn(H, N) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(H))

    def lam(self) -> Tensor:
        """The diagonal recurrence coefficient lambda: (N,), complex or in (0, 1)."""
        mag = torch.exp(-torch.exp(self.nu_log.clamp(NU_LOG_MIN, NU_LOG_MAX)))  # (N,)
        if not self.complex:
            return mag
        return torch.polar(mag, torch.exp(self.theta_log.clamp(max=THETA_LOG_MAX)))  # (N,) complex

    def weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """(lambda (N,), W_in (N or 2N, H), W_out (H, N or 2N)) in the layout the matmuls use.

        Complex variant: W_in rows interleave (Re, Im) of gamma * B so that ``x @ W_in.T`` viewed as
        (..., N, 2) is the complex gamma * B x; W_out columns interleave (C_re, -C_im) so that the real
        view of h (..., 2N) times W_out.T is Re(C h).
        """
        gamma = torch.exp(self.gamma_log)[:, None]  # (N, 1)
        if self.complex:
            w_in = (gamma[:, None] * torch.stack([self.B_re, self.B_im], 1)).flatten(0, 1)  # (2N, H)
            w_out = torch.stack([self.C_re, -self.C_im], 2).flatten(1, 2)  # (H, 2N)
        else:
            w_in, w_out = gamma * self.B, self.C  # (N, H), (H, N)
        return self.lam(), w_in, w_out

    def forward(self, x: Tensor, h0: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, H), h0 (B, N), reset (B, T) -> y (B, T, H), h (B, T, N)."""
        lam, w_in, w_out = self.weights()
        u = F.linear(x, w_in)  # (B, T, N) or (B, T, 2N)
        if self.complex:
            u = torch.view_as_complex(u.unflatten(-1, (self.state_dim, 2)))  # (B, T, N) complex
        h = linear_scan(lam, u, h0, reset)  # (B, T, N)
        h_flat = torch.view_as_real(h).flatten(-2) if self.complex else h  # (B, T, 2N) or (B, T, N)
        y = torch.addcmul(F.linear(h_flat, w_out), x, self.D)  # (B, T, H)
        return y, h


class SSMBlock(nn.Module):
    """Pre-norm residual block: x <- x + GLU(SiLU(LRU(LayerNorm(x)))) (or a Linear instead of the GLU)."""

    def __init__(self, hidden_dim: int, state_dim: int, glu: bool = True, **lru_kwargs: Any) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.lru = LRULayer(hidden_dim, state_dim, **lru_kwargs)
        self.glu = glu
        self.out = nn.Linear(hidden_dim, 2 * hidden_dim if glu else hidden_dim)

    def mix(self, y: Tensor) -> Tensor:
        """The position-wise part after the recurrence: (..., H) -> (..., H)."""
        v = self.out(F.silu(y))  # (..., 2H) or (..., H)
        return F.glu(v, dim=-1) if self.glu else v

    def forward(self, x: Tensor, h0: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, H), h0 (B, N), reset (B, T) -> x (B, T, H), h (B, T, N)."""
        y, h = self.lru(self.norm(x), h0, reset)  # (B, T, H), (B, T, N)
        return x + self.mix(y), h


class SSM(nn.Module):
    """Stacked structured-SSM sequence model keeping the SequenceModel contract (see base.py).

    Args:
        input_dim: D, features per time step.
        hidden_dim: H, model width and output width.
        state_dim: N, diagonal state size per layer.
        num_layers: L, number of residual SSM blocks.
        complex: complex diagonal state (rotating modes) instead of the cheaper real one.
        r_min: inner radius of the ring initialisation of |lambda| (memory of roughly 1/(1-r) steps).
        r_max: outer radius of that ring.
        max_phase: initial phases of lambda are uniform in [0, max_phase] (complex variant).
        glu: GLU after each recurrence (else one Linear).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 64,
        state_dim: int = 64,
        num_layers: int = 2,
        complex: bool = False,
        r_min: float = 0.5,
        r_max: float = 0.999,
        max_phase: float = 6.283,
        glu: bool = True,
    ) -> None:
        super().__init__()
        self.input_dim, self.output_dim = input_dim, hidden_dim
        self.state_dim, self.complex = state_dim, complex
        self.encoder = nn.Linear(input_dim, hidden_dim)
        lru_kwargs = {"complex": complex, "r_min": r_min, "r_max": r_max, "max_phase": max_phase}
        self.blocks = nn.ModuleList(
            SSMBlock(hidden_dim, state_dim, glu=glu, **lru_kwargs) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self._plan: _Plan | None = None
        self._native: tuple[_Plan, native.ModelStep] | None = None

    native_step_max_batch: int = NATIVE_STEP_MAX_BATCH
    """``step`` without grad runs natively up to this many rows (set 0 on a model for its torch operations)."""

    def initial_state(self, batch_size: int) -> State:
        """L zero states (B, N); complex for the complex variant; device and dtype follow the parameters."""
        p = param_like(self)
        dtype = p.dtype.to_complex() if self.complex else p.dtype
        return tuple(p.new_zeros(batch_size, self.state_dim, dtype=dtype) for _ in self.blocks)

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state L x (B, N), reset (B, T) bool -> y (B, T, H), state L x (B, N)."""
        check_inputs(x, reset, self.input_dim)
        z = self.encoder(x)  # (B, T, H)
        new_state = []
        for block, h0 in zip(self.blocks, state):
            z, h = block(z, h0, reset)  # (B, T, H), (B, T, N)
            new_state.append(h[:, -1].clone())  # (B, N); clone so the state does not pin all of h
        return self.norm(z), tuple(new_state)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state L x (B, N), reset (B,) bool -> y (B, H), state L x (B, N). O(L (H N + H^2)).

        Computes what ``forward`` computes for T = 1, from a flat "acting plan" of tensors (see
        :meth:`_acting_plan`), with functional ops only: at B = 1 the cost is per-op overhead, so every
        module call and attribute lookup counts. Without grad, on the CPU, the step is one native call
        (``lru_step_*`` in ``_scan.c``) on the plan's tensors; with grad, or elsewhere, torch operations.
        """
        plan = self._acting_plan()
        if not torch.is_grad_enabled() and x.shape[0] <= self.native_step_max_batch and len(state) > 0:
            stepper = self._native_step(plan, x)
            if stepper is not None and stepper.accepts(x, reset, tuple(state)):
                return stepper(x, reset, tuple(state))
        zero = reset.bool().view(-1, 1)  # (B, 1)
        z = F.linear(x, plan.enc_w, plan.enc_b)  # (B, H)
        new_state = []
        for (norm, lam, w_in_d, w_out_t, n2, cplx, out_w, out_b, glu), h in zip(plan.layers, state):
            v = torch.layer_norm(z, *norm)  # (B, H)
            u_dv = F.linear(v, w_in_d)  # (B, N2 + H [+ 1]): gamma B v, then D * v
            u = torch.view_as_complex(u_dv[:, :n2].unflatten(-1, (-1, 2))) if cplx else u_dv[:, :n2]
            h = torch.addcmul(u, lam, h.masked_fill(zero, 0))  # (B, N): a reset zeroes h first
            h_flat = torch.view_as_real(h).flatten(-2) if cplx else h  # (B, N2)
            y = torch.addmm(u_dv[:, n2 : n2 + z.shape[1]], h_flat, w_out_t)  # (B, H): Re(C h) + D * v
            m = F.linear(F.silu(y), out_w, out_b)  # (B, 2H) or (B, H)
            z = z + (F.glu(m, dim=-1) if glu else m)  # (B, H)
            new_state.append(h)
        return torch.layer_norm(z, *plan.final_norm), tuple(new_state)

    def _native_step(self, plan: _Plan, x: Tensor) -> native.ModelStep | None:
        """The native step for this plan (built once per plan; the plan holds what it reads), or None where
        it cannot run: another device or dtype than the plan's, a non-contiguous tensor."""
        if not native.supports_rglru(x):
            return None
        cached = getattr(self, "_native", None)
        if cached is not None and cached[0] is plan and cached[1].dtype == x.dtype:
            return cached[1]
        weights = _native_weights(plan, x.dtype)
        if weights is None:
            return None
        eps = [layer[0][3] for layer in plan.layers] + [plan.final_norm[3]]
        state_dtype = x.dtype.to_complex() if self.complex else x.dtype
        extra = [int(self.complex), int(plan.layers[0][8])]
        stepper = native.ModelStep("lru", weights, eps, extra, self.state_dim, state_dtype)
        if plan.slots:  # a cached plan (grad off): keep the step with it
            self._native = (plan, stepper)
        return stepper

    def _acting_plan(self) -> _Plan:
        """Every tensor ``step`` needs, flat, with lambda and the projections precomputed.

        With grad enabled it is rebuilt on each call (so gradients reach the parameters, and
        functional_call works). Without grad it is cached, and the cache checks itself on each call:

        * every parameter slot still holds the same tensor at the same address (else a parameter was swapped
          by functional_call, or moved or converted by ``.to``);
        * the parameters the plan derives tensors from (lambda, gamma * B, diag(D), ...) still hold the
          values it copied when it was built (``torch.equal``). Values, not autograd version counters: a
          fused optimiser step (``torch.optim.Adam(fused=True)`` on CPU) and a write through ``p.data``
          change a parameter without bumping its counter. The parameters the plan holds as they are (the
          encoder, the norms, the output projections) need no check: the plan reads them live.

        The value check costs one ``torch.equal`` per derived-from parameter (4-8 per layer). A parameter
        holding NaN never equals its copy, so such a model rebuilds its plan on every step (still correct).
        """
        if torch.is_grad_enabled():
            return self._build_plan(cache=False)
        plan = self._plan
        if (
            plan is not None
            and [(id(p), p.data_ptr()) for p in [d[n] for d, n in plan.slots]] == plan.key
            and all(map(torch.equal, plan.derived_from, plan.copies))
        ):
            return plan
        self._plan = plan = self._build_plan(cache=True)
        return plan

    def _build_plan(self, cache: bool) -> _Plan:
        layers = []
        for block in cast(list[SSMBlock], list(self.blocks)):
            lru, norm, out = block.lru, block.norm, block.out
            lam, w_in, w_out = lru.weights()
            H, n2 = w_out.shape
            # [W_in; diag(D)], plus a zero row when H is odd so complex views of each row stay aligned
            rows = [w_in, torch.diag(lru.D)] + ([w_in.new_zeros(1, H)] if lru.complex and H % 2 else [])
            ln = (norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            layers.append(
                (ln, lam, torch.cat(rows), w_out.t(), n2, lru.complex, out.weight, out.bias, block.glu)
            )
        final = (self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        if not cache:
            return _Plan(self.encoder.weight, self.encoder.bias, layers, final, [], [], [], [], [])
        slots: list[tuple[dict[str, Any], str]] = [
            (m._parameters, n) for m in self.modules() for n in m._parameters
        ]
        params: list[Tensor] = [d[n] for d, n in slots]  # held by the plan, so no id in the key can be reused
        key = [(id(p), p.data_ptr()) for p in params]
        # a parameter the plan holds itself, or a view of (w_out.t() of the real variant), is read live
        enc = (self.encoder.weight, self.encoder.bias)
        held = [*enc, *(t for layer in layers for t in _tensors(layer)), *_tensors(final)]
        live = {id(t) for t in held} | {id(t._base) for t in held if t._base is not None}
        derived_from = [p for p in params if id(p) not in live]
        copies = [p.detach().clone() for p in derived_from]
        return _Plan(*enc, layers, final, slots, params, key, derived_from, copies)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles never carry the acting plan: it holds views of this module's parameters."""
        state = super().__getstate__()
        return {**state, "_plan": None, "_native": None}


def _native_weights(plan: _Plan, dtype: torch.dtype) -> list[Tensor] | None:
    """The plan's tensors in the order of the native step (``lru_step_*`` in ``_scan.c``), or None where it
    cannot take them (another dtype, a non-contiguous tensor). Every block of an SSM has the same ``glu``."""
    weights = [plan.enc_w, plan.enc_b]
    for norm, lam, w_in_d, w_out_t, _, cplx, out_w, out_b, _ in plan.layers:
        lam = torch.view_as_real(lam) if cplx else lam
        weights += [norm[1], norm[2], lam, w_in_d, w_out_t.t(), out_w, out_b]
    weights += [plan.final_norm[1], plan.final_norm[2]]
    ok = all(w.dtype == dtype and w.device.type == "cpu" and w.is_contiguous() for w in weights)
    return weights if ok else None


def _tensors(entry: tuple[Any, ...]) -> list[Tensor]:
    """The tensors of one plan entry (a layer's tuple, or the final norm's), one level of nesting deep."""
    flat = [y for x in entry for y in (x if isinstance(x, tuple) else (x,))]
    return [t for t in flat if isinstance(t, Tensor)]


class _Plan(NamedTuple):
    """What ``SSM.step`` reads: encoder, per-layer tuples, final norm; plus what the cache checks (empty when
    the plan is not cached): the parameter slots, their tensors and (id, address) key, and the parameters the
    plan derives tensors from with a copy of their values."""

    enc_w: Tensor
    enc_b: Tensor
    layers: list[tuple[Any, ...]]
    final_norm: tuple[Any, ...]
    slots: list[tuple[dict[str, Any], str]]
    params: list[Tensor]
    key: list[tuple[int, int]]
    derived_from: list[Tensor]
    copies: list[Tensor]
