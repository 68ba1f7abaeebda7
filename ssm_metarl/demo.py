"""The main job (``make demo``): shipped meta-trained SSM policies adapt to tasks they have never seen.

Gradient adaptation: loads a shipped MAML model (default ``navigation-maml-ssm``; ``cartpole-ssm`` the other),
evaluates it zero-shot on held-out and out-of-range tasks of its family, adapts it with standard and hybrid
adaptation on the same tasks, seeds and initial weights (:func:`~ssm_metarl.adapt.compare_adaptation`), and
trains PPO from scratch on each task with the same number of env steps the adaptation used. On navigation it
also draws the agent's path to one goal per split before and after the adaptation steps.

In-context adaptation (``in_context``, default the shipped ``navigation-ssm``, RL²): one trial of several
episodes per held-out and out-of-range goal, the recurrent state carried across episodes and no gradient step;
the return of each episode of the trial shows what it learned about the goal in the episodes before.

Prints one table per kind of adaptation and writes a PNG of the curves and of the agent's paths in one trial.

Every row is a mean over (task, seed) pairs with a 95% t-interval over those pairs, so the interval shows
how much the return varies from task to task; PPO from scratch runs once per task (the first seed), the
random and constant-action rows once per task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssm_metarl.adapt import StandardAdapter, compare_adaptation, fill_buffer
from ssm_metarl.adapt.evaluate import scratch_ppo_returns
from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.errors import InputError
from ssm_metarl.meta.evaluate import baseline_returns
from ssm_metarl.meta.rl2 import evaluate_in_context, trial_vec_env
from ssm_metarl.models import ActorCritic
from ssm_metarl.pretrained import load_pretrained, pretrained_info
from ssm_metarl.recipes import adapt_recipe
from ssm_metarl.results import Returns, format_interval, plot_returns, pyplot
from ssm_metarl.rl.evaluate import seeded_episodes

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
    in_context_model: str | None = None
    in_context_family: str | None = None
    in_context: dict[str, dict[str, Returns]] = field(default_factory=dict)
    """split -> the in-context model's returns per episode of a trial, and the random / constant levels"""
    paths: dict[str, tuple[Task, list[np.ndarray]]] = field(default_factory=dict)
    """split -> (a goal, the agent's positions in each episode of one trial on it): navigation only"""
    adapt_paths: dict[str, tuple[Task, list[np.ndarray]]] = field(default_factory=dict)
    """split -> (a goal, the gradient model's positions in one episode before and one after adapting to it):
    navigation only"""

    def in_context_table(self) -> str:
        """The in-context rows: the return of each episode of a trial, per split."""
        if not self.in_context:
            return ""
        first = next(iter(self.in_context.values()))["in-context (RL²)"]
        n = first.values.shape[2]
        header = f"{'split':<16}{'policy':<20}" + "".join(f"{'episode ' + str(k + 1):>20}" for k in range(n))
        lines = [header, "-" * len(header)]
        for split, rows in self.in_context.items():
            for name, r in rows.items():
                cells = [format_interval(pairs(r).at(k if r.values.shape[2] > 1 else 0)) for k in range(n)]
                lines.append(f"{split.replace('_', '-'):<16}{name:<20}" + "".join(f"{c:>20}" for c in cells))
        return "\n".join(lines)

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
    model: str = "navigation-maml-ssm",
    steps: int = 3,
    num_tasks: int = 5,
    seeds: Sequence[int] = (0, 1),
    episodes: int = 8,
    scratch: bool = True,
    out: str | Path = "runs/demo",
    progress: Callable[[str], None] | None = None,
    in_context: str | None = "navigation-ssm",
) -> DemoResult:
    """Run the demo and return its rows (see the module docstring); ``progress`` gets one line per stage."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    policy = load_pretrained(model)
    family = pretrained_info(model)["family"]
    cfg = adapt_recipe(family, policy.describe()["kind"]).replace(steps=steps, episodes=episodes)
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
        if family == "navigation-2d":
            result.adapt_paths[split] = (tasks[0], adaptation_paths(policy, family, tasks[0], cfg, seeds[0]))
    if in_context is not None:
        _in_context(result, in_context, num_tasks, seeds, say)
    result.plot = _plot(result, Path(out))
    result.seconds = time.perf_counter() - t0
    return result


def _in_context(
    result: DemoResult, model: str, num_tasks: int, seeds: Sequence[int], say: Callable[[str], None]
) -> None:
    """The in-context rows (module docstring): ``model`` is a shipped RL² model."""
    info = pretrained_info(model)
    if info.get("algo") != "rl2":
        raise InputError(f"{model!r} is not an in-context (RL²) model; the demo's in_context needs one")
    family, k = info["family"], int(info["results"]["episodes_per_trial"])
    policy, dist = load_pretrained(model), get_family(family)
    result.in_context_model, result.in_context_family = model, family
    for split in SPLITS:
        tasks = dist.split(split)[:num_tasks]
        say(f"{model}: one trial of {k} episodes on each of {len(tasks)} {split} goals x {len(seeds)} seeds")
        result.in_context[split] = {
            "in-context (RL²)": evaluate_in_context(
                policy, family, tasks, k, seeds, label="in-context (RL²)"
            ),
            "random policy": baseline_returns(family, tasks, "random", k, seeds),
            "constant action": baseline_returns(family, tasks, "constant", k, seeds),
        }
        if family == "navigation-2d":
            result.paths[split] = (tasks[0], trial_paths(policy, family, tasks[0], k, seeds[0]))


def _observations(envs: Any, policy: ActorCritic, seed: int) -> np.ndarray:
    """The raw observations (T, D) of one seeded episode of the one sub-env of ``envs`` (closed here); the
    rollout itself keeps the normalised ones."""
    seen: list[np.ndarray] = []
    try:
        ep = seeded_episodes(envs, policy, seed, before_step=lambda o: seen.append(np.array(o[0], copy=True)))
    finally:
        envs.close()
    return np.stack(seen[: int(ep.lengths[0])])


def episode_path(policy: ActorCritic, family: str, task: Task, seed: int) -> np.ndarray:
    """The positions (T, 2) of one seeded episode on ``task`` (navigation-2d: the observation is the position)."""
    return _observations(get_family(family).make_vec_env([task], seed=seed, fast=True), policy, seed)[:, :2]


def adaptation_paths(
    policy: ActorCritic, family: str, task: Task, cfg: AdaptConfig, seed: int
) -> list[np.ndarray]:
    """One episode's path on ``task`` with the meta-trained parameters and one after ``cfg.steps`` standard
    adaptation steps on it (the adapter's own episodes, seeded ``seed``)."""
    adapter = StandardAdapter(policy, cfg)
    run = adapter.adapt(task, seed=seed)
    return [
        episode_path(policy, family, task, seed + 1000),
        episode_path(adapter.adapted_policy(run.params), family, task, seed + 1000),
    ]


def trial_paths(policy: ActorCritic, family: str, task: Task, k: int, seed: int) -> list[np.ndarray]:
    """The positions (T_e, 2) of each of the ``k`` episodes of one seeded trial on ``task`` (navigation-2d:
    the observation is the position; the trial's done flag, its last feature, starts each later episode)."""
    obs = _observations(
        trial_vec_env(family, k, [task]), policy, seed
    )  # (T, D): [position, action, reward, done]
    starts = [0, *np.flatnonzero(obs[:, -1] > 0.5).tolist(), len(obs)]
    return [obs[a:b, :2] for a, b in zip(starts[:-1], starts[1:])]


def draw_trial_paths(
    ax: Any, task: Task, paths: list[np.ndarray], title: str, labels: Sequence[str] | None = None
) -> None:
    """Draw a navigation-2d trial's paths (:func:`trial_paths`) on ``ax``: the training goals' square, one
    line per episode (darker first; ``labels`` names them, default "episode k"), the goal and the start."""
    plt = pyplot()
    ax.add_patch(plt.Rectangle((-0.5, -0.5), 1.0, 1.0, color="0.9", zorder=0, label="training goals"))
    cmap = plt.get_cmap("viridis")
    for e, p in enumerate(paths):
        color = cmap(e / max(len(paths) - 1, 1))
        label = labels[e] if labels is not None else f"episode {e + 1}"
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.5, label=label)
    ax.plot([task["goal_x"]], [task["goal_y"]], "*", color="crimson", ms=14, label="goal")
    ax.plot([0], [0], "ko", ms=4)
    ax.set_aspect("equal")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _column(r: Returns, k: int) -> Returns:
    """Index ``k`` of an adaptation curve as a one-index result."""
    return Returns(r.label, r.values[:, :, [k]], r.env_steps[:, :, [k]], r.seeds, "eval", r.tasks, r.meta)


