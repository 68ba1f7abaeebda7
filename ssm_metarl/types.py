"""Named containers for rollouts and training batches, and the shape-letter glossary.

Shape letters (used in every shape comment and docstring of the package):

====  ==========================================================================
T     time steps in a rollout segment (or an episode / trial)
B     batch: parallel environments (one sequence per env)
D     observation features (``*obs_shape`` when observations are not flat)
A     action dimensions (continuous actions); discrete actions have no A axis
H     model width (features out of a sequence model)
N     recurrent state size
K     tasks (meta-batch)
L     layers
====  ==========================================================================

Everything collected from environments is **time-major**, ``(T, B, ...)``, as in CleanRL, because the
rollout loop writes one time step at a time. Sequence models take **batch-first** input ``(B, T, ...)``;
the update transposes once (``x.transpose(0, 1)``). The recurrent state is the exception to
time-major: it is an opaque tuple of tensors, each with the batch dimension first
(see :mod:`ssm_metarl.models.base`).

Episode boundaries inside a segment, for env ``b``:

* ``terminated[t, b]``: step ``t`` ended the episode in a terminal state (no future reward).
* ``truncated[t, b]``: step ``t`` ended the episode on a time limit; the episode *could* have gone on,
  so its value is bootstrapped from ``final_value[t, b]``, the value of the true final observation.
* ``reset[t, b]``: step ``t`` is the first step of an episode, so the policy state was zeroed before
  it. ``reset[t] == terminated[t-1] | truncated[t-1]`` inside a segment; ``reset[0]`` carries over
  from the previous segment (True on the very first segment).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

State = tuple[Tensor, ...]
"""Opaque recurrent state: a tuple of tensors, each ``(B, ...)`` (batch first)."""


class Rollout(NamedTuple):
    """One segment of experience from ``B`` parallel envs over ``T`` steps (time-major).

    Holds everything GAE (:func:`ssm_metarl.rl.gae.gae`) and the recurrent PPO update need, and nothing
    else: GAE takes ``reward, value, terminated, truncated, final_value, last_value``; the update
    re-runs the policy from ``state0`` over ``obs`` with ``reset``.
    """

    obs: Tensor
    """(T, B, D) float: the observation the policy acted on at step t (a reset obs when reset[t])."""
    action: Tensor
    """(T, B, A) float raw **pre-squash** Gaussian sample for continuous actions, or (T, B) int64 index
    for discrete ones: exactly what the log-prob was computed on."""
    log_prob: Tensor
    """(T, B) float: log-prob of ``action`` under the acting policy (squash-corrected if squashed)."""
    value: Tensor
    """(T, B) float: critic value of ``obs[t]``."""
    reward: Tensor
    """(T, B) float: reward received after step t."""
    terminated: Tensor
    """(T, B) bool: step t ended the episode in a terminal state (no bootstrap)."""
    truncated: Tensor
    """(T, B) bool: step t ended the episode on a time limit (bootstrap with ``final_value``)."""
    reset: Tensor
    """(T, B) bool: step t is the first step of an episode; the state was zeroed before it."""
    final_value: Tensor
    """(T, B) float: value of the true final observation at truncated steps, zero elsewhere."""
    last_value: Tensor
    """(B,) float: value of the observation after the last step (used when the episode goes on)."""
    state0: State
    """Policy state at the segment start, before ``reset[0]`` is applied; each tensor (B, ...)."""

    @property
    def done(self) -> Tensor:
        """(T, B) bool: the episode ended at step t (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        """T."""
        return self.reward.shape[0]

    @property
    def num_envs(self) -> int:
        """B."""
        return self.reward.shape[1]

    def check_shapes(self) -> None:
        """Raise ``ValueError`` naming the field if any shape disagrees with ``reward`` (T, B)."""
        T, B = self.reward.shape
        for name in ("log_prob", "value", "terminated", "truncated", "reset", "final_value"):
            got = tuple(getattr(self, name).shape)
            if got != (T, B):
                raise ValueError(f"Rollout.{name} has shape {got}, expected (T, B) = {(T, B)}")
        for name in ("obs", "action"):
            got = tuple(getattr(self, name).shape)
            if got[:2] != (T, B):
                raise ValueError(f"Rollout.{name} has shape {got}, expected leading (T, B) = {(T, B)}")
        if tuple(self.last_value.shape) != (B,):
            raise ValueError(f"Rollout.last_value has shape {tuple(self.last_value.shape)}, expected ({B},)")
        for i, s in enumerate(self.state0):
            if s.shape[0] != B:
                raise ValueError(
                    f"Rollout.state0[{i}] has shape {tuple(s.shape)}, expected batch-first ({B}, ...)"
                )


__all__ = ["Rollout", "State"]
