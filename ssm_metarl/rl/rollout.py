"""The one episode loop: every acting path (training rollouts, evaluation, in-context trials, online
adaptation, rendering, the random-policy rows) steps a vector env through :class:`RolloutCollector`.

The collector lives across segments: it carries the current observation, the policy state and the
``reset`` flags from one segment to the next, and stores the state at the start of each segment in
``Rollout.state0`` so the update can re-run the policy over the segment exactly as it acted.

Per step (B envs at once, one batched forward, few torch ops):
    obs_t -> policy.act(obs_t, state, reset_t) -> action_t, log_prob_t, value_t, state
    env.step(env_action(action_t)) -> reward_t, terminated_t, truncated_t, next obs (already reset where done)
    truncated_t -> final_value_t = V(final obs) from the pre-reset state, to bootstrap GAE
    reset_{t+1} = terminated_t | truncated_t

:func:`collect_episodes` runs one whole episode in every sub-env (what evaluation, MAML and REINFORCE
use). Anything with the :class:`Actor` interface acts: an :class:`~ssm_metarl.models.heads.ActorCritic`,
or a :class:`BaselinePolicy` (uniformly random or constant actions, the baseline rows of every table).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from ssm_metarl.envs.snapshot import check_snapshot, env_state, restore_env_state
from ssm_metarl.models.heads import RunningNorm
from ssm_metarl.spaces import batch_leaves, encode, encode_one, flat_dim, from_batch_leaves
from ssm_metarl.types import Rollout, State

logger = logging.getLogger(__name__)


class Actor(Protocol):
    """What the collector needs of a policy."""

    @property
    def discrete(self) -> bool: ...

    @property
    def obs_dim(self) -> int: ...

    @property
    def action_shape(self) -> tuple[int, ...]: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def initial_state(self, batch_size: int) -> State: ...

    def encode_obs(self, obs: Any) -> Tensor: ...

    def normalize(self, obs: Tensor) -> Tensor: ...

    def update_obs_norm(self, obs: Tensor) -> None: ...

    def act(
        self, obs: Tensor, state: State, reset: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, State]: ...

    def env_action(self, action: Tensor) -> np.ndarray: ...


@dataclass
class EpisodeStats:
    """Returns, lengths and final infos of the episodes finished so far (raw, unnormalised rewards)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    """The info of each finished episode's last step (e.g. an RL² trial's ``inner_episode_returns``)."""

    def recent(self, n: int = 20) -> float:
        return float(np.mean(self.returns[-n:])) if self.returns else float("nan")


