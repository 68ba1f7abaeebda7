"""Meta-trained policies behind an external evaluation loop's agent protocol.

Some benchmarks drive the environments themselves and call the agent back; Meta-World's
``metaworld.evaluation.metalearning_evaluation`` is the one this module is written for. Its protocol, over
``B`` vectorised sub-envs (one task each)::

    init()                              a new task per sub-env: forget everything task-specific
    adapt_action(obs) -> (actions, aux) act while gathering adaptation data
    step(timestep)                      what that action led to: .action .reward .terminated .truncated
    adapt()                             end of an adaptation phase
    eval_action(obs) -> actions         act to be scored (no reward is passed back)
    reset(mask)                         the masked sub-envs start a new episode

Two agents implement it:

* :class:`GradientAgent` (MAML, test-time adaptation): ``adapt()`` takes one step of a
  :class:`~ssm_metarl.adapt.standard.StandardAdapter` (or the hybrid one) per sub-env on the whole episodes
  that sub-env acted since the last ``adapt()``, so each sub-env then acts with its own parameters. The
  recurrent state starts afresh at every episode, as in training.
* :class:`InContextAgent` (RL²): nothing changes on ``adapt()``; the recurrent state survives episode ends
  (``reset`` only raises the ``done`` flag of the next observation) and is cleared by ``init()`` alone. It
  builds the observation of :class:`~ssm_metarl.envs.trial.TrialEnv`, ``[obs, previous action, previous
  reward, done]``, itself. During evaluation the protocol passes no reward back, so the caller gives a
  ``split_obs`` that reads the previous reward out of the observation (Meta-World's
  ``recurrent_info_in_obs=True`` envs carry it); at an episode boundary the last reward read is kept.

Both act in one batched forward per call while the sub-envs share parameters.

:func:`run_protocol` drives either agent through the same protocol on any vector env and scores *every*
sub-env's first ``evaluation_episodes`` episodes. Meta-World's own ``evaluation()`` does not: it pools the
episodes of all sub-envs that share a task name (in ML1, all of them) and stops at the first
``num_episodes`` to end, and with termination on success the successful episodes end first, so its success
rate over-counts (with ``num_episodes=1`` a round scores 1 when any sub-env succeeds first). The benchmark
reports both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ssm_metarl.adapt.standard import StandardAdapter
from ssm_metarl.errors import ConfigError
from ssm_metarl.meta.functional import Params, snapshot
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.rl.rollout import Episodes
from ssm_metarl.types import Rollout, State

SplitObs = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]
"""(B, ...) raw observation -> ((B, ...) the task env's observation, (B,) previous reward or None)."""


class Timestep(NamedTuple):
    """What :meth:`step` gets after each ``adapt_action`` (the field names Meta-World's ``Timestep`` has)."""

    observation: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    aux_policy_outputs: dict[str, np.ndarray]


class ProtocolResult(NamedTuple):
    """Per sub-env, the episodes of one round of :func:`run_protocol`."""

    adaptation_returns: np.ndarray
    """(S, B, A): return of adaptation episode a of sub-env b in adaptation step s."""
    returns: np.ndarray
    """(B, E): return of each sub-env's evaluation episodes."""
    success: np.ndarray
    """(B, E): whether the episode's last step reported ``info["success"]`` (NaN where the env has none)."""


def _finish(
    done: np.ndarray,
    count: np.ndarray,
    limit: int,
    ret: np.ndarray,
    out: np.ndarray,
    succ: np.ndarray | None,
    info: dict[str, Any],
) -> None:
    final = info.get("final_info", {})
    for b in np.flatnonzero(done):
        if count[b] < limit:
            out[b, count[b]] = ret[b]
            if succ is not None and "success" in final:
                succ[b, count[b]] = float(final["success"][b])
            count[b] += 1
        ret[b] = 0.0


def run_protocol(
    agent: Any,
    envs: Any,
    adaptation_episodes: int,
    evaluation_episodes: int,
    adaptation_steps: int = 1,
    seed: int | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> ProtocolResult:
    """One round of the protocol on ``envs`` (a same-step-autoreset vector env, one task per sub-env):
    ``init()``; ``adaptation_steps`` times: ``adaptation_episodes`` episodes per sub-env through
    ``adapt_action`` / ``step``, then ``adapt()``; then ``evaluation_episodes`` episodes per sub-env through
    ``eval_action`` / ``reset``, every one of them counted. ``on_phase("adaptation" | "evaluation")`` is
    called before each phase (Meta-World: turn termination on success off, then on)."""
    B = envs.num_envs
    agent.init()
    adapt_returns = np.zeros((adaptation_steps, B, adaptation_episodes))
    for s in range(adaptation_steps):
        if on_phase is not None:
            on_phase("adaptation")
        obs, _ = envs.reset(seed=seed if s == 0 else None)
        count, ret = np.zeros(B, dtype=np.int64), np.zeros(B)
        while (count < adaptation_episodes).any():
            actions, aux = agent.adapt_action(obs)
            next_obs, reward, term, trunc, info = envs.step(actions)
            agent.step(Timestep(obs, actions, reward, term, trunc, aux))
            ret += reward
            _finish(term | trunc, count, adaptation_episodes, ret, adapt_returns[s], None, info)
            obs = next_obs
        agent.adapt()
    if on_phase is not None:
        on_phase("evaluation")
    obs, _ = envs.reset(seed=seed if adaptation_steps == 0 else None)
    agent.reset(np.ones(B, dtype=bool))
    returns = np.zeros((B, evaluation_episodes))
    success = np.full((B, evaluation_episodes), np.nan)
    count, ret = np.zeros(B, dtype=np.int64), np.zeros(B)
    while (count < evaluation_episodes).any():
        obs, reward, term, trunc, info = envs.step(agent.eval_action(obs))
        done = term | trunc
        agent.reset(done)
        ret += reward
        _finish(done, count, evaluation_episodes, ret, returns, success, info)
    return ProtocolResult(adapt_returns, returns, success)


def _select(state: State, rows: np.ndarray) -> State:
    return tuple(s[rows] for s in state)


def _assign(state: State, rows: np.ndarray, part: State) -> State:
    out = tuple(s.clone() for s in state)
    for s, p in zip(out, part):
        s[rows] = p
    return out


class GradientAgent:
    """Gradient adaptation (``adapter.cfg``: step size, loss, which parameters) behind the protocol above."""

    def __init__(self, adapter: StandardAdapter, num_envs: int, deterministic_eval: bool = False) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.adapter, self.num_envs, self.deterministic_eval = adapter, num_envs, deterministic_eval
        self.policy: ActorCritic = adapter.policy
        self.init()

    # ----- the protocol -----------------------------------------------------------------------------
    def init(self) -> None:
        """Every sub-env back to the meta-learned parameters, with no adaptation data."""
        meta = self.adapter.initial_params()
        self.params: list[Params] = [meta] * self.num_envs
        self._actors: dict[int, ActorCritic] = {id(meta): self.policy}
        self.steps_taken = 0
        self._clear()
        self.state = self.policy.initial_state(self.num_envs)
        self.reset_flags = torch.ones(self.num_envs, dtype=torch.bool, device=self.policy.device)

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Sample actions with each sub-env's current parameters and remember them for :meth:`adapt`."""
        obs = self._obs(observations)
        action, log_prob, value = self._act(obs, deterministic=False)
        self._buf["obs"].append(obs)
        self._buf["action"].append(action)
        self._buf["log_prob"].append(log_prob)
        self._buf["value"].append(value)
        return self.policy.env_action(action), {"log_prob": log_prob.cpu().numpy()}

    def step(self, timestep: Any) -> None:
        """Record the reward and episode ends of the last :meth:`adapt_action`."""
        if len(self._buf["reward"]) != len(self._buf["obs"]) - 1:
            raise RuntimeError("GradientAgent.step must follow exactly one adapt_action")
        term = np.asarray(timestep.terminated, dtype=bool)
        trunc = np.asarray(timestep.truncated, dtype=bool) & ~term
        self._buf["reward"].append(np.asarray(timestep.reward, dtype=np.float64))
        self._buf["terminated"].append(term)
        self._buf["truncated"].append(trunc)
        self.reset_flags = torch.as_tensor(term | trunc, device=self.policy.device)

    def adapt(self) -> None:
        """One adaptation step per sub-env on the whole episodes it finished since the last call."""
        episodes = self.episodes()
        k = self.steps_taken
        new_params = []
        for b, ep in enumerate(episodes):
            if ep is None:
                raise RuntimeError(f"sub-env {b} finished no episode before adapt(): nothing to adapt on")
            params, _ = self.adapter.step(self.params[b], ep, k)
            new_params.append(params)
        self.params = new_params
        self._actors = {}
        self.steps_taken += 1
        self._clear()
        self.reset_flags = torch.ones(self.num_envs, dtype=torch.bool, device=self.policy.device)

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        """Act with each sub-env's adapted parameters (nothing is recorded)."""
        action, _, _ = self._act(self._obs(observations), self.deterministic_eval)
        return self.policy.env_action(action)

    def reset(self, env_mask: np.ndarray) -> None:
        """The masked sub-envs start a new episode: their recurrent state is cleared before the next act."""
        mask = torch.as_tensor(np.asarray(env_mask, dtype=bool), device=self.policy.device)
        self.reset_flags = self.reset_flags | mask

    # ----- the data ---------------------------------------------------------------------------------
    def episodes(self) -> list[Episodes | None]:
        """Per sub-env, its complete episodes since the last :meth:`adapt` as one :class:`Episodes` (one
        column per episode, padded to the longest; None when it finished none). Unfinished tails are
        dropped."""
        buf = self._buf
        T = len(buf["reward"])
        if T == 0:
            return [None] * self.num_envs
        obs, action = torch.stack(buf["obs"][:T]), torch.stack(buf["action"][:T])  # (T, B, ...)
        log_prob, value = torch.stack(buf["log_prob"][:T]), torch.stack(buf["value"][:T])
        reward = np.stack(buf["reward"])  # (T, B)
        term, trunc = np.stack(buf["terminated"]), np.stack(buf["truncated"])
        out: list[Episodes | None] = []
        for b in range(self.num_envs):
            ends = np.flatnonzero(term[:, b] | trunc[:, b])
            if len(ends) == 0:
                out.append(None)
                continue
            starts = np.concatenate([[0], ends[:-1] + 1])
            spans = [(int(s), int(e) + 1) for s, e in zip(starts, ends)]
            out.append(self._episodes(spans, b, obs, action, log_prob, value, reward, term, trunc))
        return out

    def _episodes(self, spans, b, obs, action, log_prob, value, reward, term, trunc) -> Episodes:
        L, E, dev, dt = max(e - s for s, e in spans), len(spans), self.policy.device, self.policy.dtype

        def pad(x: Any, dtype: Any = None) -> Tensor:
            x = torch.as_tensor(x, device=dev)
            if dtype is not None:
                x = x.to(dtype)
            cols = []
            for s, e in spans:
                col = x[s:e, b]
                fill = torch.zeros((L - (e - s), *col.shape[1:]), dtype=col.dtype, device=dev)
                cols.append(torch.cat([col, fill]))
            return torch.stack(cols, 1)  # (L, E, ...)

        lengths = torch.as_tensor([e - s for s, e in spans], device=dev)
        valid = torch.arange(L, device=dev)[:, None] < lengths[None, :]
        reset = torch.zeros(L, E, dtype=torch.bool, device=dev)
        reset[0] = True
        zeros = torch.zeros(L, E, dtype=dt, device=dev)
        rollout = Rollout(
            obs=pad(obs),
            action=pad(action),
            log_prob=pad(log_prob),
            value=pad(value),
            reward=pad(reward, dt),
            terminated=pad(term),
            truncated=pad(trunc),
            reset=reset,
            final_value=zeros,
            last_value=torch.zeros(E, dtype=dt, device=dev),
            state0=self.policy.initial_state(E),
        )
        return Episodes(rollout, valid)

    # ----- acting -----------------------------------------------------------------------------------
    def _clear(self) -> None:
        keys = ("obs", "action", "log_prob", "value", "reward", "terminated", "truncated")
        self._buf: dict[str, list[Any]] = {k: [] for k in keys}

    def _obs(self, observations: np.ndarray) -> Tensor:
        return self.policy.normalize(self.policy.encode_obs(observations))

    def _actor(self, b: int) -> ActorCritic:
        params = self.params[b]
        if id(params) not in self._actors:
            self._actors[id(params)] = snapshot(self.policy, params)
        return self._actors[id(params)]

    @torch.no_grad()
    def _act(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
        """One forward per distinct parameter set (one in all before the first adapt)."""
        groups: dict[int, list[int]] = {}
        for b in range(self.num_envs):
            groups.setdefault(id(self.params[b]), []).append(b)
        reset, parts = self.reset_flags, []
        new_state = self.state
        for rows_list in groups.values():
            rows = np.asarray(rows_list)
            actor = self._actor(rows_list[0])
            a, lp, v, s = actor.act(obs[rows], _select(self.state, rows), reset[rows], deterministic)
            parts.append((rows, a, lp, v))
            new_state = _assign(new_state, rows, s)
        self.state = new_state
        self.reset_flags = torch.zeros_like(self.reset_flags)
        if len(parts) == 1:
            return parts[0][1], parts[0][2], parts[0][3]
        a0 = parts[0][1]
        action = torch.zeros((self.num_envs, *a0.shape[1:]), dtype=a0.dtype, device=a0.device)
        log_prob = torch.zeros(self.num_envs, dtype=parts[0][2].dtype, device=a0.device)
        value = torch.zeros_like(log_prob)
        for rows, a, lp, v in parts:
            idx = torch.as_tensor(rows, device=a0.device)
            action[idx], log_prob[idx], value[idx] = a, lp, v
        return action, log_prob, value


class InContextAgent:
    """An RL² policy (trained on :class:`~ssm_metarl.envs.trial.TrialEnv` trials) behind the protocol above.

    ``split_obs`` maps the raw observations the loop passes to (the task env's observations, the previous
    rewards or None); the default passes them through with no reward, which is enough while rewards come
    from :meth:`step` (the adaptation phase) but makes :meth:`eval_action` fail after any step: build the
    evaluation envs so their observations carry the reward and give a ``split_obs`` that reads it.
    """

    def __init__(
        self,
        policy: ActorCritic,
        num_envs: int,
        split_obs: SplitObs | None = None,
        deterministic_eval: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.policy, self.num_envs = policy, num_envs
        self.split_obs: SplitObs = split_obs or (lambda o: (o, None))
        self.deterministic_eval = deterministic_eval
        act_shape = policy.action_shape
        if policy.discrete or len(act_shape) != 1:
            raise ConfigError("InContextAgent supports Box actions of shape (A,) (what Meta-World has)")
        self.act_dim = int(act_shape[0])
        self.init()

    def init(self) -> None:
        """A new trial in every sub-env: the recurrent state is cleared at the next act."""
        B = self.num_envs
        self.state = self.policy.initial_state(B)
        self.new_trial = torch.ones(B, dtype=torch.bool, device=self.policy.device)
        self.prev_action = np.zeros((B, self.act_dim), dtype=np.float32)
        self.prev_reward = np.zeros(B, dtype=np.float32)
        self.done = np.zeros(B, dtype=np.float32)
        self._stepped = False

    def trial_obs(self, observations: np.ndarray, reward: np.ndarray | None = None) -> Tensor:
        """(B, D + A + 2) the TrialEnv observation ``[obs, previous action, previous reward, done]``,
        normalised as the policy was trained."""
        inner = self.policy.encode_obs(observations).cpu().numpy()
        if reward is not None:  # a reward read from the observation; the episode's first step keeps the last
            fresh = self.done == 0.0
            self.prev_reward = np.where(fresh, np.asarray(reward, dtype=np.float32), self.prev_reward)
        x = np.concatenate(
            [
                inner.reshape(self.num_envs, -1),
                self.prev_action,
                self.prev_reward[:, None],
                self.done[:, None],
            ],
            axis=1,
        )
        t = torch.as_tensor(x, device=self.policy.device).to(self.policy.dtype)
        return self.policy.normalize(t)

    @torch.no_grad()
    def _act(self, observations: np.ndarray, deterministic: bool, reward: np.ndarray | None) -> np.ndarray:
        obs = self.trial_obs(observations, reward)
        action, _, _, self.state = self.policy.act(obs, self.state, self.new_trial, deterministic)
        self.new_trial = torch.zeros_like(self.new_trial)
        env_action = self.policy.env_action(action)
        self.prev_action = np.asarray(env_action, dtype=np.float32).reshape(self.num_envs, -1)
        self.done = np.zeros(self.num_envs, dtype=np.float32)
        return env_action

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        inner, _ = self.split_obs(np.asarray(observations))
        return self._act(inner, deterministic=False, reward=None), {}

    def step(self, timestep: Any) -> None:
        """The reward and episode ends of the last action become the next observation's tail."""
        self.prev_reward = np.asarray(timestep.reward, dtype=np.float32).reshape(self.num_envs)
        ended = np.asarray(timestep.terminated, dtype=bool) | np.asarray(timestep.truncated, dtype=bool)
        self.done = np.maximum(self.done, ended.astype(np.float32))
        self._stepped = True

    def adapt(self) -> None:
        """In-context adaptation takes no step: what was learned is in the recurrent state."""

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        inner, reward = self.split_obs(np.asarray(observations))
        if reward is None and self._stepped:
            raise ConfigError(
                "InContextAgent.eval_action gets no reward from the evaluation loop: build the envs with the "
                "previous reward in the observation (Meta-World: recurrent_info_in_obs=True) and pass a "
                "split_obs that reads it"
            )
        return self._act(inner, self.deterministic_eval, reward)

    def reset(self, env_mask: np.ndarray) -> None:
        """A new episode within the trial: the state is kept, the next observation's done flag is raised."""
        self.done = np.maximum(self.done, np.asarray(env_mask, dtype=np.float32))


__all__ = ["GradientAgent", "InContextAgent", "ProtocolResult", "SplitObs", "Timestep", "run_protocol"]
