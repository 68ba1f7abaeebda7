"""ActorCritic: any SequenceModel + an action head sized from the Gymnasium action space + a value head.

Shape letters: B batch (envs), T time, D observation features, H backbone features, A action dims.

Actions
- ``Discrete(n)``: a categorical over n logits. The stored action is the index (int64).
- ``Box``: a diagonal Gaussian over a raw action ``u`` with a learned, state-independent log-std. The
  stored action is ``u`` itself. With ``action_bounds="tanh"`` (the default) the env receives
  ``low + (tanh(u) + 1) / 2 * (high - low)``, a smooth map into the space's real bounds, so nothing is ever
  clipped after sampling; ``log_prob`` includes the change-of-variables term of the tanh (Haarnoja et al.
  2018, eq. 21), which does not depend on the parameters, so PPO ratios are those of the Gaussian. With
  ``action_bounds="clip"`` the env receives ``clip(u, low, high)`` and ``log_prob`` is the Gaussian's: the
  parameterisation of rllab, pytorch-maml-rl and learn2learn, under which the MAML papers' step sizes were
  tuned (a mean a little outside the bounds already acts at the bound, where the tanh needs ``|u| >> 1``).
  Unbounded Box spaces get the identity map.

Sampling on the acting path is written by hand (Gumbel-max for categoricals, reparameterised noise for
Gaussians): ``torch.distributions`` objects cost about 2x per step here and are kept off the hot loop.

Observations are normalised by an optional running mean-std (:class:`RunningNorm`) whose statistics are
buffers, so they travel with the checkpoint. ``forward``/``act``/``evaluate`` take *normalised*
observations; :meth:`ActorCritic.normalize` maps raw ones (rollouts store the normalised values, so the
update sees exactly what acting saw).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from ssm_metarl.models.base import State
from ssm_metarl.spaces import flat_dim, space_info

_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)
ACTION_BOUNDS = ("tanh", "clip")


class RunningNorm(nn.Module):
    """Running mean and variance of observations (parallel-variance update, Chan et al. 1979)."""

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, dim: int, enabled: bool = True, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold a batch x (..., D) into the statistics."""
        if not self.enabled:
            return
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        n = x.shape[0]
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        delta = b_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + b_var * n + delta.square() * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        mean = self.mean.to(x.dtype)
        std = (self.var + self.eps).sqrt().to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """A policy and a value function on top of a SequenceModel backbone.

    ``critic_backbone`` (optional) gives the value function its own recurrent network; its state is
    appended to the actor's, and callers still see one opaque State.
    """

    backbone: Any
    """A SequenceModel (see :mod:`ssm_metarl.models.base`)."""
    critic_backbone: Any
    actor: nn.Linear
    critic: nn.Linear
    log_std: nn.Parameter
    action_low: Tensor
    action_high: Tensor

    def __init__(
        self,
        backbone: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        critic_backbone: Any = None,
        init_log_std: float = 0.0,
        normalize_obs: bool = False,
        spec: dict[str, Any] | None = None,
        action_bounds: str = "tanh",
    ) -> None:
        super().__init__()
        if action_bounds not in ACTION_BOUNDS:
            raise ValueError(f"action_bounds must be one of {ACTION_BOUNDS}, got {action_bounds!r}")
        self.action_bounds = action_bounds
        obs_dim = flat_dim(observation_space)
        if backbone.input_dim != obs_dim:
            raise ValueError(f"backbone takes {backbone.input_dim} inputs, observation space gives {obs_dim}")
        self.backbone = backbone
        self.critic_backbone = critic_backbone
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_norm = RunningNorm(obs_dim, enabled=normalize_obs)
        self.spec = dict(spec or {})
        self._n_actor_state = len(backbone.initial_state(1))
        feat = backbone.output_dim
        critic_feat = critic_backbone.output_dim if critic_backbone is not None else feat

        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete = True
            self.action_dim = int(action_space.n)
            self.actor = _orthogonal(nn.Linear(feat, self.action_dim), 0.01)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete = False
            self.action_dim = int(action_space.shape[0])
            self.actor = _orthogonal(nn.Linear(feat, self.action_dim), 0.01)
            self.log_std = nn.Parameter(torch.full((self.action_dim,), float(init_log_std)))
            low = torch.as_tensor(np.asarray(action_space.low, dtype=np.float32))
            high = torch.as_tensor(np.asarray(action_space.high, dtype=np.float32))
            self.bounded = bool(torch.isfinite(low).all() and torch.isfinite(high).all())
            self.register_buffer("action_low", low, persistent=False)
            self.register_buffer("action_high", high, persistent=False)
        else:
            raise ValueError(f"unsupported action space {action_space!r}: expected Discrete(n) or a 1-D Box")
        self.critic = _orthogonal(nn.Linear(critic_feat, 1), 1.0)

    # ----- what acting loops read ------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        """D: observation features the policy takes."""
        return int(self.backbone.input_dim)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one stored action: () for an index, (A,) for a raw Gaussian sample."""
        return () if self.discrete else (self.action_dim,)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def update_obs_norm(self, obs: Tensor) -> None:
        """Fold raw observations (..., D) into the running normalisation statistics (if enabled)."""
        self.obs_norm.update(obs)

    # ----- state -------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        state = self.backbone.initial_state(batch_size)
        if self.critic_backbone is not None:
            state = state + self.critic_backbone.initial_state(batch_size)
        return state

    def _split(self, state: State) -> tuple[State, State]:
        return state[: self._n_actor_state], state[self._n_actor_state :]

    # ----- observation normalisation ------------------------------------------------------------
    def normalize(self, obs: Tensor) -> Tensor:
        """Raw observations (..., D) -> the normalised inputs the network takes."""
        return self.obs_norm(obs)

    # ----- sequence path (learning) --------------------------------------------------------------
    def forward(self, obs: Tensor, state: State, reset: Tensor) -> tuple[Tensor, Tensor, State]:
        """obs (B, T, D), reset (B, T) -> action parameters (B, T, A), value (B, T), state."""
        s_actor, s_critic = self._split(state)
        feat, s_actor = self.backbone(obs, s_actor, reset)  # (B, T, H)
        if self.critic_backbone is not None:
            cfeat, s_critic = self.critic_backbone(obs, s_critic, reset)
        else:
            cfeat = feat
        return self.actor(feat), self.critic(cfeat).squeeze(-1), s_actor + s_critic

    def evaluate(
        self, obs: Tensor, state: State, reset: Tensor, action: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, State]:
        """Log-prob (B, T), entropy (B, T), value (B, T) of stored actions under the current parameters."""
        params, value, state = self(obs, state, reset)
        log_prob, entropy = self.log_prob_entropy(params, action)
        return log_prob, entropy, value, state

    def log_prob_entropy(self, params: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """params (..., A) from :meth:`forward`; action (...) int64 or (..., A) raw Gaussian samples."""
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            log_prob = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return log_prob, entropy
        log_std = self.log_std.expand_as(params)
        z = (action - params) * torch.exp(-log_std)
        log_prob = (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(-1) - self._squash_correction(action)
        entropy = (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)
        return log_prob, entropy

    def _squash_correction(self, u: Tensor) -> Tensor:
        """sum log |d env_action / du| for the tanh map; 0 for unbounded spaces and for clipping."""
        if not self.bounded or self.action_bounds == "clip":
            return u.new_zeros(u.shape[:-1])
        scale = torch.log((self.action_high - self.action_low) / 2)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        return (2.0 * (_LOG_2 - u - nn.functional.softplus(-2.0 * u)) + scale).sum(-1)

    # ----- step path (acting) -----------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, obs: Tensor, state: State, reset: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, State]:
        """obs (B, D) normalised, reset (B,) -> action (B,) or (B, A), log_prob (B,), value (B,), state."""
        s_actor, s_critic = self._split(state)
        feat, s_actor = self.backbone.step(obs, s_actor, reset)  # (B, H)
        if self.critic_backbone is not None:
            cfeat, s_critic = self.critic_backbone.step(obs, s_critic, reset)
        else:
            cfeat = feat
        value = self.critic(cfeat).squeeze(-1)
        params = self.actor(feat)
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            if deterministic:
                action = params.argmax(-1)
            else:  # Gumbel-max: argmax(logits + Gumbel noise) is a categorical sample
                gumbel = -torch.log(-torch.log(torch.rand_like(params).clamp_(1e-20, 1.0)))
                action = (logp_all + gumbel).argmax(-1)
            log_prob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            return action, log_prob, value, s_actor + s_critic
        action = params if deterministic else params + torch.randn_like(params) * self.log_std.exp()
        log_prob, _ = self.log_prob_entropy(params, action)
        return action, log_prob, value, s_actor + s_critic

    def env_action(self, action: Tensor) -> np.ndarray:
        """Map stored actions to what the environment takes (indices, or values inside the Box bounds)."""
        if self.discrete:
            return action.cpu().numpy()
        if not self.bounded:
            return action.cpu().numpy()
        if self.action_bounds == "clip":
            return torch.maximum(torch.minimum(action, self.action_high), self.action_low).cpu().numpy()
        a = self.action_low + (torch.tanh(action) + 1.0) * 0.5 * (self.action_high - self.action_low)
        return a.cpu().numpy()

    @torch.no_grad()
    def predict(
        self, obs: np.ndarray | Tensor, state: State, reset: np.ndarray | Tensor, deterministic: bool = True
    ) -> tuple[np.ndarray, State]:
        """Convenience for users: raw observations (B, D) -> env actions (numpy), next state."""
        p = next(self.parameters())
        obs_np = np.asarray(obs)
        obs_t = torch.as_tensor(obs_np, dtype=p.dtype, device=p.device).reshape(obs_np.shape[0], -1)
        reset_t = torch.as_tensor(np.asarray(reset), dtype=torch.bool, device=p.device)
        action, _, _, state = self.act(self.normalize(obs_t), state, reset_t, deterministic)
        return self.env_action(action), state

    def describe(self) -> dict[str, Any]:
        """JSON description: what a checkpoint needs to rebuild this policy."""
        return {
            **self.spec,
            "observation_space": space_info(self.observation_space),
            "action_space": space_info(self.action_space),
        }
