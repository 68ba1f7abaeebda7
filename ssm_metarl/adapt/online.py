"""Online test-time adaptation (seed 001's ``TestTimeAdapter``): act in one Gymnasium env and adapt the policy
while acting, every ``adapt_every`` env steps.

Shape letters (see :mod:`ssm_metarl.types`): T steps in a segment, D observation features.

The loop, over ``num_episodes`` episodes of a single env, through the rollout collector (the one episode
loop of the package)::

    act with the current parameters (stochastic), the recurrent state carried from step to step
    every adapt_every env steps (counted over the whole run, across episode ends):
        segment = the T = adapt_every steps since the last adaptation, with the state at its start
        cfg.steps Adam steps (step size cfg.lr) on  surrogate_loss(segment, bootstrapped)
                                      + cfg.experience_weight * replay_loss(buffer)      (hybrid only)
    each finished episode goes into the buffer (earlier episodes of this task)

So the number of adaptations is ``floor(total_steps / adapt_every)``: steps after the last one are acted
on but never adapted on. The segment loss is :func:`~ssm_metarl.adapt.standard.surrogate_loss` with returns
bootstrapped from the critic where the segment cuts an episode or the time limit truncates one; its first
Adam step is a plain policy-gradient step (ratio 1), the clip keeps the later ones near the data. Actions
reach the env through :meth:`~ssm_metarl.models.heads.ActorCritic.env_action` (tanh-mapped into the
bounds); the env's spaces are checked against the policy's first.

The policy (``model``) is adapted **in place**, as the seed's adapter did; :meth:`TestTimeAdapter.reset_to_meta`
restores the parameters it had when the adapter was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from ssm_metarl.adapt.hybrid import check_buffer, replay_loss
from ssm_metarl.adapt.replay import ExperienceBuffer
from ssm_metarl.adapt.standard import surrogate_loss
from ssm_metarl.config import AdaptConfig
from ssm_metarl.errors import SpaceError
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.evaluate import seeded
from ssm_metarl.rl.rollout import Episodes, RolloutCollector
from ssm_metarl.spaces import flat_dim
from ssm_metarl.types import Rollout


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


def _one_env(env: Any) -> VectorEnv:
    """A vector env of one over ``env`` (a Gymnasium env, a vector env of one, or an ``Environment`` of one);
    it is never closed here: the env stays the caller's."""
    vec = getattr(env, "vec_env", env)
    if isinstance(vec, VectorEnv):
        if vec.num_envs != 1:
            raise ValueError(f"adapt_online acts in one env; got a batch of {vec.num_envs}")
        return vec
    return SyncVectorEnv([lambda: env], autoreset_mode=AutoresetMode.SAME_STEP)


def _slice(r: Rollout, start: int, stop: int) -> Rollout:
    """Steps ``start:stop`` of a one-env rollout (state0 is not meaningful for a slice)."""
    return r._replace(
        **{f: getattr(r, f)[start:stop] for f in Rollout._fields if f not in ("last_value", "state0")}
    )


