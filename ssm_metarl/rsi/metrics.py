"""The five metrics of the self-improvement loop, each on the evaluation protocol
(``docs/concepts/evaluation.md``).

A policy is measured on fixed ``validation`` tasks and seeds: ``val.values[s, i, k, e]`` is the return of
episode ``e`` on task ``i`` with evaluation seed ``s`` after ``k`` adaptation steps (``k = 0..K``), and the
same on ``out_of_range`` tasks. Returns are normalised so that 0 is the random policy and 1 the starting
incumbent: ``n(x) = (x - random) / scale`` with ``scale = |start - random|`` (the starting incumbent's
validation return after K steps, fixed when the study is made). Efficiency is the gain over the multi-task
baseline (same architecture and env steps as the starting incumbent, no meta-learning) per training env step,
in units of the starting incumbent's steps: a policy that doubles the gain with twice the steps scores the same.

======================  ===================================================================  ==========
metric                  formula (per evaluation seed s and task i where it says (s, i))       direction
======================  ===================================================================  ==========
return                  n(mean_e R[s, i, K, e])                                  (s, i)       higher
speed                   n(mean_{k, e} R[s, i, k, e]): the area under the adaptation curve (s, i)   higher
generalisation          (mean R_oor[.., K, .] - random_oor) / (mean R[.., K, .] - random)     higher
efficiency              (n(after[s, i]) - n(baseline after[s, i])) * start steps / steps      (s, i)  higher
stability               -std_s(mean_{i, e} R[s, :, K, :]) / scale                              higher
======================  ===================================================================  ==========

``score = w_return * return + w_speed * speed + w_efficiency * efficiency`` (means over (s, i)) ``+
w_stability * stability + w_generalisation * generalisation``. The acceptance test bootstraps the paired
(s, i) differences of the per-pair part (same tasks, same seeds) and adds the difference of the global part.
With ``RSIConfig.objectives = "pareto"`` the metrics of weight above 0 (:func:`objectives`) are the study's
objectives instead of their weighted sum, and :func:`dominates` / :func:`pareto_front` compare their means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ssm_metarl.config import RSIConfig
from ssm_metarl.results import Returns

METRICS = ("return", "speed", "generalisation", "efficiency", "stability")


class NonFiniteError(ValueError):
    """A policy's returns (so its metrics) are not finite."""


