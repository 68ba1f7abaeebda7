"""GRU and LSTM baselines behind the :class:`~ssm_metarl.models.base.SequenceModel` contract.

Shape letters: B batch, T time, D input features, H hidden width, L layers, E episode segments.

State layout (batch first, unlike torch's ``(L, B, H)``):

- ``GRU``:  ``(h,)`` with ``h`` (B, L, H)
- ``LSTM``: ``(h, c)`` with ``h, c`` (B, L, H)

``forward`` respects resets in the middle of a sequence without a Python loop over time:

- fast path: no reset after t = 0 -> one call of the fused ``nn.GRU`` / ``nn.LSTM`` kernel;
- otherwise the sequence is cut at every reset into episode segments, the segments are packed
  (``pack_padded_sequence``) and run in ONE fused call, each segment starting from a zero state except
  the first segment of each row, which starts from the (masked) incoming state.

``step`` calls the fused cell (``torch.gru_cell`` / ``torch.lstm_cell``) on the same weights, layer by
layer: a handful of ops per step. ``forward_by_steps`` is the obvious reference loop the tests compare
both paths with. :func:`segment_layout` and :func:`run_rnn` are shared with ``improved.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ssm_metarl.models.base import State, check_inputs, param_like

RNNState = Tensor | tuple[Tensor, Tensor]  # torch layout: (L, B, H), or (h, c) for an LSTM


class SegmentLayout(NamedTuple):
    """Where each step of a (B, T) batch sits once the sequence is cut at its resets.

    Segments are numbered row-major: row 0's segments first, in time order, then row 1's, ...
    """

    seg: Tensor  # (B, T) long: segment id e in [0, E) of step (b, t)
    pos: Tensor  # (B, T) long: position of step (b, t) inside its segment
    lengths: Tensor  # (E,) long, on CPU: segment lengths (what pack_padded_sequence wants)
    first: Tensor  # (B,) long: segment id of step 0 of each row (it continues the incoming state)
    last: Tensor  # (B,) long: segment id of step T - 1 of each row (it yields the outgoing state)
    max_len: int  # longest segment


def segment_layout(reset: Tensor) -> SegmentLayout:
    """Cut a batch of sequences at its resets. reset: (B, T) bool, True where step t starts an episode."""
    B, T = reset.shape
    starts = reset.bool().clone()  # (B, T)
    starts[:, 0] = True
    seg = starts.reshape(-1).long().cumsum(0).sub_(1).view(B, T)  # (B, T)
    t_idx = torch.arange(T, device=reset.device).expand(B, T)  # (B, T)
    start_t = torch.cummax(torch.where(starts, t_idx, 0), dim=1).values  # (B, T) start of own segment
    pos = t_idx - start_t  # (B, T)
    lengths = torch.bincount(seg.reshape(-1)).cpu()  # (E,)
    return SegmentLayout(seg, pos, lengths, seg[:, 0], seg[:, -1], int(lengths.max()))


def pad_segments(x: Tensor, layout: SegmentLayout) -> Tensor:
    """(B, T, F) -> (E, max_len, F): one row per segment, left-aligned, zero padded on the right."""
    E, F = layout.lengths.numel(), x.shape[-1]
    out = x.new_zeros(E, layout.max_len, F)  # (E, Tm, F)
    return out.index_put((layout.seg.reshape(-1), layout.pos.reshape(-1)), x.reshape(-1, F))


def unpad_segments(xp: Tensor, layout: SegmentLayout) -> Tensor:
    """(E, max_len, F) -> (B, T, F), the inverse of :func:`pad_segments`."""
    return xp[layout.seg, layout.pos]  # (B, T, F)


def _map(fn, h: RNNState) -> RNNState:
    return tuple(fn(t) for t in h) if isinstance(h, tuple) else fn(h)


def run_rnn_segments(rnn: nn.RNNBase, xp: Tensor, h0: RNNState, layout: SegmentLayout) -> tuple[Tensor, RNNState]:
    """Run ``rnn`` over padded segments in one fused call.

    xp: (E, Tm, D) from :func:`pad_segments`; h0: (L, B, H) incoming state (already masked by reset[:, 0]).
    Returns the padded outputs (E, Tm, H) and the outgoing state (L, B, H) of each row's last segment.
    """
    E = layout.lengths.numel()

    def scatter_first(h: Tensor) -> Tensor:  # (L, B, H) -> (L, E, H): zero except first segments
        return h.new_zeros(h.shape[0], E, h.shape[2]).index_copy(1, layout.first, h)

    packed = pack_padded_sequence(xp, layout.lengths, batch_first=True, enforce_sorted=False)
    out, hn = rnn(packed, _map(scatter_first, h0))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=layout.max_len)  # (E, Tm, H)
    return out, _map(lambda h: h[:, layout.last], hn)  # hn rows in segment order -> (L, B, H)


def run_rnn(rnn: nn.RNNBase, x: Tensor, h0: RNNState, reset: Tensor) -> tuple[Tensor, RNNState]:
    """Reset-aware run of a batch-first ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``.

    x: (B, T, D); h0: (L, B, H) (tuple for an LSTM), already zeroed where reset[:, 0]; reset: (B, T) bool.
    Returns y (B, T, H) and the final state in torch layout (L, B, H).
    """
    if x.shape[1] == 1 or not bool(reset[:, 1:].any()):
        return rnn(x, h0)  # fast path: one fused call
    layout = segment_layout(reset)
    out, hn = run_rnn_segments(rnn, pad_segments(x, layout), h0, layout)
    return unpad_segments(out, layout), hn


def forward_by_steps(model: nn.Module, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
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
        return y, (hn.transpose(0, 1),)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state ((B, L, H),), reset (B,) bool -> y (B, H), state."""
        h = state[0].masked_fill(reset.bool().view(-1, 1, 1), 0.0)  # (B, L, H)
        rnn, out = self.rnn, x
        hs = []
        for l in range(self.num_layers):
            w = [getattr(rnn, f"{n}_l{l}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            out = torch.gru_cell(out, h[:, l], *w)  # (B, H)
            hs.append(out)
        return out, (out.unsqueeze(1) if self.num_layers == 1 else torch.stack(hs, dim=1),)


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
        r = reset.bool().view(-1, 1, 1)
        h, c = state[0].masked_fill(r, 0.0), state[1].masked_fill(r, 0.0)  # (B, L, H)
        rnn, out = self.rnn, x
        hs, cs = [], []
        for l in range(self.num_layers):
            w = [getattr(rnn, f"{n}_l{l}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            out, cl = torch.lstm_cell(out, (h[:, l], c[:, l]), *w)  # (B, H) x 2
            hs.append(out)
            cs.append(cl)
        if self.num_layers == 1:
            return out, (out.unsqueeze(1), cl.unsqueeze(1))
        return out, (torch.stack(hs, dim=1), torch.stack(cs, dim=1))
