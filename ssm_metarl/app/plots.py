"""The app's figures (matplotlib, Agg): the live meta-training curve and the adaptation curves with intervals.

Every function returns a new ``Figure`` and never calls ``plt.show``; figures are closed by Gradio after it
has encoded them (or by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLORS = {"standard": "#1f77b4", "hybrid": "#d62728", "in-context": "#2ca02c", "random": "#7f7f7f"}


def _new(title: str, xlabel: str, ylabel: str = "mean return") -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def learning_curve(rows: Sequence[dict[str, Any]], method: str, title: str) -> Figure:
    """MAML: return before and after the inner adaptation step per meta-iteration; RL²: mean return of
    the last 20 trials per PPO update, against env steps."""
    if method == "maml":
        fig, ax = _new(title, "meta-iteration")
        x = [r["iteration"] for r in rows]
        ax.plot(x, [r["return_before"] for r in rows], "o-", ms=3, label="before inner step (support)")
        ax.plot(x, [r["return_after"] for r in rows], "o-", ms=3, label="after inner step (query)")
    else:
        fig, ax = _new(title, "env steps")
        x = [r["global_step"] for r in rows]
        y = [r["return_mean20"] for r in rows]
        ax.plot(x, y, "o-", ms=3, label="trial return (mean of last 20 trials)")
    if not rows:
        ax.text(
            0.5, 0.5, "waiting for the first iteration ...", ha="center", va="center", transform=ax.transAxes
        )
    else:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def adaptation_curve(
    curves: dict[str, list[tuple[float, float]]],
    random: tuple[float, float],
    title: str,
    xlabel: str = "adaptation step",
    x0: int = 0,
) -> Figure:
    """One line per mode: mean return after each step with its 95% interval as a band; the random policy
    as a dashed line with its band. ``curves[mode][k] = (mean, half-width)``, k = 0, 1, ..."""
    fig, ax = _new(title, xlabel)
    for mode, points in curves.items():
        x = np.arange(x0, x0 + len(points))
        m = np.array([p[0] for p in points])
        h = np.array([p[1] for p in points])
        color = COLORS.get(mode.split(" ")[0])
        ax.plot(x, m, "o-", color=color, label=mode)
        ax.fill_between(x, m - h, m + h, color=color, alpha=0.2)
    rm, rh = random
    ax.axhline(rm, color=COLORS["random"], ls="--", label="random policy")
    if rh > 0:
        ax.axhspan(rm - rh, rm + rh, color=COLORS["random"], alpha=0.1)
    n = max((len(p) for p in curves.values()), default=1)
    ax.set_xticks(np.arange(x0, x0 + n))
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Free a figure that was drawn but not handed to Gradio."""
    plt.close(fig)


__all__ = ["adaptation_curve", "close", "learning_curve"]
