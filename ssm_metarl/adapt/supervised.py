"""The seeds' supervised test-time adapter (seed 003): ``Adapter(model, config, device)`` and
``update_step(x, y, hidden_state) -> (loss, steps_taken)`` for sequence-prediction models such as
:class:`~ssm_metarl.models.neural_ssm.StateSpaceModel`, called as ``model(x, hidden) -> (y, hidden)``.

Shape letters: B batch, T time, D input features, O output features, N state size.

``update_step`` takes ``config.num_steps`` optimiser steps on ``loss_fn(model(x, h)[0], y)`` for the same
``(x, y)`` and the same (detached) hidden state h: the state before x is the *context* of the prediction,
so every step starts from it (advancing h after each step would feed x to the model as if it were repeated
in time). With an :class:`~ssm_metarl.adapt.replay.ExperienceBuffer` of (input, target) pairs and
``experience_weight > 0``, each step adds ``experience_weight`` times the loss on ``experience_batch_size``
replayed pairs, each from its stored hidden state (or the initial state when pairs were stored without one,
i.e. when each input starts its sequence). Gradients are clipped to ``grad_clip_norm`` before each step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.adapt.replay import ExperienceBuffer


@dataclass(frozen=True)
class AdaptationConfig:
    """Settings of :class:`Adapter` (the seed's ``AdaptationConfig``; every field is used)."""

    learning_rate: float = 0.01
    """optimiser step size"""
    num_steps: int = 5
    """optimiser steps per ``update_step`` call"""
    grad_clip_norm: float | None = 1.0
    """clip the global gradient norm to this before each step (None: no clipping)"""
    optimizer: Literal["adam", "sgd"] = "adam"
    """adam (the seed's choice; its state persists across calls) or plain sgd"""
    experience_weight: float = 0.0
    """weight of the loss on replayed (input, target) pairs (needs an experience buffer when > 0)"""
    experience_batch_size: int = 32
    """pairs replayed per step"""

    def validate(self) -> None:
        if self.learning_rate <= 0 or self.num_steps < 1:
            raise ValueError(
                f"need learning_rate > 0 and num_steps >= 1, got {self.learning_rate}, {self.num_steps}"
            )
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be > 0 or None, got {self.grad_clip_norm}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.experience_weight < 0 or self.experience_batch_size < 1:
            raise ValueError(
                f"need experience_weight >= 0 and experience_batch_size >= 1, got {self.experience_weight}, "
                f"{self.experience_batch_size}"
            )


class Adapter:
    """Test-time adaptation of a sequence-prediction model (see the module docstring).

    Args:
        model: called as ``model(x, hidden) -> (output, next_hidden)``; adapted in place.
        config: an :class:`AdaptationConfig` (default settings when None).
        device: move the model there first (None: leave it); inputs follow the model's parameters.
        experience_buffer: (input, target) pairs to replay (needed when ``config.experience_weight > 0``).
        loss_fn: ``loss_fn(output, target) -> scalar``; mean squared error by default.
    """

    def __init__(
        self,
        model: nn.Module,
        config: AdaptationConfig | None = None,
        device: str | torch.device | None = None,
        experience_buffer: ExperienceBuffer | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.mse_loss,
    ) -> None:
        config = config or AdaptationConfig()
        config.validate()
        if config.experience_weight > 0 and experience_buffer is None:
            raise ValueError(
                "config.experience_weight > 0 needs an experience_buffer of (input, target) pairs"
            )
        if experience_buffer is not None and experience_buffer.kind == "trajectories":
            raise ValueError(
                "the supervised Adapter replays (input, target) pairs; this buffer holds trajectories"
            )
        self.model = model.to(device) if device is not None else model
        self.config, self.experience_buffer, self.loss_fn = config, experience_buffer, loss_fn
        params = [p for p in self.model.parameters() if p.requires_grad]
        if config.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.learning_rate)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.learning_rate)

    def _initial(self, batch_size: int) -> Any:
        model: Any = self.model
        init = getattr(model, "init_hidden", None) or model.initial_state
        return init(batch_size)

    def _loss(self, x: Tensor, y: Tensor, hidden: Any) -> Tensor:
        out, _ = self.model(x, hidden)
        if out.shape != y.shape:
            raise ValueError(f"model output {tuple(out.shape)} and target {tuple(y.shape)} differ in shape")
        return self.loss_fn(out, y)

    def update_step(self, x: Tensor, y: Tensor, hidden_state: Any = None) -> tuple[float, int]:
        """``config.num_steps`` optimiser steps on this (x, y) from ``hidden_state``.

        x: (B, D) one step or (B, T, D) a sequence; y: the matching target (B, O) or (B, T, O);
        hidden_state: the model's state before x, e.g. (B, N) (None: the initial state). It is detached:
        no gradient flows into the steps that produced it.

        Returns the loss of the last step (computed before that step's update) and the steps taken.
        """
        cfg = self.config
        p = next(self.model.parameters())
        x, y = x.to(p.device), y.to(p.device)
        if hidden_state is None:
            hidden = self._initial(x.shape[0])
        elif isinstance(hidden_state, tuple):
            hidden = tuple(h.detach().to(p.device) for h in hidden_state)
        else:
            hidden = hidden_state.detach().to(p.device)
        use_replay = (
            cfg.experience_weight > 0
            and self.experience_buffer is not None
            and len(self.experience_buffer) > 0
        )
        self.model.train()
        loss_value = float("nan")
        for _ in range(cfg.num_steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(x, y, hidden)
            if use_replay:
                assert self.experience_buffer is not None
                xe, ye, he = self.experience_buffer.sample_pairs(cfg.experience_batch_size)
                he = self._initial(xe.shape[0]) if he is None else he.to(p.device)
                loss = loss + cfg.experience_weight * self._loss(xe.to(p.device), ye.to(p.device), he)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"adaptation loss is {loss.item()}; lower learning_rate or clip gradients"
                )
            loss.backward()
            if cfg.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
            self.optimizer.step()
            loss_value = float(loss.detach())
        return loss_value, cfg.num_steps


__all__ = ["AdaptationConfig", "Adapter"]
