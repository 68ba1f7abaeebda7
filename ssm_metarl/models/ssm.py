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

A block is pre-norm and residual, as in the LRU and S5 papers:

    x <- x + GLU(GELU(LRU(LayerNorm(x))))      GLU(v) = (W_a v) * sigmoid(W_b v)   (glu=True)
    x <- x + W(GELU(LRU(LayerNorm(x))))                                              (glu=False)

``SSM``: x (B, T, D) -> Linear encoder (B, T, H) -> L blocks -> LayerNorm -> y (B, T, H). Its state is a
tuple of L tensors (B, N), one per layer, complex for the complex variant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs, param_like
from ssm_metarl.models.scan import linear_scan

# exp(nu_log) is kept in [1e-6, 30]: |lambda| <= exp(-1e-6) < 1 even in float32, and no inf/nan gradients;
# the phase exp(theta_log) is kept below 1e3 radians (larger phases only overflow: cos(inf) is nan)
NU_LOG_MIN, NU_LOG_MAX = math.log(1e-6), math.log(30.0)
THETA_LOG_MAX = math.log(1e3)


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
    """Pre-norm residual block: x <- x + GLU(GELU(LRU(LayerNorm(x)))) (or a Linear instead of the GLU)."""

    def __init__(self, hidden_dim: int, state_dim: int, glu: bool = True, **lru_kwargs: Any) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.lru = LRULayer(hidden_dim, state_dim, **lru_kwargs)
        self.glu = glu
        self.out = nn.Linear(hidden_dim, 2 * hidden_dim if glu else hidden_dim)

    def mix(self, y: Tensor) -> Tensor:
        """The position-wise part after the recurrence: (..., H) -> (..., H)."""
        v = self.out(F.gelu(y, approximate="tanh"))  # (..., 2H) or (..., H)
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
        r_min, r_max: ring initialisation of |lambda| (memory of roughly 1/(1-r) steps).
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
        self._step_cache: tuple[tuple[Any, ...], list[tuple[Tensor, ...]]] | None = None

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

        Written with functional ops (no module calls) because acting latency at B = 1 is dominated by
        per-op overhead; it computes exactly what ``forward`` computes for T = 1.
        """
        zero = reset.bool()[:, None]  # (B, 1)
        z = F.linear(x, self.encoder.weight, self.encoder.bias)  # (B, H)
        new_state = []
        for block, h, (lam, w_in_d, w_out_t) in zip(self.blocks, state, self._weights_for_step()):
            lru, norm, out = block.lru, block.norm, block.out
            N2 = w_out_t.shape[0]  # N, or 2N for the complex variant
            v = F.layer_norm(z, norm.normalized_shape, norm.weight, norm.bias, norm.eps)  # (B, H)
            u_dv = F.linear(v, w_in_d)  # (B, N2 + H): gamma B v, then D * v
            u = torch.view_as_complex(u_dv[:, :N2].unflatten(-1, (-1, 2))) if lru.complex else u_dv[:, :N2]
            h = torch.addcmul(u, lam, h.masked_fill(zero, 0))  # (B, N): a reset zeroes h first
            h_flat = torch.view_as_real(h).flatten(-2) if lru.complex else h  # (B, N2)
            y = torch.addmm(u_dv[:, N2:], h_flat, w_out_t)  # (B, H): Re(C h) + D * v
            m = F.linear(F.gelu(y, approximate="tanh"), out.weight, out.bias)  # (B, 2H) or (B, H)
            z = z + (F.glu(m, dim=-1) if block.glu else m)  # (B, H)
            new_state.append(h)
        norm = self.norm
        return F.layer_norm(z, norm.normalized_shape, norm.weight, norm.bias, norm.eps), tuple(new_state)

    def _weights_for_step(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer (lambda (N,), [W_in; diag(D)] (N2 + H, H), W_out^T (N2, H)) for ``step``, where the
        skip D * v rides along with the input projection. Cached between calls while acting without grad.

        The cache is rebuilt whenever any LRU parameter is replaced (functional_call, .to()), or modified
        in place through autograd-visible ops (optimisers, load_state_dict, ``with no_grad: p.copy_``),
        tracked by tensor identity, version counter and data pointer. Writes through ``p.data`` bypass
        version counters: call ``clear_step_cache()`` after those.
        """
        if torch.is_grad_enabled():
            return [_step_weights(block.lru) for block in self.blocks]
        key = [(p, p._version, p.data_ptr()) for b in self.blocks for p in b.lru._parameters.values()]
        cache = self._step_cache
        if (
            cache is None
            or len(cache[0]) != len(key)
            or any(p is not q or v != w or d != e for (p, v, d), (q, w, e) in zip(key, cache[0]))
        ):
            cache = (tuple(key), [_step_weights(block.lru) for block in self.blocks])
            self._step_cache = cache
        return cache[1]

    def clear_step_cache(self) -> None:
        """Forget the cached step weights (needed only after in-place writes through ``param.data``)."""
        self._step_cache = None


def _step_weights(lru: LRULayer) -> tuple[Tensor, Tensor, Tensor]:
    lam, w_in, w_out = lru.weights()
    return lam, torch.cat([w_in, torch.diag(lru.D)]), w_out.t()