class RewardScaler:
    """Divides rewards by the running std of the discounted return (as Gymnasium's NormalizeReward)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0) -> None:
        self.gamma, self.clip = gamma, clip
        self.ret = np.zeros(num_envs)
        self.norm = RunningNorm(1)

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        self.norm.update(torch.as_tensor(self.ret[:, None]))
        self.ret[done] = 0.0
        std = float((self.norm.var[0] + 1e-8).sqrt())
        return np.clip(reward / std, -self.clip, self.clip)


def final_infos(info: dict[str, Any], done: np.ndarray) -> dict[int, dict[str, Any]]:
    """Sub-env index -> the info of its episode's last step, for the envs whose episode ended at this step
    (same-step autoreset puts it under ``info["final_info"]``), with the episode's true last observation
    under ``"final_obs"``."""
    batched = info.get("final_info", {})
    out = {}
    for b in np.flatnonzero(done):
        out[int(b)] = {
            k: v[b]
            for k, v in batched.items()
            if not k.startswith("_") and batched.get(f"_{k}", np.ones(1))[b]
        }
        if "final_obs" in info:
            out[int(b)]["final_obs"] = info["final_obs"][b]
    return out


class RolloutCollector:
    """Collects segments from ``envs`` with ``policy``; see the module docstring."""

    def __init__(
        self,
        envs: VectorEnv,
        policy: Actor,
        seed: int | None = None,
        update_obs_norm: bool = True,
        reward_scaler: RewardScaler | None = None,
    ) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.update_obs_norm = update_obs_norm
        self.reward_scaler = reward_scaler
        obs, _ = envs.reset(seed=seed)
        self.device, self.dtype = policy.device, policy.dtype
        self.obs = obs
        self.state: State = policy.initial_state(self.num_envs)
        self.reset = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self.ep_return = np.zeros(self.num_envs)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self.stats = EpisodeStats()
        self.total_steps = 0

    def state_dict(self) -> dict[str, Any]:
        """What the collector carries between segments, for a resumable checkpoint: JSON values (episode
        statistics, the envs' state, ``env_exact``: whether that state is complete) and tensors (the current
        observation, policy state and ``reset`` flags, the running episode returns and lengths, the reward
        scaler's statistics)."""
        state: dict[str, Any] = {
            "episode_returns": self.stats.returns,
            "episode_lengths": self.stats.lengths,
            "total_steps": self.total_steps,
            "env": env_state(self.envs, strict=False),
            "env_exact": not check_snapshot(self.envs),
        }
        space = self.envs.single_observation_space
        state |= {k: torch.as_tensor(v) for k, v in batch_leaves(space, self.obs).items()}
        state |= {
            "reset": self.reset,
            "ep_return": torch.as_tensor(self.ep_return),
            "ep_length": torch.as_tensor(self.ep_length),
        }
        for i, s in enumerate(self.state):
            state[f"state.{i}"] = torch.view_as_real(s) if s.is_complex() else s
        if self.reward_scaler is not None:
            state["reward_ret"] = torch.as_tensor(self.reward_scaler.ret)
            state |= {f"reward_norm.{k}": v for k, v in self.reward_scaler.norm.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any], reset_seed: int | None = None) -> None:
        """Continue from :meth:`state_dict`'s ``state``. Where the envs' state is incomplete
        (``env_exact`` false), the envs start new episodes from ``reset(seed=reset_seed)`` instead."""
        self.stats.returns = list(state["episode_returns"])
        self.stats.lengths = list(state["episode_lengths"])
        self.total_steps = int(state["total_steps"])
        if self.reward_scaler is not None:
            self.reward_scaler.ret = state["reward_ret"].numpy().copy()
            self.reward_scaler.norm.load_state_dict(
                {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("reward_norm.")}
            )
        if not state["env_exact"]:
            logger.warning(
                "the saved environments cannot be restored exactly (%s): the resumed run starts new episodes",
                "; ".join(state["env"].get("problems", [])),
            )
            self.obs, _ = self.envs.reset(seed=reset_seed)
            return
        restore_env_state(self.envs, state["env"])
        space = self.envs.single_observation_space
        self.obs = from_batch_leaves(
            space, {k: v.numpy().copy() for k, v in state.items() if k.startswith("obs")}
        )
        self.reset = state["reset"].to(self.device)
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        self.state = tuple(
            torch.view_as_complex(state[f"state.{i}"].contiguous()) if z.is_complex() else state[f"state.{i}"]
            for i, z in enumerate(self.state)
        )

    def _prep(self, policy: Actor, obs: Any) -> Tensor:
        x = policy.encode_obs(obs)  # (B, D)
        if self.update_obs_norm:
            policy.update_obs_norm(x)
        return policy.normalize(x)

    @torch.no_grad()
    def collect(
        self,
        policy: Actor,
        num_steps: int,
        deterministic: bool = False,
        stop_after_episodes: int | None = None,
        before_step: Callable[[np.ndarray], None] | None = None,
    ) -> Rollout:
        """``num_steps`` steps of every env (time-major Rollout).

        ``stop_after_episodes``: end the segment early, after the step at which that many episodes (over
        all envs, counted since the collector was made) have finished. ``before_step(obs)`` sees the raw
        observations (B, ...) the policy is about to act on (rendering hooks in here).
        """
        T, B, dev = num_steps, self.num_envs, self.device
        obs_buf = torch.zeros(T, B, policy.obs_dim, dtype=self.dtype, device=dev)
        discrete = policy.discrete
        act_dtype = torch.long if discrete else self.dtype
        act_buf = torch.zeros((T, B, *policy.action_shape), dtype=act_dtype, device=dev)
        logp_buf = torch.zeros(T, B, dtype=self.dtype, device=dev)
        val_buf = torch.zeros(T, B, dtype=self.dtype, device=dev)
        final_val = torch.zeros(T, B, dtype=self.dtype, device=dev)
        rew_np = np.zeros((T, B), dtype=np.float64)
        term_np = np.zeros((T, B), dtype=bool)
        trunc_np = np.zeros((T, B), dtype=bool)
        reset_buf = torch.zeros(T, B, dtype=torch.bool, device=dev)
        state0 = self.state

        # acting runs in inference mode (cheaper per op than no_grad: no version counters or view tracking);
        # the buffers above are ordinary tensors it writes into
        with torch.inference_mode():
            obs_t = self._prep(policy, self.obs)
            steps = T
            for t in range(T):
                if before_step is not None:
                    before_step(self.obs)
                obs_buf[t] = obs_t
                reset_buf[t] = self.reset
                action, log_prob, value, self.state = policy.act(obs_t, self.state, self.reset, deterministic)
                act_buf[t], logp_buf[t], val_buf[t] = action, log_prob, value
                next_obs, reward, terminated, truncated, info = self.envs.step(policy.env_action(action))
                done = terminated | truncated
                self._track_episodes(reward, done, info)
                if truncated.any():  # bootstrap: value of the true final observation, pre-reset state
                    final_val[t] = self._final_values(policy, info, truncated & ~terminated)
                rew_np[t] = self.reward_scaler(reward, done) if self.reward_scaler else reward
                term_np[t], trunc_np[t] = terminated, truncated & ~terminated
                self.reset = torch.as_tensor(done, device=self.device)
                self.obs = next_obs
                obs_t = self._prep(policy, next_obs)
                if stop_after_episodes is not None and len(self.stats.returns) >= stop_after_episodes:
                    steps = t + 1
                    break

            # value of the observation after the segment, as the state will see it next segment
            _, _, last_value, _ = policy.act(obs_t, self.state, self.reset)
        # what outlives the segment leaves inference mode as ordinary tensors: the state and the reset flags
        # seed the next segment and its state0 the update's forward, which an inference tensor cannot enter
        self.state = tuple(s.clone() for s in self.state)
        self.reset, last_value = self.reset.clone(), last_value.clone()
        self.total_steps += steps * B
        return Rollout(
            obs=obs_buf[:steps],
            action=act_buf[:steps],
            log_prob=logp_buf[:steps],
            value=val_buf[:steps],
            reward=torch.as_tensor(rew_np[:steps], dtype=self.dtype, device=self.device),
            terminated=torch.as_tensor(term_np[:steps], device=self.device),
            truncated=torch.as_tensor(trunc_np[:steps], device=self.device),
            reset=reset_buf[:steps],
            final_value=final_val[:steps],
            last_value=last_value,
            state0=state0,
        )

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> None:
        self.ep_return += reward
        self.ep_length += 1
        if done.any():
            finals = final_infos(info, done)
            for b in np.flatnonzero(done):
                self.stats.returns.append(float(self.ep_return[b]))
                self.stats.lengths.append(int(self.ep_length[b]))
                self.stats.infos.append(finals[int(b)])
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0

    def _final_values(self, policy: Actor, info: dict[str, Any], mask: np.ndarray) -> Tensor:
        """V(final obs) for envs in ``mask``, continuing each env's state without a reset; 0 elsewhere."""
        space = self.envs.single_observation_space
        rows = [encode_one(space, info["final_obs"][b]) if mask[b] else None for b in range(self.num_envs)]
        zero = np.zeros(policy.obs_dim, dtype=np.float32)
        final = np.stack([zero if r is None else r for r in rows])  # (B, D)
        x = policy.normalize(torch.as_tensor(final, device=self.device).to(self.dtype))
        no_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        _, _, value, _ = policy.act(x, self.state, no_reset)
        return value * torch.as_tensor(mask, device=self.device, dtype=value.dtype)


