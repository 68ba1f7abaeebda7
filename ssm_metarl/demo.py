"""The main job (``make demo``): a shipped meta-trained policy adapts to physics it has never seen.

Loads the shipped ``cartpole-ssm`` model, evaluates it zero-shot on held-out and out-of-range
``cartpole-physics`` tasks, adapts it with standard and hybrid adaptation on the same tasks, seeds and
initial weights (:func:`~ssm_metarl.adapt.compare_adaptation`), and trains PPO from scratch on each task
with the same number of env steps the adaptation used. Prints one table and writes a PNG of the curves.

Every row is a mean over (task, seed) pairs with a 95% t-interval over those pairs, so the interval shows
how much the return varies from task to task; PPO from scratch runs once per task (the first seed), the
random and constant-action rows once per task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssm_metarl.adapt import compare_adaptation, fill_buffer
from ssm_metarl.adapt.evaluate import scratch_ppo_returns
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.meta.evaluate import baseline_returns
from ssm_metarl.pretrained import load_pretrained, pretrained_info
from ssm_metarl.recipes import recipe
from ssm_metarl.results import Returns, format_interval, plot_returns, pyplot

SPLITS = ("test", "out_of_range")


def pairs(r: Returns) -> Returns:
    """``r`` with every (seed, task) pair as one row of the interval (the demo's task-to-task spread)."""
    S, I, K, E = r.values.shape
    seeds = tuple(range(S * I))
    return Returns(
        r.label, r.values.reshape(S * I, 1, K, E), r.env_steps.reshape(S * I, 1, K), seeds, r.index
    )


@dataclass
class DemoResult:
    """rows[split]: label -> Returns (intervals over task-seed pairs); plot: the PNG."""

    model: str
    family: str
    steps: int
    rows: dict[str, dict[str, Returns]] = field(default_factory=dict)
    curves: dict[str, dict[str, Returns]] = field(default_factory=dict)
    """split -> the adaptation curves (standard, hybrid) and the random-policy level, for the plot."""
    plot: Path | None = None
    seconds: float = 0.0

    def table(self) -> str:
        """The demo's one table: a row per policy, a column per task split; final values of each curve."""
        names = list(dict.fromkeys(name for split in self.rows.values() for name in split))
        header = f"{'policy':<34}" + "".join(f"{s.replace('_', '-') + ' tasks':>24}" for s in SPLITS)
        lines = [header, "-" * len(header)]
        for name in names:
            cells = []
            for split in SPLITS:
                r = self.rows.get(split, {}).get(name)
                cells.append(f"{format_interval(pairs(r).at(-1)):>24}" if r is not None else f"{'-':>24}")
            lines.append(f"{name:<34}" + "".join(cells))
        return "\n".join(lines)


def run_demo(
    model: str = "cartpole-ssm",
    steps: int = 3,
    num_tasks: int = 5,
    seeds: Sequence[int] = (0, 1),
    episodes: int = 8,
    scratch: bool = True,
    out: str | Path = "runs/demo",
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo and return its rows (see the module docstring); ``progress`` gets one line per stage."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    policy = load_pretrained(model)
    family = pretrained_info(model)["family"]
    cfg = recipe("adapt", family).replace(steps=steps, episodes=episodes)
    dist = get_family(family)
    result = DemoResult(model, family, steps)
    say(f"loaded the shipped model {model!r} (meta-trained on {family}); filling the replay buffer")
    buffer = fill_buffer(policy, family, dist.train[:num_tasks], episodes, seed=10_007)
    for split in SPLITS:
        tasks = dist.split(split)[:num_tasks]
        say(
            f"adapting on {len(tasks)} {split} tasks x {len(seeds)} seeds (standard and hybrid, {steps} steps)"
        )
        comp = compare_adaptation(policy, family, tasks, cfg, seeds, buffer=buffer)
        std, hyb = comp["standard"], comp["hybrid"]
        rows = {
            "random policy": baseline_returns(family, tasks, "random", episodes),
            "constant action": baseline_returns(family, tasks, "constant", episodes),
            "zero-shot (meta-trained)": _column(std, 0),
            f"standard, after {steps} steps": _column(std, -1),
            f"hybrid, after {steps} steps": _column(hyb, -1),
        }
        if scratch:  # the adaptation data: the episodes of evaluations 0..K-1, per task and seed
            budget = int(std.env_steps[:, :, :steps].sum(-1).mean())
            say(f"PPO from scratch on each {split} task with the same {budget} env steps")
            rows[f"PPO from scratch, {budget} steps"] = scratch_ppo_returns(
                family, tasks, budget, seeds[:1], episodes
            )
        result.rows[split] = rows
        result.curves[split] = {"standard": std, "hybrid": hyb, "random policy": rows["random policy"]}
    result.plot = _plot(result, Path(out))
    result.seconds = time.perf_counter() - t0
    return result


def _column(r: Returns, k: int) -> Returns:
    """Index ``k`` of an adaptation curve as a one-index result."""
    return Returns(r.label, r.values[:, :, [k]], r.env_steps[:, :, [k]], r.seeds, "eval", r.tasks, r.meta)


def _plot(result: DemoResult, out: Path) -> Path:
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(5 * len(SPLITS), 3.8), sharey=True)
    for ax, split in zip(np.atleast_1d(axes), SPLITS):
        curves = {name: pairs(r) for name, r in result.curves[split].items()}
        plot_returns(curves, ax, f"{result.family}: {split.replace('_', '-')} tasks")
    np.atleast_1d(axes)[0].set_ylabel("mean return (95% CI over task-seed pairs)")
    fig.tight_layout()
    path = out / "adaptation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
