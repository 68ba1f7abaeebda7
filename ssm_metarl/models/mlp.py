"""Feedforward baseline: no memory, so it sees only the current input.

Shape letters: B batch, T time, D input features, H width. The state is the empty tuple ``()``; resets
change nothing. ``y_t = MLP(x_t)`` with Tanh activations and orthogonal init (gain sqrt(2), zero biases,
as in CleanRL's PPO).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs


class MLP(nn.Module):
    """``num_layers`` Linear + Tanh layers, D -> H -> ... -> H; a stateless :class:`SequenceModel`."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_dim, self.output_dim = input_dim, hidden_dim
        layers: list[nn.Module] = []
        for i in range(num_layers):
            linear = nn.Linear(input_dim if i == 0 else hidden_dim, hidden_dim)
            nn.init.orthogonal_(linear.weight, math.sqrt(2))
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def initial_state(self, batch_size: int) -> State:
        """Stateless: ``()``."""
        return ()

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state (), reset (B, T) -> y (B, T, H), ()."""
        check_inputs(x, reset, self.input_dim)
        return self.net(x), ()

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state (), reset (B,) -> y (B, H), ()."""
        return self.net(x), ()
