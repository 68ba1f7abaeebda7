"""Build seeded Gymnasium envs and vector envs by id; fail loudly on ids that do not exist.

Autoreset mode
--------------
Vector envs use Gymnasium 1.x's ``AutoresetMode.SAME_STEP`` (Gymnasium >= 1.1). When sub-env ``b``'s
episode ends at a step (terminated or truncated), that same ``step`` call resets it, so

* the returned ``obs[b]`` is already the **first observation of the next episode**: the policy acts on
  it at the next step with its state reset (``Rollout.reset`` is True there);
* the **true final observation** is in ``info["final_obs"][b]`` (an object array, valid where
  ``info["_final_obs"][b]``) and the step's own info in ``info["final_info"]``.

Recurrent PPO needs that final observation to bootstrap a *truncated* episode,
``final_value = V(final_obs)`` (see :mod:`ssm_metarl.rl.gae`); :func:`final_observation` gathers it
into one (B, ...) array. The default ``NEXT_STEP`` mode would instead return the final observation
and spend the next ``step`` call on a reset whose action is ignored: a dummy transition that every
buffer, reward sum and step count must then mask out. Same-step mode has no such dummy steps.

Seeding
-------
``make_env(id, seed)`` seeds the env's RNG with a first ``reset(seed=seed)`` and seeds its action and
observation spaces; later ``reset()`` calls without a seed continue that stream, so a seed fixes the
whole sequence of episodes. ``make_vec_env(id, n, seed)`` gives sub-env ``i`` the seed ``seed + i``
(Gymnasium's own convention for ``vec_env.reset(seed=seed)``).
"""

from __future__ import annotations

import difflib
import functools
import logging
from types import TracebackType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv

from ssm_metarl.errors import EnvError
from ssm_metarl.spaces import space_from_info, space_info

logger = logging.getLogger(__name__)

__all__ = [
    "Environment",
    "final_observation",
    "make_env",
    "make_vec_env",
    "space_from_info",
    "space_info",
]


def _close_matches(env_id: str, n: int = 5) -> list[str]:
    """Registered ids closest to ``env_id`` (case-insensitive), best first."""
    ids = sorted(gym.registry)
    by_lower = {i.lower(): i for i in ids}
    matches = difflib.get_close_matches(env_id.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[m] for m in matches]


