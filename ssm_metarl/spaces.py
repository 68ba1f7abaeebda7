"""Every Gymnasium space a policy takes, as network input and as JSON (checkpoints know their spaces).

Observations (the set Stable-Baselines3 supports) become one flat float vector per step, in a fixed order:

==================  ============================================================================
``Box``             flattened (any shape), C order
``Discrete(n)``     one-hot of ``obs - start`` (n features)
``MultiDiscrete``   concatenated one-hots, one per component (sum(nvec) features)
``MultiBinary``     the bits as 0.0 / 1.0, flattened
``Tuple``           its parts' encodings, concatenated in order
``Dict``            its parts' encodings, concatenated in the space's key order (``space.spaces``)
==================  ============================================================================

Actions: ``Discrete`` (categorical), ``MultiDiscrete`` (a factorised categorical), ``MultiBinary``
(independent Bernoullis) and ``Box`` (a Gaussian; see :mod:`ssm_metarl.models.heads`). Anything else
(``Text``, ``Graph``, ``Sequence``, nested action spaces) raises :class:`SpaceError` naming the space and
what is supported, before anything is built.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.errors import SpaceError

OBSERVATION_SPACES = "Box, Discrete, MultiDiscrete, MultiBinary, and Tuple / Dict of these"
ACTION_SPACES = "Discrete, MultiDiscrete, MultiBinary and Box"


def _num(v: float) -> float | str:
    """Strict JSON has no infinities: write them as the strings "inf" / "-inf" (float() reads them back)."""
    return float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf")


def space_info(space: gym.Space) -> dict[str, Any]:
    """Describe a supported space as JSON-serialisable data (:func:`space_from_info` inverts it)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": [_num(v) for v in np.asarray(space.low, dtype=np.float64).reshape(-1)],
            "high": [_num(v) for v in np.asarray(space.high, dtype=np.float64).reshape(-1)],
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_info(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.Dict):
        return {
            "type": "Dict",
            "keys": list(space.spaces),
            "spaces": [space_info(s) for s in space.spaces.values()],
        }
    raise SpaceError(
        f"unsupported space {space!r}: ssm-metarl policies take observations in {OBSERVATION_SPACES}"
    )


def space_from_info(info: Any) -> gym.Space:
    """Inverse of :func:`space_info`; a malformed description raises :class:`SpaceError` saying what is wrong."""
    if not isinstance(info, dict):
        raise SpaceError(f"a space description must be a JSON object, got {info!r}")
    kind = info.get("type")
    try:
        if kind == "Discrete":
            return gym.spaces.Discrete(int(info["n"]), start=int(info.get("start", 0)))
        if kind == "Box":
            shape = tuple(int(s) for s in info["shape"])
            dtype = np.dtype(info.get("dtype", "float32"))
            low = np.asarray([float(v) for v in info["low"]], dtype=dtype).reshape(shape)
            high = np.asarray([float(v) for v in info["high"]], dtype=dtype).reshape(shape)
            return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "MultiDiscrete":
            return gym.spaces.MultiDiscrete(
                np.asarray(info["nvec"], dtype=np.int64), start=np.asarray(info["start"])
            )
        if kind == "MultiBinary":
            n = info["n"]
            if not isinstance(n, int | list):
                raise TypeError(f"n must be an int or a list of ints, got {n!r}")
            return gym.spaces.MultiBinary(n)
        if kind == "Tuple":
            return gym.spaces.Tuple([space_from_info(s) for s in info["spaces"]])
        if kind == "Dict":
            keys, parts = list(info["keys"]), [space_from_info(s) for s in info["spaces"]]
            if len(keys) != len(parts) or not all(isinstance(k, str) for k in keys):
                raise ValueError("keys and spaces must match one to one")
            return gym.spaces.Dict(dict(zip(keys, parts)))
    except SpaceError:
        raise
    except (KeyError, TypeError, ValueError, AssertionError, OverflowError) as e:
        raise SpaceError(f"malformed {kind} space description {info!r}: {e}") from e
    raise SpaceError(f"unsupported space description {info!r}: expected one of {OBSERVATION_SPACES}")


