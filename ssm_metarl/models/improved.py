"""The seed's "Improved SSM": stacked nonlinear state-space layers with LayerNorm and residuals.

Shape letters: B batch, T time, D input features, H model width (``hidden_dim``), N state size
(``state_dim``), L layers.

``ImprovedSSM`` (the seed's actor-critic class) is an ``ActorCritic`` subclass around ``ImprovedSSMBackbone``:
the policy and value heads live in ``heads.py``; this file holds the backbone.

Each layer is a nonlinear state-space layer with its **own** state (the seed shared one state across
all layers, so layer 2 overwrote what layer 1 remembered):

::

    u_t = LayerNorm(z_t)                                 (optional)
    h_t = tanh(A h_{t-1} + B u_t + b)                    |h_t| <= 1 for any input and weights
    z_t <- z_t + C h_t + D * u_t                         (residual; without it z_t <- C h_t + D * u_t)

with A initialised orthogonal (Saxe et al. 2014) and D a per-channel skip. The recurrence is an Elman
RNN cell, so it runs on ``nn.RNN``'s kernel (``forward``, via :func:`~ssm_metarl.models.rnn.run_rnn`,
reset-aware) and ``torch.rnn_tanh_cell`` (``step``) on the same weights. It is *not* the linear,
diagonal structured SSM of ``ssm.py``: its scan is nonlinear and cannot be parallelised over time.

The stack is ``x -> Linear(D, H) -> L layers -> LayerNorm`` (the last norm if ``use_layer_norm``);
``output_dim = hidden_dim``. State: a tuple of L tensors, layer l's state (B, N).
"""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models.base import State, check_inputs, param_like
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.models.rnn import layer_weights, run_rnn


class SSMLayer(nn.Module):
    """One nonlinear SSM layer: z (.., H) -> z (.., H) with a state h (B, N); see the module docstring."""

    def __init__(self, hidden_dim: int, state_dim: int, use_layer_norm: bool, use_residual: bool) -> None:
        super().__init__()
        self.use_residual = use_residual
        self.norm = nn.LayerNorm(hidden_dim) if use_layer_norm else None
        self.rnn = nn.RNN(hidden_dim, state_dim, nonlinearity="tanh", batch_first=True)  # A, B, b
        self.readout = nn.Linear(state_dim, hidden_dim)  # C
        self.skip = nn.Parameter(torch.zeros(hidden_dim))  # D
        for name in ("weight_hh_l0", "weight_ih_l0"):
            nn.init.orthogonal_(self.rnn.get_parameter(name))
        for name in ("bias_ih_l0", "bias_hh_l0"):
            nn.init.zeros_(self.rnn.get_parameter(name))
        nn.init.orthogonal_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def _norm(self, z: Tensor) -> Tensor:
        n = self.norm
        return z if n is None else F.layer_norm(z, n.normalized_shape, n.weight, n.bias, n.eps)

    def _out(self, z: Tensor, u: Tensor, h: Tensor) -> Tensor:
        y = torch.addcmul(F.linear(h, self.readout.weight, self.readout.bias), self.skip, u)  # (.., H)
        return z + y if self.use_residual else y

    def forward(self, z: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, T, H), h (B, N), reset (B, T) bool -> z (B, T, H), h (B, N)."""
        u = self._norm(z)  # (B, T, H)
        h0 = h.masked_fill(reset[:, :1], 0.0).unsqueeze(0)  # (1, B, N)
        hs, hn = run_rnn(self.rnn, u, h0, reset)  # (B, T, N), (1, B, N)
        return self._out(z, u, hs), hn[0]

    def step(self, z: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, H), h (B, N), reset (B, 1) bool -> z (B, H), h (B, N)."""
        u = self._norm(z)  # (B, H)
        h = torch.rnn_tanh_cell(u, h.masked_fill(reset, 0.0), *layer_weights(self.rnn)[0])  # (B, N)
        return self._out(z, u, h), h


