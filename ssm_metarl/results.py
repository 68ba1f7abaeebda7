"""One result type for every "how well did it do": :class:`Returns`, and the code that prints and plots it.

``Returns.values[s, i, k, e]`` is the undiscounted return of episode ``e`` on task ``i`` with seed ``s`` at
index ``k``, where the index means (``Returns.index``):

* ``"step"``: after ``k`` gradient steps of adaptation (``k = 0`` is before adaptation);
* ``"episode"``: the ``k``-th episode of an in-context trial (shown 1-based);
* ``"eval"``: a plain evaluation (``K = 1``).

``env_steps[s, i, k]`` counts the env steps of the ``E`` episodes at index ``k``. Means are over tasks and
episodes; intervals (``docs/concepts/evaluation.md``) are 95% t-intervals over **seeds** (the seed means), so
one seed has no interval: :class:`Interval` then has ``half=None`` and prints without one. ``a - b`` pairs
two results on the same seeds, tasks and indices: its interval is that of the paired difference, the only
basis for claiming that one beats the other.

The CLI, the app, the demo and the benchmarks all print :func:`format_table` and plot :func:`plot_returns`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

Index = Literal["step", "episode", "eval"]

# two-sided 97.5% Student-t quantiles for n - 1 = 1..30 degrees of freedom (1.96 beyond)
_T975: tuple[float, ...] = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
)
_T975 += (2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048)
_T975 += (2.045, 2.042)


class Interval(NamedTuple):
    """A mean and the half-width of its 95% interval (None when there is no interval: fewer than 2 values)."""

    mean: float
    half: float | None

    def __str__(self) -> str:
        return format_interval(self)

    @property
    def low(self) -> float:
        return self.mean - (self.half or 0.0)

    @property
    def high(self) -> float:
        return self.mean + (self.half or 0.0)


def format_interval(iv: Interval, digits: int = 1) -> str:
    """``"12.3 ± 0.8"``, or ``"12.3"`` without an interval."""
    if iv.half is None:
        return f"{iv.mean:.{digits}f}"
    return f"{iv.mean:.{digits}f} ± {iv.half:.{digits}f}"


def mean_ci(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean and 95% t-interval half-width of ``values`` (no interval for fewer than two)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if x.size < 2:
        return Interval(float(x.mean()), None)
    t = _T975[x.size - 2] if x.size - 2 < len(_T975) else 1.96
    return Interval(float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size)))


@dataclass(frozen=True)
class Returns:
    """Episode returns by seed, task, index and episode (see the module docstring)."""

    label: str
    values: np.ndarray
    """(S, I, K, E) float."""
    env_steps: np.ndarray
    """(S, I, K) int: env steps of the episodes at each index."""
    seeds: tuple[int, ...]
    index: Index = "eval"
    tasks: tuple[str, ...] = ()
    """One description per task (``str(task)`` or an env id)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """How it was measured: step size, episodes per step, deterministic or not, ..."""

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=float)
        if v.ndim != 4:
            raise ValueError(f"Returns.values must be (S, I, K, E), got shape {v.shape}")
        steps = np.asarray(self.env_steps, dtype=np.int64)
        if steps.shape != v.shape[:3]:
            raise ValueError(f"Returns.env_steps must be (S, I, K) = {v.shape[:3]}, got {steps.shape}")
        if len(self.seeds) != v.shape[0]:
            raise ValueError(f"Returns has {v.shape[0]} seed rows but {len(self.seeds)} seeds")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "env_steps", steps)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "tasks", tuple(self.tasks))

    # ----- shape ---------------------------------------------------------------------------------------
    @property
    def num_seeds(self) -> int:
        return self.values.shape[0]

    @property
    def num_tasks(self) -> int:
        return self.values.shape[1]

    @property
    def num_indices(self) -> int:
        return self.values.shape[2]

    @property
    def num_episodes(self) -> int:
        return self.values.shape[3]

    # ----- statistics ----------------------------------------------------------------------------------
    @property
    def mean(self) -> float:
        """Mean over everything (of a single evaluation: its mean return)."""
        return float(self.values.mean())

    @property
    def std(self) -> float:
        """Standard deviation over all episodes (episode-to-episode spread, not an interval)."""
        return float(self.values.std())

    def seed_means(self) -> np.ndarray:
        """(S, K): each seed's mean over tasks and episodes."""
        return self.values.mean(axis=(1, 3))

    def summary(self) -> list[Interval]:
        """Per index k: the mean and the 95% interval over seed means."""
        per_seed = self.seed_means()
        return [mean_ci(per_seed[:, k]) for k in range(self.num_indices)]

    def at(self, k: int) -> Interval:
        """:meth:`summary` at index ``k`` (negative counts from the end)."""
        return self.summary()[k]

    def gain(self) -> Interval:
        """The last index minus the first (e.g. after minus before adaptation), paired by seed."""
        per_seed = self.seed_means()
        return mean_ci(per_seed[:, -1] - per_seed[:, 0])

    def episode_returns(self) -> list[float]:
        """Every episode's return, flat (seed, task, index, episode order)."""
        return self.values.ravel().tolist()

    def __sub__(self, other: Returns) -> Returns:
        """The paired difference (same seeds, tasks and indices; episodes averaged first)."""
        if self.seeds != other.seeds or self.values.shape[:3] != other.values.shape[:3]:
            raise ValueError(
                f"cannot pair {self.label!r} {self.values.shape[:3]} seeds {self.seeds} with "
                f"{other.label!r} {other.values.shape[:3]} seeds {other.seeds}"
            )
        diff = self.values.mean(-1, keepdims=True) - other.values.mean(-1, keepdims=True)
        return Returns(
            f"{self.label} - {other.label}",
            diff,
            np.zeros_like(self.env_steps),
            self.seeds,
            self.index,
            self.tasks,
            {"paired": [self.label, other.label]},
        )

    # ----- files ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the raw values, the per-index summary and how it was measured."""
        return {
            "label": self.label,
            "index": self.index,
            "seeds": list(self.seeds),
            "tasks": list(self.tasks),
            "meta": dict(self.meta),
            "mean": [iv.mean for iv in self.summary()],
            "ci95": [iv.half for iv in self.summary()],
            "env_steps_per_index": self.env_steps.mean(axis=(0, 1)).tolist(),
            "values": self.values.tolist(),
            "env_steps": self.env_steps.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Returns:
        return cls(
            str(data["label"]),
            np.asarray(data["values"], dtype=float),
            np.asarray(data["env_steps"]),
            tuple(data["seeds"]),
            data.get("index", "eval"),
            tuple(data.get("tasks", ())),
            dict(data.get("meta", {})),
        )


def stack_seeds(parts: Sequence[Returns], label: str | None = None) -> Returns:
    """Join results of single seeds (or seed groups) measured the same way into one result."""
    if not parts:
        raise ValueError("stack_seeds needs at least one result")
    first = parts[0]
    return Returns(
        label or first.label,
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.env_steps for p in parts]),
        tuple(s for p in parts for s in p.seeds),
        first.index,
        first.tasks,
        first.meta,
    )


