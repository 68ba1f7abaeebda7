"""Online test-time adaptation (seed 001's ``TestTimeAdapter``): act in one Gymnasium env and adapt the policy
while acting, every ``adapt_every`` env steps.

Shape letters (see :mod:`ssm_metarl.types`): T steps in a segment, D observation features.

The loop, over ``num_episodes`` episodes of a single (non-vector) env::

    act with the current parameters (stochastic), the recurrent state carried from step to step
    every adapt_every env steps (counted over the whole run, across episode ends):
        segment = the T = adapt_every steps since the last adaptation, with the state at its start
        adaptation_steps Adam steps on  surrogate_loss(segment, bootstrapped)
                                      + experience_weight * replay_loss(buffer)      (hybrid only)
    each finished episode goes into the buffer (earlier episodes of this task)

So the number of adaptations is ``floor(total_steps / adapt_every)``: steps after the last one are acted
on but never adapted on. The segment loss is :func:`~ssm_metarl.adapt.standard.surrogate_loss` with returns
bootstrapped from the critic where the segment cuts an episode (the value of the observation after the
segment) or the time limit truncates one (the value of the final observation); its first Adam step is a
plain policy-gradient step (ratio 1), the clip keeps the later ones near the data. Actions reach the env
through :meth:`~ssm_metarl.models.heads.ActorCritic.env_action`, which maps the raw Gaussian sample into the
action space's bounds with a tanh (no clipping); the env's bounds are checked against the policy's first.

The policy (``model``) is adapted **in place**, as the seed's adapter did; :meth:`TestTimeAdapter.reset_to_meta`
restores the parameters it had when the adapter was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from ssm_metarl.adapt.hybrid import check_buffer, replay_loss
from ssm_metarl.adapt.replay import ExperienceBuffer
from ssm_metarl.adapt.standard import seeded, surrogate_loss
from ssm_metarl.envs.make import final_observation
from ssm_metarl.meta.maml import Episodes
from ssm_metarl.models.base import clear_step_caches, detach_state
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.spaces import flat_dim
from ssm_metarl.types import Rollout, State


@dataclass
class OnlineStats:
    """What happened during :meth:`TestTimeAdapter.adapt_online`."""

    total_steps: int = 0
    """env steps taken."""
    num_updates: int = 0
    """adaptations made (each of ``adaptation_steps`` gradient steps): ``total_steps // adapt_every``."""
    update_steps: list[int] = field(default_factory=list)
    """the env step count at each adaptation."""
    losses: list[float] = field(default_factory=list)
    """loss of the first gradient step of each adaptation."""
    episode_lengths: list[int] = field(default_factory=list)
    action_low: list[float] = field(default_factory=list)
    """per action dim, the smallest env action sent (continuous actions only)."""
    action_high: list[float] = field(default_factory=list)
    """per action dim, the largest env action sent (continuous actions only)."""


