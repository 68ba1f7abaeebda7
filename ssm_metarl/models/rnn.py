"""GRU and LSTM baselines behind the :class:`~ssm_metarl.models.base.SequenceModel` contract.

Shape letters: B batch, T time, D input features, H hidden width, L layers.

State layout (batch first, unlike torch's ``(L, B, H)``):

- ``GRU``:  ``(h,)`` with ``h`` (B, L, H)
- ``LSTM``: ``(h, c)`` with ``h, c`` (B, L, H)

``forward`` respects resets in the middle of a sequence (:func:`run_rnn`):

- fast path: no reset after t = 0 -> one call of the ``nn.GRU`` / ``nn.LSTM`` kernel;
- resets in a few columns -> one kernel call per stretch between the columns where any row resets,
  zeroing the reset rows' state in between;
- resets in more than 40% of the columns -> a loop over t with the cell kernels (``torch.gru_cell``...).

Why three paths: on CPU the fused LSTM kernel (oneDNN) is far faster than its cell loop, while the GRU
kernel saves little more than Python overhead, so a kernel call per stretch pays off only while the
stretches are long; past about 40% reset columns the cell loop is cheaper. The 40% threshold was set by
timing these paths with H=64 on the project's 2-core CPU; no results file holds those timings
(``benchmarks/results/scan_speed.md`` has the no-reset ``nn.GRU`` / ``nn.LSTM`` calls and the
``GRUCell`` loop with resets). One ``PackedSequence`` call over the episode segments is not used: its
backward is the slowest of all on CPU.

``step`` runs the cell kernels on the same weights, layer by layer: a handful of ops per step.
``forward_by_steps`` is the obvious reference loop that tests compare every path with. :func:`run_rnn`
is shared with ``improved.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs, param_like

RNNState = Tensor | tuple[Tensor, Tensor]  # torch layout: (L, B, H), or (h, c) for an LSTM


def cell_fn(rnn: nn.RNNBase) -> Callable[..., Any]:
    """The single-step kernel that computes exactly what ``rnn`` computes per step."""
    if isinstance(rnn, nn.LSTM):
        return torch.lstm_cell
    if isinstance(rnn, nn.GRU):
        return torch.gru_cell
    return torch.rnn_tanh_cell if rnn.nonlinearity == "tanh" else torch.rnn_relu_cell


def layer_weights(rnn: nn.RNNBase) -> list[list[Tensor]]:
    """Per layer: [weight_ih, weight_hh, bias_ih, bias_hh] (looked up now, so functional_call works)."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [[getattr(rnn, f"{n}_l{l}") for n in names] for l in range(rnn.num_layers)]


def cell_step(cell: Callable[..., Any], weights: list[list[Tensor]], x: Tensor, hs: list[Any]) -> list[Any]:
    """One step through all layers. x (B, D); hs[l]: (B, H), or (h, c) for an LSTM. Returns new hs."""
    out, new = x, []
    for w, h in zip(weights, hs):
        h = cell(out, h, *w)  # (B, H) or ((B, H), (B, H))
        out = h[0] if isinstance(h, tuple) else h
        new.append(h)
    return new


def _loop(rnn: nn.RNNBase, x: Tensor, h0: RNNState, reset: Tensor) -> tuple[Tensor, RNNState]:
    """Reset-aware loop over t with the cell kernel; h0 in torch layout (L, B, H)."""
    cell, weights, lstm = cell_fn(rnn), layer_weights(rnn), isinstance(h0, tuple)
    hs: Any = list(zip(h0[0].unbind(0), h0[1].unbind(0))) if isinstance(h0, tuple) else list(h0.unbind(0))
    keep = (~reset).to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    ys = []
    for t in range(x.shape[1]):
        if t > 0:
            k = keep[:, t]  # (B, 1)
            hs = [(h * k, c * k) for h, c in hs] if lstm else [h * k for h in hs]
        hs = cell_step(cell, weights, x[:, t], hs)
        ys.append(hs[-1][0] if lstm else hs[-1])  # (B, H)
    y = torch.stack(ys, dim=1)  # (B, T, H)
    if lstm:
        return y, (torch.stack([h for h, _ in hs]), torch.stack([c for _, c in hs]))
    return y, torch.stack(hs)  # (L, B, H)


def _split(
    rnn: nn.RNNBase, x: Tensor, h0: RNNState, reset: Tensor, cuts: list[int]
) -> tuple[Tensor, RNNState]:
    """One fused call per stretch between the time steps where any row resets."""
    bounds = [0, *cuts, x.shape[1]]
    h, ys = h0, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if a > 0:
            r = reset[:, a].view(1, -1, 1)  # (1, B, 1)
            h = _map(functools.partial(_zero_where, r), h)
        y, h = rnn(x[:, a:b], h)  # (B, b - a, H)
        ys.append(y)
    return torch.cat(ys, dim=1), h


def _map(fn: Callable[[Tensor], Tensor], h: RNNState) -> RNNState:
    return (fn(h[0]), fn(h[1])) if isinstance(h, tuple) else fn(h)


