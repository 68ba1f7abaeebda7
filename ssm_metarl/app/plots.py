"""The app's figures (matplotlib, Agg): the live meta-training curve, the adaptation curves with intervals,
and the self-improvement loop's incumbent per cycle.

Every function returns a new ``Figure`` and never calls ``plt.show``; figures are closed by Gradio after it
has encoded them (or by the caller).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ssm_metarl.results import Returns, plot_returns, pyplot

plt = pyplot()


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


def adaptation_curve(results: Mapping[str, Returns], title: str) -> Figure:
    """The curves of :func:`ssm_metarl.results.plot_returns` (adaptation steps or in-context episodes, with
    95% bands over seeds; one-index rows such as the random policy as flat lines), on a new figure."""
    fig, ax = _new(title, "")
    curves = {k: r for k, r in results.items() if " - " not in k}  # paired differences go in the table only
    plot_returns(curves, ax, title)
    widest = max(curves.values(), key=lambda r: r.num_indices)
    x0 = 1 if widest.index == "episode" else 0
    ax.set_xticks(np.arange(x0, x0 + widest.num_indices))
    fig.tight_layout()
    return fig


IMPROVEMENT_METRICS = ("return", "speed", "generalisation", "efficiency", "stability")


def improvement_curves(
    history: Sequence[tuple[int, Mapping[str, float]]], trials: Sequence[tuple[int, float]], title: str
) -> Figure:
    """The self-improvement loop: left, the incumbent's score after each cycle (cycle 0: the start) with
    every trial's score as a dot; right, the incumbent's five metrics after each cycle."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6), dpi=100)
    fig.suptitle(title, fontsize=11)
    for ax, label in ((left, "score"), (right, "metric")):
        ax.set_xlabel("cycle")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    cycles = [n for n, _ in history]
    if trials:
        left.plot(
            [n for n, _ in trials],
            [s for _, s in trials],
            "o",
            ms=4,
            color="0.6",
            label="trials (candidates)",
        )
    left.plot(cycles, [m.get("score", np.nan) for _, m in history], "o-", lw=2, ms=4, label="incumbent")
    left.set_title("score", fontsize=10)
    for name in IMPROVEMENT_METRICS:
        right.plot(cycles, [m.get(name, np.nan) for _, m in history], "o-", ms=3, label=name)
    right.set_title("the five metrics of the incumbent", fontsize=10)
    if not history:
        for ax in (left, right):
            ax.text(
                0.5,
                0.5,
                "waiting for the first measurement ...",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    else:
        for ax in (left, right):
            ax.legend(loc="best", fontsize=7)
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Free a figure that was drawn but not handed to Gradio."""
    plt.close(fig)


__all__ = ["IMPROVEMENT_METRICS", "adaptation_curve", "close", "improvement_curves", "learning_curve"]