def index_label(index: Index, k: int) -> str:
    """Column heading of index ``k``: ``0 steps``, ``1 step``, ``episode 1``, ``return``."""
    if index == "step":
        return f"{k} step" + ("" if k == 1 else "s")
    if index == "episode":
        return f"episode {k + 1}"
    return "return"


def table_rows(
    rows: Sequence[Returns] | Mapping[str, Returns], digits: int = 1, columns: Sequence[int] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, body) of the results table: one row per result, one column per index (``columns`` picks
    some), cells ``mean ± 95% interval``; rows with fewer indices than the widest leave the rest empty. An
    adaptation table ends with the env steps each step used."""
    items = list(rows.items()) if isinstance(rows, Mapping) else [(r.label, r) for r in rows]
    if not items:
        return [], []
    widest = max(items, key=lambda kv: kv[1].num_indices)[1]
    ks = list(range(widest.num_indices)) if columns is None else list(columns)
    header = ["policy", *(index_label(widest.index, k) for k in ks)]
    steps = [float(r.env_steps.mean()) if r.index == "step" else 0.0 for _, r in items]
    show_steps = widest.index == "step" and any(s > 0 for s in steps)
    if show_steps:
        header.append("env steps per step")
    body = []
    for (name, r), s in zip(items, steps):
        summary = r.summary()
        cells = [format_interval(summary[k], digits) if k < len(summary) else "" for k in ks]
        body.append([name, *cells, *([f"{s:.0f}" if s > 0 else ""] if show_steps else [])])
    return header, body


def format_table(
    rows: Sequence[Returns] | Mapping[str, Returns],
    markdown: bool = False,
    digits: int = 1,
    columns: Sequence[int] | None = None,
) -> str:
    """:func:`table_rows` as aligned text, or as a markdown table."""
    header, body = table_rows(rows, digits, columns)
    if not header:
        return ""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(row[j]) for row in [header, *body]) for j in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if j == 0 else f"{{:>{w}}}" for j, w in enumerate(widths))
    return "\n".join(fmt.format(*row) for row in [header, *body]) + "\n"


def describe(r: Returns) -> str:
    """One line saying what a result measured: tasks, seeds, episodes, and the interval's basis."""
    seeds = f"{r.num_seeds} seed{'s' if r.num_seeds != 1 else ''}"
    basis = "mean ± 95% t-interval over seed means" if r.num_seeds > 1 else "one seed: no interval"
    return f"{r.num_tasks} task(s) x {seeds} x {r.num_episodes} episode(s) per cell; {basis}"


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the off-screen Agg backend unless the caller already chose one (a notebook's
    inline backend, ``MPLBACKEND``, or an earlier ``import matplotlib.pyplot``)."""
    if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_returns(
    results: Sequence[Returns] | Mapping[str, Returns],
    ax: Any = None,
    title: str = "",
    flat: Sequence[str] = (),
) -> Any:
    """Curves with 95% bands, one per result with more than one index; results of one index (or named in
    ``flat``) as horizontal lines. Returns the matplotlib Axes."""
    plt = pyplot()
    items = list(results.items()) if isinstance(results, Mapping) else [(r.label, r) for r in results]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    index: Index = "eval"
    for i, (name, r) in enumerate(items):
        s = r.summary()
        if r.num_indices == 1 or name in flat:
            ax.axhline(s[0].mean, color=f"C{i}", ls=":", label=name)
            continue
        index = r.index
        x = np.arange(r.num_indices) + (1 if r.index == "episode" else 0)
        m = np.array([iv.mean for iv in s])
        h = np.array([iv.half or 0.0 for iv in s])
        ax.plot(x, m, marker="o", color=f"C{i}", label=name)
        if r.num_seeds > 1:
            ax.fill_between(x, m - h, m + h, color=f"C{i}", alpha=0.2)
    ax.set_xlabel({"step": "adaptation steps", "episode": "episode of the trial", "eval": ""}[index])
    ax.set_ylabel("mean return")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


__all__ = [
    "Index",
    "Interval",
    "Returns",
    "describe",
    "format_interval",
    "format_table",
    "index_label",
    "mean_ci",
    "plot_returns",
    "stack_seeds",
    "table_rows",
]
