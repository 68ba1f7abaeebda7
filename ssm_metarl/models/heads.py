"""ActorCritic: any SequenceModel + an action head sized from the Gymnasium action space + a value head.

Shape letters: B batch (envs), T time, D observation features, H backbone features, A action dims.

Actions (:mod:`ssm_metarl.spaces`)
- ``Discrete(n)``: a categorical over n logits. The stored action is the index (int64), the env gets
  ``index + start``.
- ``MultiDiscrete(nvec)``: a factorised categorical, one categorical per component (sum(nvec) logits); the
  stored action is (k,) indices, its log-prob the sum of the components'.
- ``MultiBinary(n)``: independent Bernoullis (one logit per bit); the stored action is the bits (int64).
- ``Box``: a diagonal Gaussian over a raw action ``u`` with a learned, state-independent log-std. The
  stored action is ``u`` itself. With ``action_bounds="tanh"`` (the default) the env receives
  ``low + (tanh(u) + 1) / 2 * (high - low)``, a smooth map into the space's real bounds, so nothing is ever
  clipped after sampling; ``log_prob`` includes the change-of-variables term of the tanh (Haarnoja et al.
  2018, eq. 21), which does not depend on the parameters, so PPO ratios are those of the Gaussian. With
  ``action_bounds="clip"`` the env receives ``clip(u, low, high)`` and ``log_prob`` is the Gaussian's: the
  parameterisation of rllab, pytorch-maml-rl and learn2learn, under which the MAML papers' step sizes were
  tuned (a mean a little outside the bounds already acts at the bound, where the tanh needs ``|u| >> 1``).
  Unbounded Box spaces get the identity map.

Sampling on the acting path is written by hand (Gumbel-max for categoricals, uniform thresholds for
Bernoullis, reparameterised noise for Gaussians): building ``torch.distributions`` objects (argument
validation, broadcasting) would cost more per step than the sampling itself, so they are kept off the hot
loop.

Observations are normalised by an optional running mean-std (:class:`RunningNorm`) whose statistics are
buffers, so they travel with the checkpoint. ``forward``/``act``/``evaluate`` take *normalised*
observations; :meth:`ActorCritic.encode_obs` turns raw observations of any supported space into flat
features and :meth:`ActorCritic.normalize` normalises them (rollouts store the normalised values, so the
update sees exactly what acting saw).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssm_metarl.models.base import State
from ssm_metarl.spaces import check_action_space, encode, flat_dim, space_info

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


def _categorical(logits: Tensor, deterministic: bool) -> Tensor:
    """The mode, or a sample by Gumbel-max (argmax of logits + Gumbel noise), of categoricals (..., n)."""
    if deterministic:
        return logits.argmax(-1)
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
    return (logits + gumbel).argmax(-1)


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
    action_start: Tensor

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
        learned_step_sizes: bool = False,
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

        check_action_space(action_space)
        self.bounded = False
        self._shape: tuple[int, ...]
        box: Any = action_space
        if isinstance(action_space, gym.spaces.Discrete):
            self.action_kind, self.action_dim, self._shape = "categorical", int(action_space.n), ()
            self.register_buffer("action_start", torch.tensor(int(action_space.start)), persistent=False)
        elif isinstance(action_space, gym.spaces.MultiDiscrete):
            nvec = np.asarray(action_space.nvec).reshape(-1)
            self.action_kind, self.action_dim, self._shape = (
                "multi_categorical",
                int(nvec.sum()),
                (len(nvec),),
            )
            self.nvec = [int(n) for n in nvec]
            start = torch.as_tensor(np.asarray(action_space.start).reshape(-1), dtype=torch.long)
            self.register_buffer("action_start", start, persistent=False)
        elif isinstance(action_space, gym.spaces.MultiBinary):
            n = int(np.prod(action_space.shape))
            self.action_kind, self.action_dim, self._shape = "bernoulli", n, (n,)
        else:
            self.action_kind = "gaussian"
            self.action_dim = int(np.prod(box.shape))
            self._shape = (self.action_dim,)
            self.log_std = nn.Parameter(torch.full((self.action_dim,), float(init_log_std)))
            low = torch.as_tensor(np.asarray(box.low, dtype=np.float32).reshape(-1))
            high = torch.as_tensor(np.asarray(box.high, dtype=np.float32).reshape(-1))
            self.bounded = bool(torch.isfinite(low).all() and torch.isfinite(high).all())
            self.register_buffer("action_low", low, persistent=False)
            self.register_buffer("action_high", high, persistent=False)
        self.discrete = self.action_kind != "gaussian"
        self.actor = _orthogonal(nn.Linear(feat, self.action_dim), 0.01)
        self.critic = _orthogonal(nn.Linear(critic_feat, 1), 1.0)
        if learned_step_sizes:
            # one log step-size factor per other parameter tensor, in sorted-name order
            # (ssm_metarl.meta.functional.step_sizes); no forward pass reads it, only adaptation steps
            self.inner_log_lr = nn.Parameter(torch.zeros(sum(1 for _ in self.parameters())))

    # ----- what acting loops read ------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        """D: observation features the policy takes."""
        return int(self.backbone.input_dim)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one stored action: () for an index, (k,) for k indices or bits, (A,) for a raw Gaussian
        sample."""
        return self._shape

    def encode_obs(self, obs: Any) -> Tensor:
        """A batch of raw observations (as the vector env returns them) -> (B, D) on the policy's device
        (:func:`ssm_metarl.spaces.encode`: flattened boxes, one-hot indices, ...)."""
        x = encode(self.observation_space, obs)
        return torch.as_tensor(x, device=self.device).to(self.dtype)

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
        """params (..., A) from :meth:`forward`; action (...) or (..., k) int64, or (..., A) raw Gaussian
        samples -> log-prob (...), entropy (...)."""
        if self.action_kind == "categorical":
            logp_all = torch.log_softmax(params, dim=-1)
            log_prob = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            return log_prob, -(logp_all.exp() * logp_all).sum(-1)
        if self.action_kind == "multi_categorical":
            log_prob, entropy = params.new_zeros(params.shape[:-1]), params.new_zeros(params.shape[:-1])
            for j, logits in enumerate(params.split(self.nvec, dim=-1)):
                logp_all = torch.log_softmax(logits, dim=-1)
                log_prob = log_prob + logp_all.gather(-1, action[..., j : j + 1].long()).squeeze(-1)
                entropy = entropy - (logp_all.exp() * logp_all).sum(-1)
            return log_prob, entropy
        if self.action_kind == "bernoulli":  # log sigmoid(l) for a 1, log sigmoid(-l) for a 0
            bits = action.to(params.dtype)
            log_prob = -(F.softplus(-params) * bits + F.softplus(params) * (1.0 - bits)).sum(-1)
            p = torch.sigmoid(params)
            entropy = (F.softplus(-params) * p + F.softplus(params) * (1.0 - p)).sum(-1)
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
        if self.action_kind == "categorical":  # the hot path: one log-softmax, no entropy
            logp_all = torch.log_softmax(params, dim=-1)
            action = _categorical(logp_all, deterministic)
            log_prob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            return action, log_prob, value, s_actor + s_critic
        if self.action_kind == "multi_categorical":
            action = torch.stack(
                [_categorical(p, deterministic) for p in params.split(self.nvec, dim=-1)], -1
            )
        elif self.action_kind == "bernoulli":
            threshold = 0.5 if deterministic else torch.rand_like(params)
            action = (torch.sigmoid(params) > threshold).long()
        if self.discrete:
            log_prob, _ = self.log_prob_entropy(params, action)
            return action, log_prob, value, s_actor + s_critic
        action = params if deterministic else params + torch.randn_like(params) * self.log_std.exp()
        log_prob, _ = self.log_prob_entropy(params, action)
        return action, log_prob, value, s_actor + s_critic

    def env_action(self, action: Tensor) -> np.ndarray:
        """Map stored actions (B, ...) to what the environment takes: indices (offset by the space's start),
        bits, or values inside the Box bounds, in the action space's shape."""
        B = action.shape[0]
        shape = self.action_space.shape or ()
        if self.action_kind in ("categorical", "multi_categorical"):
            return (action + self.action_start).cpu().numpy()
        if self.action_kind == "bernoulli":
            return action.cpu().numpy().astype(self.action_space.dtype).reshape(B, *shape)
        if not self.bounded:
            a = action
        elif self.action_bounds == "clip":
            a = torch.maximum(torch.minimum(action, self.action_high), self.action_low)
        else:
            a = self.action_low + (torch.tanh(action) + 1.0) * 0.5 * (self.action_high - self.action_low)
        return a.cpu().numpy().reshape(B, *shape)

    @torch.no_grad()
    def predict(
        self, obs: np.ndarray | Tensor, state: State, reset: np.ndarray | Tensor, deterministic: bool = True
    ) -> tuple[np.ndarray, State]:
        """Convenience for users: raw observations (B, D) -> env actions (numpy), next state."""
        obs_t = self.encode_obs(obs.cpu().numpy() if isinstance(obs, Tensor) else obs)
        reset_t = torch.as_tensor(np.asarray(reset), dtype=torch.bool, device=self.device)
        action, _, _, state = self.act(self.normalize(obs_t), state, reset_t, deterministic)
        return self.env_action(action), state

    def describe(self) -> dict[str, Any]:
        """JSON description: what a checkpoint needs to rebuild this policy."""
        return {
            **self.spec,
            "observation_space": space_info(self.observation_space),
            "action_space": space_info(self.action_space),
        }
