"""The main job (``make demo``): a shipped meta-trained policy adapts to physics it has never seen.

Loads the shipped ``cartpole-ssm`` model, evaluates it zero-shot on held-out and out-of-range
``cartpole-physics`` tasks, adapts it with standard and hybrid adaptation on the same tasks, seeds and
initial weights (:func:`~ssm_metarl.adapt.compare_adaptation`), and trains PPO from scratch on each task
with the same number of env steps the adaptation used. Returns the table rows and writes a PNG of the
adaptation curves.

Every row is a mean over (task, seed) pairs with a 95% t-interval over those pairs, so the interval shows
how much the return varies from task to task; PPO from scratch runs once per task (the first seed), the
random and constant-action rows once per task. The budget fits ``make demo`` in about two minutes here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssm_metarl.adapt import AdaptationComparison, compare_adaptation
from ssm_metarl.adapt.evaluate import scratch_ppo_returns
from ssm_metarl.adapt.hybrid import fill_buffer
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.meta.evaluate import baseline_policy_returns, mean_ci
from ssm_metarl.pretrained import load_pretrained, pretrained_info

SPLITS = ("test", "out_of_range")


@dataclass
class DemoResult:
    """rows: one per (policy, split) with mean and 95% half-width over (task, seed) pairs; plot: the PNG."""

    model: str
    family: str
    steps: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: dict[str, AdaptationComparison] = field(default_factory=dict)
    plot: Path | None = None
    seconds: float = 0.0

    def table(self) -> str:
        """The demo's one table: a row per policy, a column per task split."""
        names = list(dict.fromkeys(r["policy"] for r in self.rows))
        header = f"{'policy':<34}" + "".join(f"{s.replace('_', '-') + ' tasks':>24}" for s in SPLITS)
        lines = [header, "-" * len(header)]
        for name in names:
            cells = []
            for split in SPLITS:
                r = next((r for r in self.rows if r["policy"] == name and r["split"] == split), None)
                cells.append(f"{r['mean']:>14.1f} ± {r['ci95']:<7.1f}" if r else f"{'-':>24}")
            lines.append(f"{name:<34}" + "".join(cells))
        return "\n".join(lines)


def run_demo(
    model: str = "cartpole-ssm",
    steps: int = 3,
    num_tasks: int = 5,
    seeds: Sequence[int] = (0, 1),
    num_trajectories: int = 8,
    experience_weight: float = 0.1,
    scratch: bool = True,
    out: str | Path = "runs/demo",
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo and return its rows (see the module docstring); ``progress`` gets one line per stage."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    policy = load_pretrained(model)
    info = pretrained_info(model)
    family = info["family"]
    lr = float(info.get("config", {}).get("inner_lr", 0.1))
    dist = get_family(family)
    result = DemoResult(model, family, steps)
    say(f"loaded the shipped model {model!r} (meta-trained on {family}); filling the replay buffer")
    buffer = fill_buffer(policy, family, dist.train[:num_tasks], num_trajectories, seed=10_007)
    for split in SPLITS:
        tasks = dist.split(split)[:num_tasks]
        say(
            f"adapting on {len(tasks)} {split} tasks x {len(seeds)} seeds (standard and hybrid, {steps} steps)"
        )
        comp = compare_adaptation(policy, family, tasks, steps=steps, seeds=seeds, num_trajectories=num_trajectories,
                                  lr=lr, experience_weight=experience_weight, buffer=buffer)  # fmt: skip
        result.comparisons[split] = comp
        rand = mean_ci(_per_task_baseline(family, tasks, "random", num_trajectories))
        const = mean_ci(_per_task_baseline(family, tasks, "constant", num_trajectories))
        std, hyb = _pairs(comp, "standard"), _pairs(comp, "hybrid")
        result.rows += [
            {"policy": "random policy", "split": split, "mean": rand[0], "ci95": rand[1]},
            {"policy": "constant action", "split": split, "mean": const[0], "ci95": const[1]},
            {"policy": "zero-shot (meta-trained)", "split": split, "mean": std[0][0], "ci95": std[0][1]},
            {"policy": f"standard, after {steps} steps", "split": split, "mean": std[-1][0], "ci95": std[-1][1]},
            {"policy": f"hybrid, after {steps} steps", "split": split, "mean": hyb[-1][0], "ci95": hyb[-1][1]},
        ]  # fmt: skip
        if scratch:
            # the adaptation data: the episodes of evaluations 0..K-1, per task and seed
            budget = int(comp.env_steps["standard"][:, :, :steps].sum(-1).mean())
            say(f"PPO from scratch on each {split} task with the same {budget} env steps")
            scores = scratch_ppo_returns(family, tasks, budget, seeds[:1], num_trajectories)
            m, h = mean_ci(scores.ravel())
            result.rows.append(
                {"policy": f"PPO from scratch, {budget} steps", "split": split, "mean": m, "ci95": h}
            )
    result.plot = _plot(result, Path(out))
    result.seconds = time.perf_counter() - t0
    return result


def _pairs(comp: AdaptationComparison, mode: str) -> list[tuple[float, float]]:
    """(mean, 95% half-width) after each step k over all (task, seed) pairs of ``mode``."""
    returns = comp.curves[mode].returns  # (S, I, K + 1)
    return [mean_ci(returns[:, :, k].ravel()) for k in range(returns.shape[-1])]


def _per_task_baseline(family: str, tasks: Sequence, kind: str, episodes: int) -> np.ndarray:
    return np.array([baseline_policy_returns(family, [t], kind, episodes, seed=0) for t in tasks])


def _plot(result: DemoResult, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(
        1, len(result.comparisons), figsize=(5 * len(result.comparisons), 3.8), sharey=True
    )
    for ax, (split, comp) in zip(np.atleast_1d(axes), result.comparisons.items()):
        ks = np.arange(comp.steps + 1)
        for i, mode in enumerate(comp.modes):
            s = np.asarray(_pairs(comp, mode))
            ax.plot(ks, s[:, 0], marker="o", color=f"C{i}", label=mode)
            ax.fill_between(ks, s[:, 0] - s[:, 1], s[:, 0] + s[:, 1], color=f"C{i}", alpha=0.2)
        rand = next(r["mean"] for r in result.rows if r["policy"] == "random policy" and r["split"] == split)
        ax.axhline(rand, color="grey", ls=":", label="random policy")
        ax.set_title(f"{result.family}: {split.replace('_', '-')} tasks")
        ax.set_xlabel("adaptation steps")
        ax.set_xticks(ks)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("mean return (95% CI over task-seed pairs)")
    fig.tight_layout()
    path = out / "adaptation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
