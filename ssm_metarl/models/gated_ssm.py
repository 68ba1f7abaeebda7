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

With r_t near 0 the channel holds its state (a_t near 1); with r_t near 1 it decays at its fastest rate
sigmoid(lambda)^c. ``sqrt(1 - a_t^2)`` keeps the state's scale whatever the gate does. lambda is initialised
so that sigmoid(lambda)^c is uniform in [0.9, 0.999], as in Griffin. Blocks are pre-norm and residual with a
GLU, like the LRU's::

    x <- x + GLU(SiLU(RG-LRU(LayerNorm(x))))

``GatedSSM``: x (B, T, D) -> Linear encoder (B, T, H) -> L blocks -> LayerNorm -> y (B, T, H); its state is a
tuple of L tensors (B, N). ``step`` computes what ``forward`` computes for T = 1 (tested), with one
multiply-add of the recurrence per layer.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs, param_like
from ssm_metarl.models.scan import linear_scan

GATE_SCALE = 8.0
"""c in a_t = sigmoid(lambda) ** (c * r_t) (Griffin's constant)."""


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

    def coefficients(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """v (..., H) -> a (..., N) in (0, 1), b (..., N): the recurrence's coefficient and input."""
        u, r, i = self.proj(v).chunk(3, dim=-1)  # (..., N) each
        log_a = -GATE_SCALE * torch.sigmoid(r) * F.softplus(-self.lam)  # (..., N), < 0
        a = torch.exp(log_a)
        scale = torch.sqrt(-torch.expm1(2.0 * log_a))  # sqrt(1 - a^2), exact near a = 1
        return a, scale * torch.sigmoid(i) * u

    def forward(self, v: Tensor, h0: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, T, H), h0 (B, N), reset (B, T) -> y (B, T, H), h (B, T, N)."""
        a, b = self.coefficients(v)  # (B, T, N) each
        h = linear_scan(a, b, h0, reset)  # (B, T, N)
        return torch.addcmul(self.out(h), v, self.skip), h

    def step(self, v: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, H), h (B, N), reset (B, 1) bool -> y (B, H), h (B, N)."""
        a, b = self.coefficients(v)  # (B, N)
        h = torch.addcmul(b, a, h.masked_fill(reset, 0.0))  # (B, N)
        return torch.addcmul(self.out(h), v, self.skip), h


class GatedBlock(nn.Module):
    """Pre-norm residual block: x <- x + GLU(SiLU(RG-LRU(LayerNorm(x))))."""

    def __init__(self, hidden_dim: int, state_dim: int, a_min: float = 0.9) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.rnn = RGLRULayer(hidden_dim, state_dim, a_min=a_min)
        self.mix = nn.Linear(hidden_dim, 2 * hidden_dim)

    def forward(self, x: Tensor, h0: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, H), h0 (B, N), reset (B, T) -> x (B, T, H), h (B, T, N)."""
        y, h = self.rnn(self.norm(x), h0, reset)
        return x + F.glu(self.mix(F.silu(y)), dim=-1), h

    def step(self, x: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, H), h (B, N), reset (B, 1) -> x (B, H), h (B, N)."""
        y, h = self.rnn.step(self.norm(x), h, reset)
        return x + F.glu(self.mix(F.silu(y)), dim=-1), h


class GatedSSM(nn.Module):
    """Stacked input-gated SSM keeping the SequenceModel contract (see base.py and the module docstring).

    Args:
        input_dim: D, features per time step.
        hidden_dim: H, model width and output width.
        state_dim: N, diagonal state size per layer.
        num_layers: L, number of residual blocks.
        a_min: the fastest decay of the ring initialisation, sigmoid(lambda)^c uniform in [a_min, 0.999].
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 64,
        state_dim: int = 64,
        num_layers: int = 1,
        a_min: float = 0.9,
    ) -> None:
        super().__init__()
        self.input_dim, self.output_dim, self.state_dim = input_dim, hidden_dim, state_dim
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.ModuleList(GatedBlock(hidden_dim, state_dim, a_min) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_dim)

    def _blocks(self) -> list[GatedBlock]:
        return cast(list[GatedBlock], list(self.blocks))

    def initial_state(self, batch_size: int) -> State:
        """L zero states (B, N); device and dtype follow the parameters."""
        p = param_like(self)
        return tuple(p.new_zeros(batch_size, self.state_dim) for _ in self.blocks)

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state L x (B, N), reset (B, T) bool -> y (B, T, H), state L x (B, N)."""
        check_inputs(x, reset, self.input_dim)
        z = self.encoder(x)  # (B, T, H)
        new_state = []
        for block, h0 in zip(self._blocks(), state):
            z, h = block(z, h0, reset)  # (B, T, H), (B, T, N)
            new_state.append(h[:, -1].clone())
        return self.norm(z), tuple(new_state)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state L x (B, N), reset (B,) bool -> y (B, H), state L x (B, N)."""
        z = self.encoder(x)  # (B, H)
        r = reset.bool().view(-1, 1)  # (B, 1)
        new_state = []
        for block, h in zip(self._blocks(), state):
            z, h = block.step(z, h, r)
            new_state.append(h)
        return self.norm(z), tuple(new_state)


__all__ = ["GATE_SCALE", "GatedBlock", "GatedSSM", "RGLRULayer"]