@dataclass(frozen=True)
class Episodes:
    """One whole episode from each of B envs, padded to the longest: the rollout (time-major) and the
    valid mask (T, B), True on the steps of each env's episode."""

    rollout: Rollout
    valid: Tensor
    infos: tuple[dict[str, Any], ...] = ()
    """Per env: the info of its episode's last step."""

    @property
    def returns(self) -> np.ndarray:
        """(B,) undiscounted return of each env's episode."""
        return (self.rollout.reward * self.valid).sum(0).cpu().numpy().astype(np.float64)

    @property
    def lengths(self) -> np.ndarray:
        """(B,) steps of each env's episode."""
        return self.valid.sum(0).cpu().numpy()

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def num_steps(self) -> int:
        """Env steps of all the episodes together."""
        return int(self.valid.sum())


@torch.no_grad()
def collect_episodes(
    envs: VectorEnv,
    policy: Actor,
    seed: int | None = None,
    update_obs_norm: bool = False,
    deterministic: bool = False,
    before_step: Callable[[np.ndarray], None] | None = None,
    chunk: int = 64,
) -> Episodes:
    """One whole episode from each of the B envs, every one from the initial state (``reset[0] = True``).

    Steps after an env's episode ended are padding (the env auto-resets and keeps stepping until every env
    is done; nothing there is used).
    """
    collector = RolloutCollector(envs, policy, seed=seed, update_obs_norm=update_obs_norm)
    B = collector.num_envs
    chunks: list[Rollout] = []
    length = np.zeros(B, dtype=np.int64)
    finished = np.zeros(B, dtype=bool)
    infos: dict[int, dict[str, Any]] = {}
    seen = 0
    while not finished.all():
        part = collector.collect(policy, chunk, deterministic, before_step=before_step)
        done = (part.terminated | part.truncated).cpu().numpy()  # (T, B)
        ended = 0
        for t in range(done.shape[0]):
            for b in np.flatnonzero(done[t]):
                if not finished[b]:
                    finished[b] = True
                    length[b] += t + 1
                    infos[int(b)] = collector.stats.infos[seen + ended]
                ended += 1
        seen += ended
        length[~finished] += done.shape[0]
        chunks.append(part)
    T = int(length.max())
    cat = {
        f: torch.cat([getattr(c, f) for c in chunks])[:T]
        for f in Rollout._fields
        if f not in ("last_value", "state0")
    }
    rollout = Rollout(**cat, last_value=torch.zeros_like(chunks[0].last_value), state0=chunks[0].state0)
    steps = torch.arange(T, device=rollout.reward.device)[:, None]  # (T, 1)
    valid = steps < torch.as_tensor(length, device=steps.device)[None, :]  # (T, B)
    return Episodes(rollout, valid, tuple(infos[b] for b in range(B)))