class TestTimeAdapter:
    """Adapt ``model`` online while it acts (see the module docstring).

    The seed's arguments set an :class:`~ssm_metarl.config.AdaptConfig` (``cfg``, which takes precedence
    when given): ``adaptation_lr`` is its ``lr`` (an Adam step size here), ``adaptation_steps`` its ``steps``
    (gradient steps per adaptation), ``experience_weight`` and ``replay_batch_size`` the hybrid replay's,
    ``gamma`` and ``clip_coef`` the loss's.

    Args:
        model: the (meta-learned) policy, an :class:`~ssm_metarl.models.heads.ActorCritic`; adapted in place.
        buffer_size: capacity (env steps) of the buffer of this env's finished episodes.
        mode: ``standard`` (segment loss only) or ``hybrid`` (plus the replay loss on the buffer).
        buffer: trajectories to start the buffer with (e.g. meta-training tasks from
            :func:`~ssm_metarl.adapt.hybrid.fill_buffer`); copied, the newest ``buffer_size`` steps kept.
        max_grad_norm: gradient-norm clip (None: none).
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
        cfg: AdaptConfig | None = None,
    ) -> None:
        if not isinstance(model, ActorCritic):
            raise TypeError(f"TestTimeAdapter adapts an ActorCritic policy, got {type(model).__name__}")
        if mode not in ("standard", "hybrid"):
            raise ValueError(f"mode must be 'standard' or 'hybrid', got {mode!r}")
        self.cfg = cfg or AdaptConfig(
            steps=adaptation_steps,
            lr=adaptation_lr,
            algo="ppo",
            gamma=gamma,
            clip_coef=clip_coef,
            experience_weight=experience_weight,
            replay_batch_size=replay_batch_size,
        )
        if self.cfg.steps < 1:
            raise ValueError(f"adaptation_steps must be >= 1, got {self.cfg.steps}")
        self.model, self.mode, self.max_grad_norm, self.seed = model, mode, max_grad_norm, seed
        self.buffer = ExperienceBuffer(buffer_size, model.device)
        if buffer is not None:
            check_buffer(model, buffer)
            for t in buffer.items():
                if t.obs.shape[0] <= buffer_size:
                    task = buffer.tasks[t.task_id] if t.task_id >= 0 else None
                    self.buffer.add_trajectory(
                        t.obs, t.action, t.log_prob, t.reward, t.terminated, t.truncated, task
                    )
        self.meta_parameters = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.cfg.lr)

    def reset_to_meta(self) -> None:
        """Restore the parameters the model had when the adapter was built, and reset the optimiser."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(self.meta_parameters[name])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def _check_env(self, vec: VectorEnv) -> None:
        pol = self.model
        obs_space, space = vec.single_observation_space, vec.single_action_space
        if flat_dim(obs_space) != pol.obs_dim:
            raise SpaceError(
                f"env observations have {flat_dim(obs_space)} features, policy takes {pol.obs_dim}"
            )
        if not isinstance(space, gym.spaces.Box) or not pol.bounded:
            if space != pol.action_space:
                raise SpaceError(f"policy acts in {pol.action_space}, env has {space}")
            return
        low = torch.as_tensor(np.asarray(space.low, np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(space.high, np.float32).reshape(-1))
        if space.shape != pol.action_space.shape or not (
            torch.equal(low, pol.action_low.cpu()) and torch.equal(high, pol.action_high.cpu())
        ):
            raise SpaceError(
                f"the policy maps actions into [{pol.action_low.tolist()}, {pol.action_high.tolist()}] but the env's "
                f"bounds are [{low.tolist()}, {high.tolist()}]: build the policy from this env's action space"
            )

    def _adapt(self, segment: Rollout, rng: np.random.Generator) -> float:
        """``cfg.steps`` Adam steps on the segment (plus replay); returns the first step's loss."""
        ep = Episodes(segment, torch.ones_like(segment.reset))
        replay = (
            self.buffer.sample(self.cfg.replay_batch, rng)
            if self.mode == "hybrid" and len(self.buffer)
            else None
        )
        first = float("nan")
        for j in range(self.cfg.steps):
            loss, _ = surrogate_loss(self.model, None, ep, self.cfg.gamma, self.cfg.clip_coef, bootstrap=True)
            if replay is not None:
                rep, _ = replay_loss(self.model, None, replay, self.cfg.gamma, self.cfg.clip_coef)
                loss = loss + self.cfg.experience_weight * rep
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
            first = float(loss.detach()) if j == 0 else first
        return first

    def _store(self, episode: list[Rollout]) -> None:
        """Add a finished episode to the buffer (its first ``capacity`` steps: a prefix still starts it)."""
        cap = self.buffer.capacity
        obs, action, log_prob, reward, terminated, truncated = (
            torch.cat([getattr(p, f)[:, 0] for p in episode])[:cap] for f in _STORED
        )
        self.buffer.add_trajectory(obs, action, log_prob, reward, terminated, truncated)

    def adapt_online(
        self, env: Any, num_episodes: int = 5, adapt_every: int = 10
    ) -> tuple[list[float], OnlineStats]:
        """Act for ``num_episodes`` episodes in ``env``, adapting every ``adapt_every`` env steps.

        ``env`` is a Gymnasium env, or a batch of one (:class:`~ssm_metarl.envs.make.Environment`). Returns
        the undiscounted return of each episode and :class:`OnlineStats`.
        """
        if num_episodes < 1 or adapt_every < 1:
            raise ValueError(
                f"need num_episodes >= 1 and adapt_every >= 1, got {num_episodes}, {adapt_every}"
            )
        vec = _one_env(env)
        self._check_env(vec)
        pol, stats = self.model, OnlineStats()
        rng = np.random.default_rng([self.seed, 0x0411])
        low, high = np.full(pol.action_dim, np.inf), np.full(pol.action_dim, -np.inf)
        current: list[Rollout] = []
        with seeded(self.seed, pol.device):
            collector = RolloutCollector(vec, pol, seed=self.seed, update_obs_norm=False)
            while len(collector.stats.returns) < num_episodes:
                seg = collector.collect(pol, adapt_every, stop_after_episodes=num_episodes)
                T = seg.num_steps
                stats.total_steps += T
                if not pol.discrete:
                    sent = pol.env_action(seg.action[:, 0])
                    low, high = np.minimum(low, sent.min(0)), np.maximum(high, sent.max(0))
                start = 0
                for t in np.flatnonzero(seg.done[:, 0].cpu().numpy()).tolist():
                    self._store([*current, _slice(seg, start, t + 1)])
                    current, start = [], t + 1
                if start < T:
                    current.append(_slice(seg, start, T))
                if adapt_every == T:  # a whole segment: adapt on it, then act on
                    stats.losses.append(self._adapt(seg, rng))
                    stats.num_updates += 1
                    stats.update_steps.append(stats.total_steps)
        stats.episode_lengths = list(collector.stats.lengths)
        if not pol.discrete:
            stats.action_low, stats.action_high = low.tolist(), high.tolist()
        return list(collector.stats.returns), stats


_STORED = ("obs", "action", "log_prob", "reward", "terminated", "truncated")


__all__ = ["OnlineStats", "TestTimeAdapter"]