class ImprovedSSMBackbone(nn.Module):
    """Stacked nonlinear SSM layers with per-layer state; a :class:`SequenceModel`.

    Args:
        input_dim: D, input features.
        hidden_dim: H, model width and ``output_dim``.
        state_dim: N, state size of every layer.
        num_layers: L, number of stacked layers (and of state tensors).
        use_layer_norm: pre-norm each layer's input, and norm the output.
        use_residual: add each layer's output to its input.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 128,
        state_dim: int = 64,
        num_layers: int = 2,
        use_layer_norm: bool = True,
        use_residual: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_dim, self.output_dim, self.state_dim, self.num_layers = (
            input_dim,
            hidden_dim,
            state_dim,
            num_layers,
        )
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        nn.init.orthogonal_(self.input_proj.weight)
        nn.init.zeros_(self.input_proj.bias)
        self.layers = nn.ModuleList(
            SSMLayer(hidden_dim, state_dim, use_layer_norm, use_residual) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_dim) if use_layer_norm else None

    def initial_state(self, batch_size: int) -> State:
        """One zero state (B, N) per layer."""
        p = param_like(self)
        return tuple(p.new_zeros(batch_size, self.state_dim) for _ in range(self.num_layers))

    def _final(self, z: Tensor) -> Tensor:
        n = self.out_norm
        return z if n is None else F.layer_norm(z, n.normalized_shape, n.weight, n.bias, n.eps)

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, T, D), state L x (B, N), reset (B, T) bool -> y (B, T, H), state L x (B, N)."""
        check_inputs(x, reset, self.input_dim)
        if len(state) != self.num_layers:
            raise ValueError(
                f"expected a state of {self.num_layers} tensors (one per layer), got {len(state)}"
            )
        reset = reset.bool()
        z = self.input_proj(x)  # (B, T, H)
        new = []
        for layer, h in zip(self.layers, state):
            z, h = layer(z, h, reset)  # (B, T, H), (B, N)
            new.append(h)
        return self._final(z), tuple(new)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state L x (B, N), reset (B,) bool -> y (B, H), state L x (B, N)."""
        r = reset.bool().unsqueeze(-1)  # (B, 1)
        z = F.linear(x, self.input_proj.weight, self.input_proj.bias)  # (B, H)
        new = []
        for layer, h in zip(cast(list[SSMLayer], list(self.layers)), state):
            z, h = layer.step(z, h, r)  # (B, H), (B, N)
            new.append(h)
        return self._final(z), tuple(new)


class ImprovedSSM(ActorCritic):
    """The seed's ``ImprovedSSM`` actor-critic: an :class:`ImprovedSSMBackbone` with policy and value heads.

    Continuous actions (default) get a Gaussian policy (mean + learned log-std) squashed into
    ``[action_low, action_high]``; ``discrete=True`` gives a categorical over ``action_dim`` actions.
    A subclass of :class:`~ssm_metarl.models.heads.ActorCritic` (so ``isinstance`` and subclassing work as
    in the seed), it trains with ``train_ppo`` and saves with ``save_policy`` like every other policy;
    ``load_policy`` gives the checkpoint back as an ``ActorCritic`` with the same weights and spec.
    """

    def __init__(
        self,
        input_dim: int,
        action_dim: int,
        state_dim: int = 64,
        hidden_dim: int = 128,
        num_layers: int = 2,
        use_layer_norm: bool = True,
        use_residual: bool = True,
        discrete: bool = False,
        action_low: float = -1.0,
        action_high: float = 1.0,
        separate_critic: bool = False,
        init_log_std: float = 0.0,
    ) -> None:
        from ssm_metarl.models import policy_parts

        obs_space = gym.spaces.Box(-np.inf, np.inf, (input_dim,), np.float32)
        if discrete:
            act_space: gym.Space = gym.spaces.Discrete(action_dim)
        else:
            act_space = gym.spaces.Box(action_low, action_high, (action_dim,), np.float32)
        parts = policy_parts(
            "improved",
            obs_space,
            act_space,
            hidden_dim=hidden_dim,
            separate_critic=separate_critic,
            init_log_std=init_log_std,
            state_dim=state_dim,
            num_layers=num_layers,
            use_layer_norm=use_layer_norm,
            use_residual=use_residual,
        )
        super().__init__(**parts)