class BaselinePolicy:
    """Uniformly random (``kind="random"``) or constant actions in ``action_space``, with the Actor interface.

    Constant: the first action of a discrete space, the middle of the box (0 where unbounded) for a
    continuous one. Random actions are ``action_space.sample()`` from a copy of the space seeded by ``seed``.
    """

    def __init__(
        self, observation_space: gym.Space, action_space: gym.Space, kind: str = "random", seed: int = 0
    ) -> None:
        if kind not in ("random", "constant"):
            raise ValueError(f"kind must be 'random' or 'constant', got {kind!r}")
        self.kind, self.space = kind, copy.deepcopy(action_space)
        self.space.seed(seed)
        self.observation_space = observation_space
        self.discrete = not isinstance(action_space, gym.spaces.Box)
        self.obs_dim = flat_dim(observation_space)
        self.action_shape: tuple[int, ...] = (
            () if isinstance(action_space, gym.spaces.Discrete) else (int(np.prod(action_space.shape or ())),)
        )
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def initial_state(self, batch_size: int) -> State:
        return ()

    def encode_obs(self, obs: Any) -> Tensor:
        return torch.as_tensor(encode(self.observation_space, obs), dtype=self.dtype)

    def normalize(self, obs: Tensor) -> Tensor:
        return obs

    def update_obs_norm(self, obs: Tensor) -> None:
        return None

    def act(
        self, obs: Tensor, state: State, reset: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, State]:
        B = obs.shape[0]
        space: Any = self.space
        if self.kind == "random":
            a = np.stack([np.asarray(space.sample()).reshape(self.action_shape) for _ in range(B)])
        elif isinstance(space, gym.spaces.Discrete):
            a = np.full(B, int(space.start))
        elif isinstance(space, gym.spaces.MultiDiscrete):
            a = np.repeat(np.asarray(space.start).reshape(1, -1), B, axis=0)
        elif isinstance(space, gym.spaces.MultiBinary):
            a = np.zeros((B, *self.action_shape), dtype=np.int64)
        else:
            middle = (np.asarray(space.low, dtype=np.float64) + np.asarray(space.high, dtype=np.float64)) / 2
            a = np.repeat(np.nan_to_num(middle)[None], B, axis=0)
        action = torch.as_tensor(a, dtype=torch.long if self.discrete else self.dtype)
        zeros = torch.zeros(B, dtype=self.dtype)
        return action, zeros, zeros, state

    def env_action(self, action: Tensor) -> np.ndarray:
        a = action.numpy()
        return a.astype(self.space.dtype).reshape(a.shape[0], *(self.space.shape or ()))


__all__ = [
    "Actor",
    "BaselinePolicy",
    "EpisodeStats",
    "Episodes",
    "RewardScaler",
    "RolloutCollector",
    "collect_episodes",
    "final_infos",
]