class _OneEnv:
    """A batch-of-one :class:`~ssm_metarl.envs.make.Environment` or vector env seen as a single env; a step
    that ends an episode returns the true final observation (not the auto-reset one)."""

    def __init__(self, env: Any) -> None:
        if env.num_envs != 1:
            raise ValueError(f"adapt_online acts in one env; got a batch of {env.num_envs}")
        self.env = env
        self.observation_space = getattr(env, "single_observation_space", env.observation_space)
        self.action_space = getattr(env, "single_action_space", env.action_space)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        return obs[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action)[None])
        return (
            final_observation(obs, info)[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            info,
        )


def _as_single(env: Any) -> Any:
    """``env`` itself for a plain Gymnasium env; a :class:`_OneEnv` view of a batch of one."""
    return _OneEnv(env) if hasattr(env, "num_envs") else env


class _Step(NamedTuple):
    """One acted step of the single env (batch of one)."""

    obs: Tensor  # (1, D) normalised
    action: Tensor  # (1,) int64 or (1, A) raw sample
    log_prob: Tensor  # (1,)
    value: Tensor  # (1,)
    reward: float
    terminated: bool
    truncated: bool
    reset: bool  # the state was zeroed before this step
    final_value: Tensor  # (1,) V(final obs) at a truncation, else 0

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def _segment_episodes(steps: list[_Step], state0: State, last_value: Tensor) -> Episodes:
    """T steps since the last adaptation as Episodes (T, 1, ...), every step valid; ``state0`` is the state
    before the first of them, ``last_value`` (1,) the value of the observation after the last."""
    dev = steps[0].value.device

    def flags(name: str) -> Tensor:
        return torch.tensor([getattr(s, name) for s in steps], device=dev).unsqueeze(1)  # (T, 1)

    def stack(name: str) -> Tensor:
        return torch.stack([getattr(s, name) for s in steps])  # (T, 1, ...)

    rollout = Rollout(
        obs=stack("obs"), action=stack("action"), log_prob=stack("log_prob"), value=stack("value"),
        reward=steps[0].value.new_tensor([s.reward for s in steps]).unsqueeze(1), terminated=flags("terminated"),
        truncated=flags("truncated"), reset=flags("reset"), final_value=stack("final_value"),
        last_value=last_value, state0=detach_state(state0),
    )  # fmt: skip
    return Episodes(rollout, torch.ones_like(rollout.reset))


class TestTimeAdapter:
    """Adapt ``model`` online while it acts (see the module docstring).

    Args:
        model: the (meta-learned) policy, an :class:`~ssm_metarl.models.heads.ActorCritic`; adapted in place.
        adaptation_lr: Adam step size.
        adaptation_steps: gradient steps per adaptation.
        buffer_size: capacity (env steps) of the buffer of this env's finished episodes.
        mode: ``standard`` (segment loss only) or ``hybrid`` (plus the replay loss on the buffer).
        experience_weight: weight of the replay loss (hybrid).
        buffer: trajectories to start the buffer with (e.g. meta-training tasks from
            :func:`~ssm_metarl.adapt.hybrid.fill_buffer`); copied, the newest ``buffer_size`` steps kept.
        replay_batch_size: trajectories replayed per adaptation (hybrid).
        gamma: discount; clip_coef: PPO ratio clip; max_grad_norm: gradient-norm clip (None: none).
        seed: seeds the first env reset, the action noise and replay sampling of each ``adapt_online`` call.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        model: ActorCritic,
        adaptation_lr: float = 1e-3,
        adaptation_steps: int = 10,
        buffer_size: int = 1000,
        mode: Literal["standard", "hybrid"] = "standard",
        experience_weight: float = 0.1,
        buffer: ExperienceBuffer | None = None,
        replay_batch_size: int = 8,
        gamma: float = 0.99,
        clip_coef: float = 0.2,
        max_grad_norm: float | None = 0.5,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, ActorCritic):
            raise TypeError(f"TestTimeAdapter adapts an ActorCritic policy, got {type(model).__name__}")
        if adaptation_lr <= 0 or adaptation_steps < 1:
            raise ValueError(
                f"need adaptation_lr > 0 and adaptation_steps >= 1, got {adaptation_lr}, {adaptation_steps}"
            )
        if mode not in ("standard", "hybrid"):
            raise ValueError(f"mode must be 'standard' or 'hybrid', got {mode!r}")
        self.model, self.mode = model, mode
        self.adaptation_lr, self.adaptation_steps = adaptation_lr, adaptation_steps
        self.experience_weight, self.replay_batch_size = experience_weight, replay_batch_size
        self.gamma, self.clip_coef, self.max_grad_norm, self.seed = gamma, clip_coef, max_grad_norm, seed
        self.buffer = ExperienceBuffer(buffer_size, next(model.parameters()).device)
        if buffer is not None:
            check_buffer(model, buffer)
            for t in buffer.items():
                if t.obs.shape[0] <= buffer_size:
                    self.buffer.add_trajectory(
                        *t[:6], task=buffer.tasks[t.task_id] if t.task_id >= 0 else None
                    )
        self.meta_parameters = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=adaptation_lr)

    def reset_to_meta(self) -> None:
        """Restore the parameters the model had when the adapter was built, and reset the optimiser."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(self.meta_parameters[name])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.adaptation_lr)
        clear_step_caches(self.model)

    def _check_env(self, env: gym.Env) -> None:
        pol = self.model
        if flat_dim(env.observation_space) != pol.backbone.input_dim:
            raise ValueError(
                f"env observations have {flat_dim(env.observation_space)} features, policy takes {pol.backbone.input_dim}"
            )
        space = env.action_space
        if pol.discrete:
            if not isinstance(space, gym.spaces.Discrete) or int(space.n) != pol.action_dim:
                raise ValueError(f"policy acts in Discrete({pol.action_dim}), env has {space}")
            return
        if not isinstance(space, gym.spaces.Box) or space.shape != (pol.action_dim,):
            raise ValueError(f"policy acts in a Box of shape ({pol.action_dim},), env has {space}")
        low = torch.as_tensor(np.asarray(space.low, np.float32))
        high = torch.as_tensor(np.asarray(space.high, np.float32))
        if pol.bounded and not (
            torch.equal(low, pol.action_low.cpu()) and torch.equal(high, pol.action_high.cpu())
        ):
            raise ValueError(
                f"the policy maps actions into [{pol.action_low.tolist()}, {pol.action_high.tolist()}] but the env's "
                f"bounds are [{low.tolist()}, {high.tolist()}]: build the policy from this env's action space"
            )

    def _obs(self, obs: Any) -> Tensor:
        """Raw env observation -> normalised (1, D) on the policy's device (normalisation not updated)."""
        p = next(self.model.parameters())
        return self.model.normalize(
            torch.as_tensor(np.asarray(obs), dtype=p.dtype, device=p.device).reshape(1, -1)
        )

    @torch.no_grad()
    def _value(self, x: Tensor, state: State) -> Tensor:
        """(1,) critic value of normalised obs x (1, D), continuing ``state`` without a reset."""
        return self.model.act(x, state, torch.zeros(1, dtype=torch.bool, device=x.device))[2]

    def _act(self, env: Any, x: Tensor, state: State, reset: bool) -> tuple[_Step, Tensor, State]:
        """Act on x (1, D) and step the env: the step, the next normalised observation, the new state."""
        pol = self.model
        action, log_prob, value, state = pol.act(x, state, torch.tensor([reset], device=x.device))
        env_action = pol.env_action(action)[0]  # the index, or a value inside the Box bounds (tanh map)
        if not pol.discrete:
            self._low, self._high = np.minimum(self._low, env_action), np.maximum(self._high, env_action)
        obs, reward, terminated, truncated, _ = env.step(env_action)
        terminated = bool(terminated)
        truncated = bool(truncated) and not terminated
        nx = self._obs(obs)
        final = self._value(nx, state) if truncated else torch.zeros_like(value)
        step = _Step(x, action, log_prob, value, float(reward), terminated, truncated, reset, final)
        return step, nx, state

    def _adapt(self, steps: list[_Step], state0: State, last_value: Tensor) -> float:
        """``adaptation_steps`` Adam steps on the segment (plus replay); returns the first step's loss."""
        ep = _segment_episodes(steps, state0, last_value)
        replay = None
        if self.mode == "hybrid" and len(self.buffer) > 0:
            replay = self.buffer.sample(self.replay_batch_size, self._rng)
        first = float("nan")
        for j in range(self.adaptation_steps):
            loss, _ = surrogate_loss(self.model, None, ep, self.gamma, self.clip_coef, bootstrap=True)
            if replay is not None:
                rep, _ = replay_loss(self.model, None, replay, self.gamma, self.clip_coef)
                loss = loss + self.experience_weight * rep
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            first = float(loss.detach()) if j == 0 else first
        clear_step_caches(self.model)
        return first

    def _store(self, steps: list[_Step]) -> None:
        """Add a finished episode to the buffer (its first ``capacity`` steps: a prefix still starts it)."""
        steps = steps[: self.buffer.capacity]
        p = steps[0].value
        self.buffer.add_trajectory(
            torch.cat([s.obs for s in steps]), torch.cat([s.action for s in steps]),
            torch.cat([s.log_prob for s in steps]), p.new_tensor([s.reward for s in steps]),
            torch.tensor([s.terminated for s in steps]), torch.tensor([s.truncated for s in steps]),
        )  # fmt: skip

    def adapt_online(
        self, env: gym.Env, num_episodes: int = 5, adapt_every: int = 10
    ) -> tuple[list[float], OnlineStats]:
        """Act for ``num_episodes`` episodes in ``env``, adapting every ``adapt_every`` env steps.

        ``env`` is a Gymnasium env, or a batch of one (:class:`~ssm_metarl.envs.make.Environment`). Returns
        the undiscounted return of each episode and :class:`OnlineStats`.
        """
        if num_episodes < 1 or adapt_every < 1:
            raise ValueError(
                f"need num_episodes >= 1 and adapt_every >= 1, got {num_episodes}, {adapt_every}"
            )
        env = _as_single(env)
        self._check_env(env)
        pol, stats, rewards = self.model, OnlineStats(), []
        self._rng = np.random.default_rng([self.seed, 0x0411])
        self._low, self._high = np.full(pol.action_dim, np.inf), np.full(pol.action_dim, -np.inf)
        with seeded(self.seed, next(pol.parameters()).device):
            clear_step_caches(pol)
            state: State = pol.initial_state(1)
            segment: list[_Step] = []
            state0, reset = state, True
            for episode in range(num_episodes):
                obs, _ = env.reset(seed=self.seed if episode == 0 else None)
                x, episode_steps = self._obs(obs), []
                while not (episode_steps and episode_steps[-1].done):
                    step, x, state = self._act(env, x, state, reset)
                    episode_steps.append(step)
                    segment.append(step)
                    reset = step.done
                    stats.total_steps += 1
                    if stats.total_steps % adapt_every == 0:  # adapt on the segment, then start a new one
                        last_value = torch.zeros_like(step.value) if reset else self._value(x, state)
                        stats.losses.append(self._adapt(segment, state0, last_value))
                        stats.num_updates += 1
                        stats.update_steps.append(stats.total_steps)
                        segment, state0 = [], state
                rewards.append(sum(s.reward for s in episode_steps))
                stats.episode_lengths.append(len(episode_steps))
                self._store(episode_steps)
        if not pol.discrete:
            stats.action_low, stats.action_high = self._low.tolist(), self._high.tolist()
        return rewards, stats


__all__ = ["OnlineStats", "TestTimeAdapter"]