def make_env(
    env_id: str, seed: int | None = None, max_episode_steps: int | None = None, **kwargs: Any
) -> gym.Env:
    """``gym.make(env_id, ...)``, seeded, or a ``ValueError`` that says what to do.

    Args:
        env_id: a registered Gymnasium id, e.g. ``"CartPole-v1"``, ``"HalfCheetah-v5"``.
        seed: seeds the env (first ``reset(seed=seed)``) and its spaces; None leaves them unseeded.
        max_episode_steps: time limit (episodes end with ``truncated=True``); None keeps the id's default.
        **kwargs: passed to the env's constructor (e.g. ``forward_reward_weight`` for MuJoCo envs).

    Raises:
        ValueError: the id is not registered (the message lists close matches), or it is registered
            but its dependencies are missing.
    """
    if env_id not in gym.registry and env_id.startswith("ssm_metarl/RL2-"):
        from ssm_metarl.envs.trial import register_rl2_env_id

        register_rl2_env_id(env_id)
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.UnregisteredEnv as err:
        matches = _close_matches(env_id)
        hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
        raise EnvError(
            f"unknown environment id {env_id!r}.{hint} An id registered by a package exists only after "
            "that package is imported; gymnasium.pprint_registry() lists the registered ids."
        ) from err
    except (gym.error.DependencyNotInstalled, ImportError) as err:
        raise EnvError(
            f"environment {env_id!r} is registered but cannot be built here: {err}. Install what it needs "
            "(MuJoCo envs: pip install 'gymnasium[mujoco]'; Box2D envs: pip install 'gymnasium[box2d]')."
        ) from err
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def make_vec_env(
    env_id: str, num_envs: int, seed: int | None, max_episode_steps: int | None = None, **kwargs: Any
) -> SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` in one ``SyncVectorEnv`` with same-step autoreset.

    Sub-env ``i`` is ``make_env(env_id, seed + i, max_episode_steps, **kwargs)``. ``SyncVectorEnv`` is
    used because on a 2-core machine stepping small envs in subprocesses is slower than in a loop.
    Batched arrays have a leading B = ``num_envs`` dim; see the module docstring for what the returned
    observation and ``info["final_obs"]`` hold when an episode ends.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    try:
        from gymnasium.vector import AutoresetMode
    except ImportError as err:  # Gymnasium 1.0 has no autoreset modes
        raise ImportError(
            f"ssm_metarl needs Gymnasium >= 1.1 for same-step autoreset; found {gym.__version__}. "
            "Upgrade with: pip install -U 'gymnasium[mujoco]>=1.1'"
        ) from err
    env_fns = [
        functools.partial(make_env, env_id, None if seed is None else seed + i, max_episode_steps, **kwargs)
        for i in range(num_envs)
    ]
    vec_env = SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
    if seed is not None:
        vec_env.action_space.seed(seed)
        vec_env.observation_space.seed(seed)
    logger.debug("built %d x %s (seed %s, same-step autoreset)", num_envs, env_id, seed)
    return vec_env


def final_observation(next_obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """(B, ...) the observation each env really reached at this step.

    With same-step autoreset ``next_obs[b]`` is already the reset observation where env ``b``'s episode
    ended; there this returns ``info["final_obs"][b]`` instead, elsewhere ``next_obs[b]``. Evaluate the
    critic on it (with the state *before* any reset) to get ``final_value`` at truncated steps.
    """
    out = np.array(next_obs, copy=True)
    if "final_obs" in info:
        for b in np.flatnonzero(info["_final_obs"]):
            out[b] = info["final_obs"][b]
    return out


class Environment:
    """A batch of ``batch_size`` seeded envs behind Gymnasium's 5-tuple API (the seed project's name).

    ``reset() -> (obs, info)`` and ``step(actions) -> (obs, reward, terminated, truncated, info)`` with
    arrays of leading dim B = ``batch_size``; ``observation_space`` and ``action_space`` are the
    single-env spaces. Episodes autoreset in the same step (see the module docstring), so the true final
    observation of an ended episode is ``info["final_obs"]`` / :func:`final_observation`.

    Use as a context manager, or call :meth:`close`::

        with Environment("CartPole-v1", batch_size=4, seed=0) as env:
            obs, info = env.reset()                                  # obs (4, 4)
            obs, reward, terminated, truncated, info = env.step(np.zeros(4, dtype=np.int64))
    """

    def __init__(
        self,
        env_name: str,
        batch_size: int = 1,
        max_episode_steps: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.env_name = env_name
        self.vec_env = make_vec_env(env_name, batch_size, seed, max_episode_steps, **kwargs)
        self.observation_space: gym.Space = self.vec_env.single_observation_space
        self.action_space: gym.Space = self.vec_env.single_action_space

    @property
    def num_envs(self) -> int:
        """B."""
        return self.vec_env.num_envs

    @property
    def batch_size(self) -> int:
        """B (the seed project's name for ``num_envs``)."""
        return self.vec_env.num_envs

    @property
    def closed(self) -> bool:
        return bool(self.vec_env.closed)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env: obs (B, ...) and the batched info. ``seed`` reseeds env i with ``seed + i``."""
        return self.vec_env.reset(seed=seed, options=options)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with ``actions`` ((B,) ints for Discrete, (B, A) floats for Box).

        Returns ``obs`` (B, ...), ``reward`` (B,), ``terminated`` (B,) bool, ``truncated`` (B,) bool and
        the batched ``info``.
        """
        actions = np.asarray(actions)
        expected = self.vec_env.action_space.shape
        if actions.shape != expected:
            raise ValueError(
                f"{self.env_name}: actions have shape {actions.shape}, expected {expected} "
                f"(batch_size={self.num_envs} x action space {self.action_space})"
            )
        return self.vec_env.step(actions)

    def sample_actions(self) -> np.ndarray:
        """Uniformly random actions for the whole batch, (B,) or (B, A)."""
        return self.vec_env.action_space.sample()

    def close(self) -> None:
        self.vec_env.close()

    def __enter__(self) -> Environment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Environment({self.env_name!r}, batch_size={self.num_envs})"
