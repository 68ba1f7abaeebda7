"""The app's figures (matplotlib, Agg): the live meta-training curve and the adaptation curves with intervals.

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


def close(fig: Figure) -> None:
    """Free a figure that was drawn but not handed to Gradio."""
    plt.close(fig)


__all__ = ["adaptation_curve", "close", "learning_curve"]
