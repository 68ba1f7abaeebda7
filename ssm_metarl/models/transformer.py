"""Causal sliding-window Transformer baseline whose receptive field is exactly the last ``context`` steps.

Shape letters: B batch, T time, D input features, H width, L layers, W a layer's window, C = W - 1 its
cache length, Q a block of queries.

Pre-LayerNorm blocks (attention + 4H GELU MLP). Layer l attends over its own last W_l positions, the
query included; stacking layers widens the receptive field by W_l - 1 per layer, so the windows are
chosen with ``sum_l (W_l - 1) = context - 1``: the output at t depends on inputs t - context + 1 .. t
and on nothing older (for ``context=64, num_layers=2``: windows 33 and 32). Positions enter as a learned
per-head bias on the lag t - s (a relative bias initialised to ALiBi's slopes, Press et al. 2022), so
nothing depends on absolute time. Attention never crosses a reset: keys from before the most recent reset
at or before the query are masked out.

State (batch first):

- one cache per layer, (B, C_l, 2H): the layer's keys and values at its last C_l steps, zeroed where
  they are not visible (before a reset, or before anything was seen);
- a count (B,): how many past steps are visible (steps since the last reset, capped at max C_l),
  stored as a float of the parameters' dtype so that generic state code (masking, casting) works.

Cost: ``forward`` processes T steps in blocks of Q queries against Q + C keys, so attention costs
O(T * context * H) time and memory per sequence (not O(T^2)); ``step`` projects only the new step and
attends over the cached window: O(context * H) attention + O(H^2) projections, ~15 ops per layer.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs, param_like


def _windows(context: int, num_layers: int) -> list[int]:
    """Per-layer windows W_l with sum (W_l - 1) = context - 1, the larger ones first."""
    base, rem = divmod(context - 1, num_layers)
    return [base + (1 if l < rem else 0) + 1 for l in range(num_layers)]


def _lin(m: nn.Linear, x: Tensor) -> Tensor:
    return F.linear(x, m.weight, m.bias)


def _ln(m: nn.LayerNorm, x: Tensor) -> Tensor:
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


class Block(nn.Module):
    """Pre-LN block with attention over the last ``window`` positions and a 4H GELU MLP.

    The block's cache holds the keys and values (B, C, 2H) of its last C = window - 1 positions.
    """

    def __init__(self, hidden_dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads, self.window, self.cache_len = num_heads, window, window - 1
        self.ln1, self.ln2 = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.q, self.kv = nn.Linear(hidden_dim, hidden_dim), nn.Linear(hidden_dim, 2 * hidden_dim)
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.ff1, self.ff2 = nn.Linear(hidden_dim, 4 * hidden_dim), nn.Linear(4 * hidden_dim, hidden_dim)
        slopes = 2.0 ** (-8.0 * torch.arange(1, num_heads + 1) / num_heads)  # (heads,)
        self.rel_bias = nn.Parameter(-slopes[:, None] * torch.arange(window))  # (heads, W): bias of lag d

    def _finish(self, z: Tensor, att: Tensor) -> Tensor:
        """Residual attention output, then residual MLP. z, att (..., H)."""
        z = z + _lin(self.proj, att)
        return z + _lin(self.ff2, F.gelu(_lin(self.ff1, _ln(self.ln2, z))))

    def forward(self, z: Tensor, cache: Tensor, lim: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, T, H) layer inputs, cache (B, C, 2H), lim (B, T) long: number of visible past steps.

        Query t sees keys at lags 0 .. min(C, lim[b, t]). Returns the layer outputs (B, T, H) and the
        keys/values of the cache followed by the T new positions (B, C + T, 2H).
        """
        B, T, H = z.shape
        C, nh, dh = self.cache_len, self.num_heads, H // self.num_heads
        Q = T if 2 * self.window >= T else self.window  # queries per block
        nb = -(-T // Q)
        pad = nb * Q - T
        u = _ln(self.ln1, z)  # (B, T, H)
        kv_full = torch.cat([cache, _lin(self.kv, u)], dim=1)  # (B, C + T, 2H)
        q = (
            F.pad(_lin(self.q, u), (0, 0, 0, pad)).view(B, nb, Q, nh, dh).transpose(2, 3)
        )  # (B, nb, nh, Q, dh)
        kv = F.pad(kv_full, (0, 0, 0, pad)).unfold(1, Q + C, Q)  # (B, nb, 2H, Q + C)
        kv = kv.reshape(B * nb, 2, nh, dh, Q + C).permute(1, 0, 2, 4, 3)  # (2, B nb, nh, Q + C, dh)
        lag = torch.arange(Q, device=z.device)[:, None] + C - torch.arange(Q + C, device=z.device)  # (Q, Q+C)
        lim = F.pad(lim.clamp(max=C), (0, pad)).view(B, nb, Q, 1)  # (B, nb, Q, 1); padded queries: 0
        allowed = (lag >= 0) & (lag <= lim)  # (B, nb, Q, Q + C)
        bias = self.rel_bias[:, lag.clamp(0, C)]  # (nh, Q, Q + C)
        mask = bias.masked_fill(~allowed.unsqueeze(2), float("-inf"))  # (B, nb, nh, Q, Q + C)
        att = F.scaled_dot_product_attention(
            q.reshape(B * nb, nh, Q, dh), kv[0], kv[1], attn_mask=mask.view(B * nb, nh, Q, Q + C)
        )  # (B nb, nh, Q, dh)
        att = att.view(B, nb, nh, Q, dh).transpose(2, 3).reshape(B, nb * Q, H)[:, :T]  # (B, T, H)
        return self._finish(z, att), kv_full

    def step(self, z: Tensor, cache: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, H), cache (B, C, 2H), mask (B, 1, 1, W) True where a slot of [cache..., self] is hidden.

        Returns the layer output (B, H) and the keys/values of [cache..., self] (B, W, 2H).
        """
        B, H = z.shape
        nh, dh = self.num_heads, H // self.num_heads
        u = _ln(self.ln1, z)  # (B, H)
        kv_full = torch.cat([cache, _lin(self.kv, u).unsqueeze(1)], dim=1)  # (B, W, 2H)
        kv = kv_full.view(B, -1, 2, nh, dh).permute(2, 0, 3, 1, 4)  # (2, B, nh, W, dh)
        bias = self.rel_bias.flip(-1).unsqueeze(1).masked_fill(mask, float("-inf"))  # (B, nh, 1, W)
        q = _lin(self.q, u).view(B, nh, 1, dh)  # (B, nh, 1, dh)
        att = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=bias)  # (B, nh, 1, dh)
        return self._finish(z, att.reshape(B, H)), kv_full


class Transformer(nn.Module):
    """Causal Transformer over the last ``context`` steps; see the module docstring for the state.

    Args:
        input_dim: D, input features.
        hidden_dim: H, width and ``output_dim``; divisible by ``num_heads``.
        num_layers: L, blocks.
        num_heads: attention heads.
        context: receptive field in steps (the current one included), >= 1.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int = 64, num_layers: int = 2, num_heads: int = 4, context: int = 64
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be divisible by num_heads {num_heads}")
        if context < 1 or num_layers < 1:
            raise ValueError(f"context and num_layers must be >= 1, got {context} and {num_layers}")
        self.input_dim, self.output_dim, self.context = input_dim, hidden_dim, context
        self.embed = nn.Linear(input_dim, hidden_dim)
        blocks = [Block(hidden_dim, num_heads, w) for w in _windows(context, num_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.max_cache: int = max(b.cache_len for b in blocks)

    def _blocks(self) -> list[Block]:
        return cast(list[Block], list(self.blocks))

    def initial_state(self, batch_size: int) -> State:
        """L zero key/value caches (B, C_l, 2H) and a zero count (B,)."""
        p = param_like(self)
        caches = tuple(p.new_zeros(batch_size, b.cache_len, 2 * self.output_dim) for b in self._blocks())
        return (*caches, p.new_zeros(batch_size))

    def _keep(self, count: Tensor) -> Tensor:
        """(B, max C, 1): 1 where a cache slot is at most ``count`` steps old (slot j is max C - j old)."""
        age = torch.arange(self.max_cache, 0, -1, device=count.device)  # (max C,)
        return (age <= count[:, None]).unsqueeze(-1).to(count.dtype)

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state (caches..., count), reset (B, T) bool -> y (B, T, H), state."""
        check_inputs(x, reset, self.input_dim)
        B, T, _ = x.shape
        *caches, count = state
        t_idx = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
        start = torch.where(reset.bool(), t_idx, -count.long()[:, None])  # (B, T) episode start if reset
        start = torch.cummax(start, dim=1).values  # (B, T): first visible step, -count before any reset
        lim = t_idx - start  # (B, T) visible past steps
        new_count = (lim[:, -1] + 1).clamp(max=self.max_cache).to(count.dtype)  # (B,)
        keep = self._keep(new_count)  # (B, max C, 1)
        z = _lin(self.embed, x)  # (B, T, H)
        new_caches = []
        for block, cache in zip(self._blocks(), caches):
            z, kv_full = block(z, cache, lim)  # (B, T, H), (B, C + T, 2H)
            C = block.cache_len
            new_caches.append(kv_full[:, kv_full.shape[1] - C :] * keep[:, self.max_cache - C :])
        return _ln(self.out_norm, z), (*new_caches, new_count)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state (caches..., count), reset (B,) bool -> y (B, H), state."""
        *caches, count = state
        count = count.masked_fill(reset.bool(), 0.0)  # (B,)
        new_count = (count + 1).clamp(max=self.max_cache)  # (B,)
        age = torch.arange(self.max_cache, -1, -1, device=x.device)  # (max W,) ages of [cache..., self]
        hidden = (age > count[:, None]).view(x.shape[0], 1, 1, -1)  # (B, 1, 1, max W)
        keep = self._keep(new_count)  # (B, max C, 1)
        z = _lin(self.embed, x)  # (B, H)
        new_caches = []
        for block, cache in zip(self._blocks(), caches):
            C = block.cache_len
            z, kv_full = block.step(z, cache, hidden[..., self.max_cache - C :])  # (B, H), (B, W, 2H)
            new_caches.append(kv_full[:, 1:] * keep[:, self.max_cache - C :])
        return _ln(self.out_norm, z), (*new_caches, new_count)
