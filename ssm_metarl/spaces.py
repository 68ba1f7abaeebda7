"""Gymnasium spaces as JSON, for checkpoints: a policy knows the spaces it was built for."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ssm_metarl.errors import SpaceError


def space_info(space: gym.Space) -> dict[str, Any]:
    """Describe a Discrete or Box space as JSON-serialisable data."""
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
    raise SpaceError(
        f"unsupported space {space!r}: ssm-metarl policies take a flat Box or Discrete space; "
        "wrap Dict/Tuple/MultiDiscrete observations (e.g. gymnasium.wrappers.FlattenObservation)"
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
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise SpaceError(f"malformed {kind} space description {info!r}: {e}") from e
    raise SpaceError(f"unsupported space description {info!r}: expected type Discrete or Box")


def _num(v: float) -> float | str:
    """Strict JSON has no infinities: write them as the strings "inf" / "-inf" (float() reads them back)."""
    return float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf")


def flat_dim(space: gym.Space) -> int:
    """Number of input features a policy needs for observations from ``space``."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    raise SpaceError(f"unsupported observation space {space!r}")