@dataclass(frozen=True)
class Reference:
    """What the metrics are normalised against, fixed when the study is made."""

    random_val: float
    """the random policy's mean return on the validation tasks"""
    random_oor: float
    """the random policy's mean return on the out-of-range tasks"""
    start_val: float
    """the starting incumbent's mean validation return after K adaptation steps"""
    baseline_after: list[list[float]]
    """the multi-task (no meta-learning) baseline's return after K steps, per (seed, task)"""
    start_env_steps: int
    """the training env steps of the starting incumbent"""

    @property
    def scale(self) -> float:
        return max(abs(self.start_val - self.random_val), 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One policy measured: the raw returns and the training env steps behind it."""

    val: Returns
    oor: Returns
    train_env_steps: int

    @property
    def eval_env_steps(self) -> int:
        return int(self.val.env_steps.sum() + self.oor.env_steps.sum())


@dataclass(frozen=True)
class Metrics:
    """The five metrics (see the module docstring), their per-(seed, task) parts and the weighted score."""

    values: dict[str, float]
    pairs: np.ndarray
    """(S, I): the per-pair part of the score (return, speed and efficiency, weighted)"""
    global_part: float
    """the weighted stability and generalisation terms"""

    @property
    def score(self) -> float:
        return float(self.pairs.mean() + self.global_part)

    def to_dict(self) -> dict[str, Any]:
        return {**self.values, "score": self.score}


def after_adaptation(r: Returns) -> np.ndarray:
    """(S, I): mean return over episodes after the last adaptation step."""
    return r.values[:, :, -1, :].mean(axis=-1)


def compute(m: Measurement, ref: Reference, cfg: RSIConfig) -> Metrics:
    """The five metrics of ``m`` (module docstring); every value is finite or this raises ValueError."""
    n = lambda x: (x - ref.random_val) / ref.scale  # noqa: E731
    after = after_adaptation(m.val)  # (S, I)
    ret = n(after)
    speed = n(m.val.values.mean(axis=(2, 3)))
    base = np.asarray(ref.baseline_after, dtype=float)
    if base.shape != after.shape:
        raise ValueError(
            f"the baseline was measured on {base.shape} (seed, task) pairs, this policy on {after.shape}"
        )
    efficiency = (ret - n(base)) * ref.start_env_steps / max(m.train_env_steps, 1)
    stability = -float(after.mean(axis=1).std()) / ref.scale
    denom = float(after.mean()) - ref.random_val
    oor_gain = float(after_adaptation(m.oor).mean()) - ref.random_oor
    generalisation = float(np.clip(oor_gain / denom, -2.0, 2.0)) if abs(denom) > 1e-6 else 0.0
    values = {
        "return": float(ret.mean()),
        "speed": float(speed.mean()),
        "generalisation": generalisation,
        "efficiency": float(efficiency.mean()),
        "stability": stability,
    }
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    if bad:
        raise NonFiniteError(f"non-finite metrics {bad}: the policy's returns are not finite")
    pairs = cfg.w_return * ret + cfg.w_speed * speed + cfg.w_efficiency * efficiency
    glob = cfg.w_stability * stability + cfg.w_generalisation * generalisation
    return Metrics(values, pairs, float(glob))


def objectives(cfg: RSIConfig) -> tuple[str, ...]:
    """The metrics with a weight above 0, in :data:`METRICS` order: the objectives of a Pareto study."""
    weights = {
        "return": cfg.w_return,
        "speed": cfg.w_speed,
        "generalisation": cfg.w_generalisation,
        "efficiency": cfg.w_efficiency,
        "stability": cfg.w_stability,
    }
    return tuple(k for k in METRICS if weights[k] > 0)


def dominates(a: dict[str, float], b: dict[str, float], names: tuple[str, ...], tol: float = 1e-9) -> bool:
    """``a`` is at least ``b`` (within ``tol``, float rounding) on every metric in ``names`` and above it by
    more than ``tol`` on one (all higher-is-better)."""
    return all(a[k] >= b[k] - tol for k in names) and any(a[k] > b[k] + tol for k in names)


def pareto_front(points: list[dict[str, float]], names: tuple[str, ...]) -> list[int]:
    """Indices of the points that no other point dominates."""
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, names) for j, q in enumerate(points) if j != i)
    ]


@dataclass(frozen=True)
class Comparison:
    """A candidate against the incumbent on the same (seed, task) pairs."""

    difference: float
    """score(candidate) - score(incumbent)"""
    low: float
    """the bootstrap quantile 1 - confidence of the difference"""
    high: float
    """the bootstrap quantile confidence of the difference"""

    @property
    def better(self) -> bool:
        """The lower end of the interval is above zero: a gain beyond the seed-to-seed spread."""
        return self.low > 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compare(candidate: Metrics, incumbent: Metrics, cfg: RSIConfig, seed: int = 0) -> Comparison:
    """Paired bootstrap over (seed, task) pairs of the score difference (module docstring)."""
    if candidate.pairs.shape != incumbent.pairs.shape:
        raise ValueError("candidate and incumbent were measured on different (seed, task) pairs")
    diff = (candidate.pairs - incumbent.pairs).ravel()
    shift = candidate.global_part - incumbent.global_part
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(cfg.bootstrap, diff.size))
    means = diff[idx].mean(axis=1) + shift
    low, high = np.quantile(means, [1.0 - cfg.confidence, cfg.confidence])
    return Comparison(float(diff.mean() + shift), float(low), float(high))


__all__ = [
    "METRICS",
    "Comparison",
    "NonFiniteError",
    "Measurement",
    "Metrics",
    "Reference",
    "after_adaptation",
    "compare",
    "compute",
    "dominates",
    "objectives",
    "pareto_front",
]