def run_rnn(rnn: nn.RNNBase, x: Tensor, h0: RNNState, reset: Tensor) -> tuple[Tensor, RNNState]:
    """Reset-aware run of a batch-first ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``.

    x: (B, T, D); h0: (L, B, H) (an (h, c) pair for an LSTM), already zeroed where reset[:, 0];
    reset: (B, T) bool. Returns y (B, T, H) and the final state in torch layout (L, B, H).

    No reset after t = 0: one fused call. Otherwise one fused call per stretch between reset columns,
    unless resets fall on more than 40% of the columns: then the cell loop, which is cheaper per step.
    """
    T = x.shape[1]
    if T == 1:
        return rnn(x, h0)
    cuts = (torch.nonzero(reset[:, 1:].any(0)).flatten() + 1).tolist()
    if not cuts:
        return rnn(x, h0)  # fast path
    if 5 * len(cuts) > 2 * T:
        return _loop(rnn, x, h0, reset)
    return _split(rnn, x, h0, reset, cuts)


def _zero_where(r: Tensor, s: Tensor) -> Tensor:
    return s.masked_fill(r, 0.0)


def forward_by_steps(model: Any, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
    """Reference loop: ``model.step`` over t. x (B, T, D), reset (B, T) -> y (B, T, H), final state."""
    ys = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state, reset[:, t])  # (B, H)
        ys.append(y)
    return torch.stack(ys, dim=1), state  # (B, T, H)


def _init_rnn(rnn: nn.RNNBase, forget_bias: float = 0.0) -> None:
    """Orthogonal weights, zero biases (optionally +forget_bias on an LSTM's forget gate)."""
    H = rnn.hidden_size
    for name, p in rnn.named_parameters():
        if name.startswith("weight"):
            nn.init.orthogonal_(p)
        else:
            nn.init.zeros_(p)
            if forget_bias and name.startswith("bias_ih"):
                with torch.no_grad():
                    p[H : 2 * H] = forget_bias  # gate order i, f, g, o


class GRU(nn.Module):
    """Multi-layer GRU (Cho et al. 2014). State ``(h,)``, h (B, L, H); output y (B, T, H)."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, num_layers: int = 1) -> None:
        super().__init__()
        self.input_dim, self.output_dim, self.num_layers = input_dim, hidden_dim, num_layers
        self.rnn = nn.GRU(input_dim, hidden_dim, num_layers, batch_first=True)
        _init_rnn(self.rnn)

    def initial_state(self, batch_size: int) -> State:
        return (param_like(self).new_zeros(batch_size, self.num_layers, self.output_dim),)  # (B, L, H)

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state ((B, L, H),), reset (B, T) bool -> y (B, T, H), state."""
        check_inputs(x, reset, self.input_dim)
        reset = reset.bool()
        h0 = state[0].masked_fill(reset[:, 0, None, None], 0.0)  # (B, L, H)
        y, hn = run_rnn(self.rnn, x, h0.transpose(0, 1).contiguous(), reset)  # (B, T, H), (L, B, H)
        assert isinstance(hn, Tensor)
        return y, (hn.transpose(0, 1),)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state ((B, L, H),), reset (B,) bool -> y (B, H), state."""
        h = state[0].masked_fill(reset.bool().view(-1, 1, 1), 0.0)  # (B, L, H)
        hs = cell_step(torch.gru_cell, layer_weights(self.rnn), x, list(h.unbind(1)))  # L x (B, H)
        return hs[-1], (torch.stack(hs, dim=1),)


class LSTM(nn.Module):
    """Multi-layer LSTM (Hochreiter & Schmidhuber 1997). State ``(h, c)``, each (B, L, H)."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, num_layers: int = 1) -> None:
        super().__init__()
        self.input_dim, self.output_dim, self.num_layers = input_dim, hidden_dim, num_layers
        self.rnn = nn.LSTM(input_dim, hidden_dim, num_layers, batch_first=True)
        _init_rnn(self.rnn, forget_bias=1.0)

    def initial_state(self, batch_size: int) -> State:
        h = param_like(self).new_zeros(batch_size, self.num_layers, self.output_dim)  # (B, L, H)
        return (h, h.clone())

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state (h, c) each (B, L, H), reset (B, T) bool -> y (B, T, H), state."""
        check_inputs(x, reset, self.input_dim)
        reset = reset.bool()
        r0 = reset[:, 0, None, None]  # (B, 1, 1)
        h0, c0 = (s.masked_fill(r0, 0.0).transpose(0, 1).contiguous() for s in state)  # (L, B, H)
        y, (hn, cn) = run_rnn(self.rnn, x, (h0, c0), reset)  # (B, T, H), (L, B, H) x 2
        return y, (hn.transpose(0, 1), cn.transpose(0, 1))

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state (h, c) each (B, L, H), reset (B,) bool -> y (B, H), state."""
        r = reset.bool().view(-1, 1, 1)  # (B, 1, 1)
        h, c = state[0].masked_fill(r, 0.0), state[1].masked_fill(r, 0.0)  # (B, L, H)
        hcs = cell_step(torch.lstm_cell, layer_weights(self.rnn), x, list(zip(h.unbind(1), c.unbind(1))))
        return hcs[-1][0], (torch.stack([h for h, _ in hcs], dim=1), torch.stack([c for _, c in hcs], dim=1))