def _plot(result: DemoResult, out: Path) -> Path:
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    n_rows = 1 + bool(result.adapt_paths) + bool(result.in_context) + bool(result.paths)
    fig, axes = plt.subplots(n_rows, len(SPLITS), figsize=(5 * len(SPLITS), 3.8 * n_rows), squeeze=False)
    for ax, split in zip(axes[0], SPLITS):
        curves = {name: pairs(r) for name, r in result.curves[split].items()}
        plot_returns(curves, ax, f"{result.family}: {split.replace('_', '-')} tasks, gradient steps")
    axes[0][0].set_ylabel("mean return (95% CI over task-seed pairs)")
    row = 1
    if result.adapt_paths:
        for ax, split in zip(axes[row], SPLITS):
            task, paths = result.adapt_paths[split]
            labels = ["before adaptation", f"after {result.steps} gradient steps"]
            draw_trial_paths(ax, task, paths, f"{result.model}: a {split.replace('_', '-')} goal", labels)
        row += 1
    for ax, split in zip(axes[row] if result.in_context else (), SPLITS):
        curves = {name: pairs(r) for name, r in result.in_context[split].items()}
        title = f"{result.in_context_family}: {split.replace('_', '-')} goals, in context"
        plot_returns(curves, ax, title)
        ax.set_xlabel("episode of the trial")
    if result.in_context:
        axes[row][0].set_ylabel("mean return (95% CI over goal-seed pairs)")
        row += 1
    for ax, split in zip(axes[row] if result.paths else (), SPLITS):
        task, paths = result.paths[split]
        draw_trial_paths(ax, task, paths, f"paths of one trial, a {split.replace('_', '-')} goal")
    fig.tight_layout()
    path = out / "adaptation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
