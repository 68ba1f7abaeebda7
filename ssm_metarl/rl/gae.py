"""Advantage and return estimators over time-major (T, B) segments, with terminated and truncated apart.

Generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using
Generalized Advantage Estimation", eq. 16)::

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
    A_t     = sum_{l >= 0} (gamma * lam)^l * delta_{t+l}      (the sum stops at the episode's end)

computed backwards as ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``. What ``V(s_{t+1})``
is depends on how step t ended:

============================  ===============================================================
step t                        ``V(s_{t+1})`` used in ``delta_t``
============================  ===============================================================
terminated                    0: a terminal state has no future reward
truncated (time limit)        ``final_value[t]``: the value of the true final observation
                              (the env has already been reset, so ``value[t+1]`` belongs to
                              the next episode)
episode goes on, t < T - 1    ``value[t + 1]``
episode goes on, t = T - 1    ``last_value``: the value of the observation after the segment
============================  ===============================================================

A step both terminated and truncated (the time limit hit on a terminal step) counts as terminated.
The lambda trace is cut at every episode end, terminated or truncated.

All functions are pure and differentiable; pass detached tensors unless gradients through the
estimate are wanted.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_inputs(fn: str, reward: Tensor, **tensors: Tensor | None) -> tuple[int, int]:
    if reward.dim() != 2:
        raise ValueError(f"{fn}: reward must be time-major (T, B), got shape {tuple(reward.shape)}")
    T, B = reward.shape
    if T == 0:
        raise ValueError(f"{fn}: empty segment, reward has shape {tuple(reward.shape)}")
    for name, x in tensors.items():
        if x is None:
            continue
        want = (B,) if name == "last_value" else (T, B)
        if tuple(x.shape) != want:
            raise ValueError(
                f"{fn}: {name} has shape {tuple(x.shape)} but must be {want} to match reward (T, B) = "
                f"{(T, B)}; squeeze a trailing value-head dim (value.squeeze(-1)) or transpose "
                "batch-first (B, T) data with .T"
            )
    return T, B


def _check_discount(fn: str, name: str, x: float) -> None:
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1], got {x}")


def _bootstrap(
    t: int, going_on: Tensor, terminated: Tensor, truncated: Tensor, final_value: Tensor | None
) -> Tensor:
    """(B,) ``V(s_{t+1})`` for step t by the table in the module docstring; ``going_on`` (B,) is the
    value used where the episode continues past step t."""
    zeros = torch.zeros_like(going_on)
    at_truncation = zeros if final_value is None else final_value[t].to(going_on.dtype)
    nxt = torch.where(truncated[t], at_truncation, going_on)
    return torch.where(terminated[t], zeros, nxt)


def gae(
    reward: Tensor,
    value: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    final_value: Tensor,
    last_value: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimate (Schulman et al. 2016, eq. 16) and the value target.

    Args:
        reward: (T, B) reward after step t.
        value: (T, B) critic value of the observation at step t.
        terminated: (T, B) bool, step t ended the episode in a terminal state: no bootstrap.
        truncated: (T, B) bool, step t ended the episode on a time limit: bootstrap with
            ``final_value[t]``.
        final_value: (T, B) value of the true final observation at truncated steps; read only where
            ``truncated & ~terminated``.
        last_value: (B,) value of the observation after step T - 1; read only where that step did not
            end the episode.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1]; ``lam = 1`` gives Monte-Carlo returns minus ``value``, ``lam = 0``
            the one-step TD error.

    Returns:
        ``(advantage, ret)``, both (T, B), with ``ret = advantage + value`` (the critic's target).
    """
    T, _ = _check_inputs(
        "gae",
        reward,
        value=value,
        terminated=terminated,
        truncated=truncated,
        final_value=final_value,
        last_value=last_value,
    )
    _check_discount("gae", "gamma", gamma)
    _check_discount("gae", "lam", lam)
    terminated, truncated = terminated.bool(), truncated.bool()
    value = value.to(reward.dtype)
    next_adv = torch.zeros_like(reward[0])  # (B,) A_{t+1}
    advantage: list[Tensor] = []  # T x (B,), built backwards
    for t in reversed(range(T)):
        going_on = last_value.to(reward.dtype) if t == T - 1 else value[t + 1]  # (B,)
        next_value = _bootstrap(t, going_on, terminated, truncated, final_value)  # (B,)
        delta = reward[t] + gamma * next_value - value[t]  # (B,)
        keep = (~(terminated[t] | truncated[t])).to(reward.dtype)  # (B,) cut the trace at episode ends
        next_adv = delta + gamma * lam * keep * next_adv
        advantage.append(next_adv)
    adv = torch.stack(advantage[::-1])  # (T, B)
    return adv, adv + value


def discounted_returns(
    reward: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    final_value: Tensor | None,
    last_value: Tensor | None,
    gamma: float,
) -> Tensor:
    """Discounted reward-to-go within each episode, for REINFORCE (Williams 1992).

    ``G_t = r_t + gamma * G_{t+1}``, where ``G_{t+1}`` is replaced at episode ends and at the segment
    end exactly as ``V(s_{t+1})`` is in :func:`gae` (see the module docstring), so
    ``discounted_returns(...) == gae(..., lam=1)[1]`` for the same bootstraps.

    Bootstrapping is explicit, never silent:

    * ``final_value`` (T, B): the value of the true final observation at truncated steps. ``None`` means
      no critic: a truncated episode's return is the sum of the rewards it got (the Monte-Carlo return
      of a task whose time limit is part of the task, e.g. fixed-horizon MAML episodes).
    * ``last_value`` (B,): the value of the observation after the last step, for episodes cut by the
      segment end. ``None`` means the returns stop there (right when every segment ends with its
      episodes, as when whole episodes are collected).

    Args:
        reward: (T, B). terminated, truncated: (T, B) bool. gamma: discount in [0, 1].

    Returns:
        (T, B) returns.
    """
    T, _ = _check_inputs(
        "discounted_returns",
        reward,
        terminated=terminated,
        truncated=truncated,
        final_value=final_value,
        last_value=last_value,
    )
    _check_discount("discounted_returns", "gamma", gamma)
    terminated, truncated = terminated.bool(), truncated.bool()
    zeros = torch.zeros_like(reward[0])  # (B,)
    end_value = zeros if last_value is None else last_value.to(reward.dtype)  # (B,)
    next_ret = zeros  # (B,) G_{t+1}
    ret: list[Tensor] = []  # T x (B,), built backwards
    for t in reversed(range(T)):
        going_on = end_value if t == T - 1 else next_ret  # (B,)
        next_ret = reward[t] + gamma * _bootstrap(t, going_on, terminated, truncated, final_value)
        ret.append(next_ret)
    return torch.stack(ret[::-1])  # (T, B)
