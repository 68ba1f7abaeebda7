"""The one contract every sequence model keeps.

Shape letters: B batch (envs), T time, D input features, H output features, N state size, L layers.

A model maps an input sequence x (B, T, D) to features y (B, T, H) and carries an opaque recurrent
``State``: a tuple of tensors, **each with the batch dimension first**, so generic code can select,
concatenate or detach states without knowing what is inside. ``reset`` (B, T) is True where step t
starts a new episode: the state is zeroed *before* that step is processed, so nothing before a reset
can influence anything after it.

``step`` handles one time step (x (B, D), reset (B,)) and must equal ``forward`` on T = 1 to float
tolerance; acting in an environment uses ``step``, learning uses ``forward`` over whole sequences.
Device and dtype always follow the parameters: there is no ``self.device``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

State = tuple[Tensor, ...]


@runtime_checkable
class SequenceModel(Protocol):
    """Structural type of every model in :data:`ssm_metarl.models.MODELS`."""

    input_dim: int
    output_dim: int

    def initial_state(self, batch_size: int) -> State: ...

    def forward(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]: ...

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]: ...


def param_like(module: torch.nn.Module) -> Tensor:
    """A parameter of ``module``: new tensors take their device and dtype from it."""
    return next(module.parameters())


def index_state(state: State, idx: Tensor | slice) -> State:
    """Select batch rows ``idx`` of every state tensor."""
    return tuple(s[idx] for s in state)


def detach_state(state: State) -> State:
    return tuple(s.detach() for s in state)


RECURRENCE_PARAMETERS = ("nu_log", "theta_log", "gamma_log", "lam")
"""Leaf names of the parameters that set a diagonal recurrence's decay, phase and input scale (the LRU's
nu/theta/gamma, the RG-LRU's lambda)."""


def is_recurrence_parameter(name: str) -> bool:
    """Whether the parameter called ``name`` (dotted, as ``named_parameters`` gives it) is one of a
    recurrence's :data:`RECURRENCE_PARAMETERS`."""
    return name.rsplit(".", 1)[-1] in RECURRENCE_PARAMETERS


def check_inputs(x: Tensor, reset: Tensor, input_dim: int) -> None:
    """Fail loudly on the shape errors that otherwise broadcast silently."""
    if x.dim() != 3 or x.shape[-1] != input_dim:
        raise ValueError(f"expected x of shape (B, T, {input_dim}), got {tuple(x.shape)}")
    if tuple(reset.shape) != tuple(x.shape[:2]):
        raise ValueError(f"expected reset of shape {tuple(x.shape[:2])}, got {tuple(reset.shape)}")
