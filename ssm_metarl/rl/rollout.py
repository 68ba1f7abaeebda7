"""Rollout collection for any ActorCritic, recurrent or not, from a SyncVectorEnv in SAME_STEP autoreset.

The collector lives across segments: it carries the current observation, the policy state and the
``reset`` flags from one segment to the next, and stores the state at the start of each segment in
``Rollout.state0`` so the update can re-run the policy over the segment exactly as it acted.

Per step (B envs at once, one batched forward, few torch ops):
    obs_t -> policy.act(obs_t, state, reset_t) -> action_t, log_prob_t, value_t, state
    env.step(env_action(action_t)) -> reward_t, terminated_t, truncated_t, next obs (already reset where done)
    truncated_t -> final_value_t = V(final obs) from the pre-reset state, to bootstrap GAE
    reset_{t+1} = terminated_t | truncated_t
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ssm_metarl.models.base import clear_step_caches
from ssm_metarl.models.heads import ActorCritic, RunningNorm
from ssm_metarl.types import Rollout, State


@dataclass
class EpisodeStats:
    """Returns and lengths of the episodes finished so far (raw, unnormalised rewards)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

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


class RolloutCollector:
    """Collects fixed-length segments from ``envs`` with ``policy``; see the module docstring."""

    def __init__(
        self,
        envs,
        policy: ActorCritic,
        seed: int | None = None,
        update_obs_norm: bool = True,
        reward_scaler: RewardScaler | None = None,
    ) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.update_obs_norm = update_obs_norm
        self.reward_scaler = reward_scaler
        obs, _ = envs.reset(seed=seed)
        p = next(policy.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.obs = obs
        self.state: State = policy.initial_state(self.num_envs)
        self.reset = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self.ep_return = np.zeros(self.num_envs)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self.stats = EpisodeStats()
        self.total_steps = 0

    def _tensor(self, x: np.ndarray) -> Tensor:
        return torch.as_tensor(x, device=self.device).to(self.dtype).reshape(self.num_envs, -1)

    def _prep(self, policy: ActorCritic, obs: np.ndarray) -> Tensor:
        x = self._tensor(obs)
        if self.update_obs_norm:
            policy.obs_norm.update(x)
        return policy.normalize(x)

    @torch.no_grad()
    def collect(self, policy: ActorCritic, num_steps: int) -> Rollout:
        T, B = num_steps, self.num_envs
        clear_step_caches(policy)  # parameters changed since the last segment; never act with stale weights
        kw = {"device": self.device}
        obs_buf = torch.zeros(T, B, policy.backbone.input_dim, dtype=self.dtype, **kw)
        act_shape = (T, B) if policy.discrete else (T, B, policy.action_dim)
        act_buf = torch.zeros(act_shape, dtype=torch.long if policy.discrete else self.dtype, **kw)
        logp_buf = torch.zeros(T, B, dtype=self.dtype, **kw)
        val_buf = torch.zeros(T, B, dtype=self.dtype, **kw)
        final_val = torch.zeros(T, B, dtype=self.dtype, **kw)
        rew_np = np.zeros((T, B), dtype=np.float64)
        term_np = np.zeros((T, B), dtype=bool)
        trunc_np = np.zeros((T, B), dtype=bool)
        reset_buf = torch.zeros(T, B, dtype=torch.bool, **kw)
        state0 = self.state

        obs_t = self._prep(policy, self.obs)
        for t in range(T):
            obs_buf[t] = obs_t
            reset_buf[t] = self.reset
            action, log_prob, value, self.state = policy.act(obs_t, self.state, self.reset)
            act_buf[t], logp_buf[t], val_buf[t] = action, log_prob, value
            next_obs, reward, terminated, truncated, info = self.envs.step(policy.env_action(action))
            done = terminated | truncated
            self._track_episodes(reward, done)
            if truncated.any():  # bootstrap: value of the true final observation, pre-reset state
                final_val[t] = self._final_values(policy, info, truncated & ~terminated)
            rew_np[t] = self.reward_scaler(reward, done) if self.reward_scaler else reward
            term_np[t], trunc_np[t] = terminated, truncated & ~terminated
            self.reset = torch.as_tensor(done, device=self.device)
            self.obs = next_obs
            obs_t = self._prep(policy, next_obs)

        # value of the observation after the segment, as the state will see it next segment
        _, _, last_value, _ = policy.act(obs_t, self.state, self.reset)
        self.total_steps += T * B
        rollout = Rollout(
            obs=obs_buf,
            action=act_buf,
            log_prob=logp_buf,
            value=val_buf,
            reward=torch.as_tensor(rew_np, dtype=self.dtype, device=self.device),
            terminated=torch.as_tensor(term_np, device=self.device),
            truncated=torch.as_tensor(trunc_np, device=self.device),
            reset=reset_buf,
            final_value=final_val,
            last_value=last_value,
            state0=state0,
        )
        return rollout

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        self.ep_return += reward
        self.ep_length += 1
        for b in np.flatnonzero(done):
            self.stats.returns.append(float(self.ep_return[b]))
            self.stats.lengths.append(int(self.ep_length[b]))
        self.ep_return[done] = 0.0
        self.ep_length[done] = 0

    def _final_values(self, policy: ActorCritic, info: dict, mask: np.ndarray) -> Tensor:
        """V(final obs) for envs in ``mask``, continuing each env's state without a reset; 0 elsewhere."""
        final = np.stack(
            [info["final_obs"][b] if mask[b] else np.zeros_like(self.obs[b]) for b in range(self.num_envs)]
        )
        x = policy.normalize(self._tensor(final))
        no_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        _, _, value, _ = policy.act(x, self.state, no_reset)
        return value * torch.as_tensor(mask, device=self.device, dtype=value.dtype)


__all__ = ["EpisodeStats", "RewardScaler", "RolloutCollector", "collect_episodes"]


@torch.no_grad()
def collect_episodes(
    envs, policy: ActorCritic, seed: int | None = None, update_obs_norm: bool = False
) -> tuple[Rollout, Tensor]:
    """One whole episode from each of the B envs, padded to the longest: ``(rollout, valid)``.

    ``valid`` (T, B) is True on the steps of each env's first episode; steps after an env's episode ended
    are padding (the env auto-resets and keeps stepping, but nothing there is used). Every episode starts
    from the initial state with ``reset[0] = True``.
    """
    collector = RolloutCollector(envs, policy, seed=seed, update_obs_norm=update_obs_norm)
    chunks: list[Rollout] = []
    finished = np.zeros(collector.num_envs, dtype=bool)
    length = np.zeros(collector.num_envs, dtype=np.int64)
    while not finished.all():
        chunk = collector.collect(policy, 64)
        done = (chunk.terminated | chunk.truncated).cpu().numpy()  # (64, B)
        for b in np.flatnonzero(~finished):
            ends = np.flatnonzero(done[:, b])
            if ends.size:
                finished[b] = True
                length[b] += ends[0] + 1
            else:
                length[b] += done.shape[0]
        chunks.append(chunk)
    T = int(length.max())
    cat = {
        f: torch.cat([getattr(c, f) for c in chunks])[:T]
        for f in Rollout._fields
        if f not in ("last_value", "state0")
    }
    rollout = Rollout(**cat, last_value=torch.zeros_like(chunks[0].last_value), state0=chunks[0].state0)
    steps = torch.arange(T, device=rollout.reward.device)[:, None]  # (T, 1)
    valid = steps < torch.as_tensor(length, device=steps.device)[None, :]  # (T, B)
    return rollout, valid
