"""Shared check for the native acting steps: stepping a model through a sequence gives what its forward gives."""

from __future__ import annotations

from typing import Any

import torch


def assert_steps_match_forward(
    model: Any, x: torch.Tensor, state0: Any, reset: torch.Tensor, tol: float
) -> None:
    """``model.step`` over x (B, T, D) without grad, from state0 with resets, equals ``model(x, state0, reset)``:
    every output and the final state, to ``tol``."""
    y_seq, s_seq = model(x, state0, reset)
    with torch.no_grad():
        state, ys = state0, []
        for t in range(x.shape[1]):
            y_t, state = model.step(x[:, t], state, reset[:, t])
            ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y_seq.detach(), rtol=tol, atol=tol)
    for a, b in zip(state, s_seq):
        torch.testing.assert_close(a, b.detach(), rtol=tol, atol=tol)
