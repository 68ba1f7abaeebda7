"""``MetaMAML`` (seed 003's API): MAML for sequence prediction with stateful models.

A task is ``(support_x, support_y, query_x, query_y)`` with tensors shaped (B, T, D) (or (B, D) for one
step). For each task the inner loop takes ``inner_steps`` SGD steps on the support loss with functional
parameters; the outer loss is the query loss under the adapted parameters, averaged over tasks, and Adam
steps the meta-parameters (Finn et al. 2017, Algorithm 2).

Hidden states: every task gets an initial state of *its own* batch size. ``initial_hidden_state`` may be
None (zeros per task), one state whose batch equals the sum of the tasks' batch sizes (split row-wise in
task order: seed 003 passes ``init_hidden(batch_size=4)`` for four tasks of batch 1), or a list with one
state per task. Anything else raises: one state broadcast across tasks of another batch size would mix
the tasks' contexts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.meta.functional import Params, call, inner_update, params_of

TaskTuple = tuple[Tensor, Tensor, Tensor, Tensor]
Hidden = Any  # a tensor (seed style) or a State tuple


def _batch(h: Hidden) -> int:
    return (h[0] if isinstance(h, tuple) else h).shape[0]


def _rows(h: Hidden, start: int, stop: int) -> Hidden:
    return tuple(s[start:stop] for s in h) if isinstance(h, tuple) else h[start:stop]


class MetaMAML:
    """MAML over sequence-prediction tasks for any model called as ``model(x, hidden) -> (y, hidden)``.

    Args:
        model: the meta-learned model (e.g. :class:`~ssm_metarl.models.neural_ssm.StateSpaceModel`).
        inner_lr: SGD step size of the inner loop.
        outer_lr: Adam step size of the meta-update.
        first_order: first-order MAML (no second derivatives).
        inner_steps: SGD steps per task.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        outer_lr: float,
        first_order: bool = False,
        inner_steps: int = 1,
    ) -> None:
        if inner_lr <= 0 or outer_lr <= 0:
            raise ValueError(f"learning rates must be > 0, got inner_lr={inner_lr}, outer_lr={outer_lr}")
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
        self.model = model
        self.inner_lr, self.outer_lr = inner_lr, outer_lr
        self.first_order, self.inner_steps = first_order, inner_steps
        self.optimizer = torch.optim.Adam(model.parameters(), lr=outer_lr)

    def _initial(self, batch_size: int) -> Hidden:
        model: Any = self.model
        init = getattr(model, "init_hidden", None) or model.initial_state
        return init(batch_size)

    def task_hidden_states(
        self, tasks: Sequence[TaskTuple], initial_hidden_state: Any = None
    ) -> list[Hidden]:
        """One initial state per task, of that task's batch size (see the module docstring)."""
        sizes = [t[0].shape[0] for t in tasks]
        if initial_hidden_state is None:
            return [self._initial(b) for b in sizes]
        if isinstance(initial_hidden_state, list):
            if len(initial_hidden_state) != len(tasks):
                raise ValueError(f"got {len(initial_hidden_state)} initial states for {len(tasks)} tasks")
            for i, (h, b) in enumerate(zip(initial_hidden_state, sizes)):
                if _batch(h) != b:
                    raise ValueError(f"task {i} has batch {b} but its initial state has batch {_batch(h)}")
            return list(initial_hidden_state)
        total = _batch(initial_hidden_state)
        if total != sum(sizes):
            raise ValueError(
                f"initial_hidden_state has batch {total}, but the tasks' batch sizes {sizes} sum to {sum(sizes)}: "
                "pass None, one state per task, or one state with a row per task sample"
            )
        bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
        return [_rows(initial_hidden_state, a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _loss(self, params: Params, x: Tensor, y: Tensor, hidden: Hidden, loss_fn: Callable) -> Tensor:
        out, _ = call(self.model, params, "forward", x, hidden)
        if out.shape != y.shape:
            raise ValueError(f"model output {tuple(out.shape)} and target {tuple(y.shape)} differ in shape")
        return loss_fn(out, y)

    def adapt_task(
        self,
        support_x: Tensor,
        support_y: Tensor,
        initial_hidden_state: Hidden = None,
        loss_fn: Callable = F.mse_loss,
        params: Params | None = None,
        first_order: bool | None = None,
    ) -> Params:
        """Adapted parameters after ``inner_steps`` SGD steps on the support data (a dict name -> tensor)."""
        params = params_of(self.model) if params is None else params
        hidden = self._initial(support_x.shape[0]) if initial_hidden_state is None else initial_hidden_state
        fo = self.first_order if first_order is None else first_order
        for _ in range(self.inner_steps):
            params = inner_update(
                params, self._loss(params, support_x, support_y, hidden, loss_fn), self.inner_lr, fo
            )
        return params

    def meta_update(
        self, tasks: Sequence[TaskTuple], initial_hidden_state: Any = None, loss_fn: Callable = F.mse_loss
    ) -> float:
        """One meta-update over ``tasks``; returns the mean query loss after adaptation (before the update)."""
        if not tasks:
            raise ValueError("meta_update needs at least one task")
        hiddens = self.task_hidden_states(tasks, initial_hidden_state)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for (sx, sy, qx, qy), h in zip(tasks, hiddens):
            adapted = self.adapt_task(sx, sy, h, loss_fn)
            loss = self._loss(adapted, qx, qy, h, loss_fn) / len(tasks)
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        return total