def flat_dim(space: gym.Space) -> int:
    """Number of input features the encoding of an observation from ``space`` has (module table)."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.asarray(space.nvec).sum())
    if isinstance(space, gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Tuple):
        return sum(flat_dim(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Dict):
        return sum(flat_dim(s) for s in space.spaces.values())
    raise SpaceError(f"unsupported observation space {space!r}: supported are {OBSERVATION_SPACES}")


def check_action_space(space: gym.Space) -> None:
    """Raise :class:`SpaceError` unless policies can act in ``space``."""
    ok = isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary)
    ok = ok or (isinstance(space, gym.spaces.Box) and len(space.shape) >= 1)
    if not ok:
        raise SpaceError(f"unsupported action space {space!r}: policies act in {ACTION_SPACES}")


def encode(space: gym.Space, obs: Any) -> np.ndarray:
    """A batch of observations from ``space`` (as a vector env returns them: leading dim B, or a tuple /
    dict of such arrays) -> (B, flat_dim(space)) float32."""
    if isinstance(space, gym.spaces.Box):
        x = np.asarray(obs, dtype=np.float32)
        return x.reshape(x.shape[0], -1)
    if isinstance(space, gym.spaces.Discrete):
        idx = np.asarray(obs, dtype=np.int64).reshape(-1) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[idx]
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec, start = np.asarray(space.nvec).reshape(-1), np.asarray(space.start).reshape(-1)
        idx = np.asarray(obs, dtype=np.int64)
        idx = idx.reshape(idx.shape[0], -1) - start
        return np.concatenate(
            [np.eye(int(n), dtype=np.float32)[idx[:, j]] for j, n in enumerate(nvec)], axis=1
        )
    if isinstance(space, gym.spaces.MultiBinary):
        x = np.asarray(obs, dtype=np.float32)
        return x.reshape(x.shape[0], -1)
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([encode(s, o) for s, o in zip(space.spaces, obs)], axis=1)
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([encode(s, obs[k]) for k, s in space.spaces.items()], axis=1)
    raise SpaceError(f"unsupported observation space {space!r}: supported are {OBSERVATION_SPACES}")


def batch_of_one(space: gym.Space, obs: Any) -> Any:
    """One observation from ``space`` as a batch of one (what :func:`encode` takes)."""
    if isinstance(space, gym.spaces.Tuple):
        return tuple(batch_of_one(s, o) for s, o in zip(space.spaces, obs))
    if isinstance(space, gym.spaces.Dict):
        return {k: batch_of_one(s, obs[k]) for k, s in space.spaces.items()}
    return np.asarray(obs)[None]


def encode_one(space: gym.Space, obs: Any) -> np.ndarray:
    """One observation -> (flat_dim(space),) float32."""
    return encode(space, batch_of_one(space, obs))[0]


def batch_leaves(space: gym.Space, obs: Any, prefix: str = "obs") -> dict[str, np.ndarray]:
    """A batch of observations as named arrays (``obs``, ``obs.0``, ``obs.key``, ...), to store them."""
    if isinstance(space, gym.spaces.Tuple):
        return {
            k: v
            for i, (s, o) in enumerate(zip(space.spaces, obs))
            for k, v in batch_leaves(s, o, f"{prefix}.{i}").items()
        }
    if isinstance(space, gym.spaces.Dict):
        return {
            k: v
            for key, s in space.spaces.items()
            for k, v in batch_leaves(s, obs[key], f"{prefix}.{key}").items()
        }
    return {prefix: np.ascontiguousarray(obs)}


def from_batch_leaves(space: gym.Space, arrays: dict[str, np.ndarray], prefix: str = "obs") -> Any:
    """Inverse of :func:`batch_leaves`."""
    if isinstance(space, gym.spaces.Tuple):
        return tuple(from_batch_leaves(s, arrays, f"{prefix}.{i}") for i, s in enumerate(space.spaces))
    if isinstance(space, gym.spaces.Dict):
        return {key: from_batch_leaves(s, arrays, f"{prefix}.{key}") for key, s in space.spaces.items()}
    return arrays[prefix]


def encoded_bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the encoding of observations from ``space``, each (flat_dim(space),) float64."""
    if isinstance(space, gym.spaces.Box):
        return np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        parts = space.spaces if isinstance(space, gym.spaces.Tuple) else list(space.spaces.values())
        lows, highs = zip(*(encoded_bounds(s) for s in parts))
        return np.concatenate(lows), np.concatenate(highs)
    d = flat_dim(space)
    return np.zeros(d), np.ones(d)


__all__ = [
    "ACTION_SPACES",
    "OBSERVATION_SPACES",
    "batch_leaves",
    "batch_of_one",
    "from_batch_leaves",
    "check_action_space",
    "encode",
    "encode_one",
    "encoded_bounds",
    "flat_dim",
    "space_from_info",
    "space_info",
]
