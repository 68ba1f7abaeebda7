"""The "Test-time adaptation" tab: standard and/or hybrid adaptation from the same weights and seeds, shown.

:func:`run_adaptation` calls :func:`ssm_metarl.adapt.compare_adaptation` (the protocol every surface
shares) with the chosen modes (``"standard"``, ``"hybrid"`` or ``"both"``) on held-out, out-of-range or
hand-set tasks, then replays the adaptation of the first task with the first seed (the same seeds the
comparison used, so the same parameters it measured) and records one episode before adaptation and one
after each chosen mode's adaptation. RL² models adapt in context, without gradient steps: for them the mode
choice does not apply and the tab shows the return of each episode of a trial instead, and on navigation-2d
the paths of one trial (episode 1 searching, the later ones going to the goal it found).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Literal

from matplotlib.figure import Figure

from ssm_metarl.adapt import Mode, compare_adaptation, comparison_header, fill_buffer, make_adapter
from ssm_metarl.adapt.evaluate import task_seed
from ssm_metarl.adapt.replay import ExperienceBuffer
from ssm_metarl.app import plots
from ssm_metarl.app.models import ModelInfo, model_info
from ssm_metarl.app.render import Episode, episodes_gif, record_episode
from ssm_metarl.app.session import AppSession, UserError
from ssm_metarl.checkpoint import load_policy
from ssm_metarl.config import AdaptConfig
from ssm_metarl.demo import draw_trial_paths, trial_paths
from ssm_metarl.envs.tasks import BoxTaskDistribution, Task, get_family
from ssm_metarl.errors import InputError
from ssm_metarl.meta.evaluate import baseline_returns
from ssm_metarl.meta.rl2 import evaluate_in_context
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.recipes import adapt_recipe
from ssm_metarl.results import Returns, table_rows

TaskSource = Literal["held-out", "out-of-range", "by hand"]
TASK_SOURCES: list[str] = ["held-out", "out-of-range", "by hand"]
ADAPT_MODES: list[str] = ["standard", "hybrid", "both"]
"""The tab's mode choice: one of the two adaptation modes, or both side by side (the default)."""
MAX_EPISODES = 6000
"""Most episodes one comparison may run (about a few minutes of CartPole on this 2-core machine)."""
RENDER_SEED = 4242


@dataclass(frozen=True)
class AdaptRequest:
    """What the Test-time adaptation tab's controls say."""

    label: str | None
    tasks: str = "held-out"
    num_tasks: int = 3
    physics: dict[str, float] = field(default_factory=dict)
    """Task parameters for ``tasks="by hand"``."""
    steps: int = 2
    seeds: int = 2
    trajectories: int = 10
    lr: float | None = None
    """Adaptation step size (None: the inner lr the model was meta-trained with, else its backbone's adapt recipe)."""
    experience_weight: float = 0.1
    algo: Literal["pg", "ppo"] = "pg"
    render: bool = True
    modes: str = "both"
    """Which adaptation modes to run: one of :data:`ADAPT_MODES` (ignored by RL² models, which adapt in
    context)."""


@dataclass
class AdaptOutcome:
    """What the tab shows: the curves, the before/after table, a summary and the rendered episodes."""

    figure: Figure
    headers: list[str]
    rows: list[list[str]]
    summary: str
    gif: str | None = None
    render_note: str = ""
    results: dict[str, Returns] = field(default_factory=dict)
    """What the table and the curves show (the comparison, or the in-context episodes)."""
    replayed: dict[str, list[float]] = field(default_factory=dict)
    """mode -> returns of the replayed adaptation behind the rendered episodes (task 1, first seed)."""


def physics_fields(family: str | None) -> list[tuple[str, float, float, float]]:
    """(name, training low, training high, default) of each task parameter a person can set by hand;
    empty for families without a box of parameters (bandits, MDPs, finite sets)."""
    if family is None:
        return []
    dist = get_family(family)
    if not isinstance(dist, BoxTaskDistribution):
        return []
    return [(p, lo, hi, round((lo + hi) / 2, 3)) for p, (lo, hi) in dist.ranges.items()]


def hand_task(family: str, physics: dict[str, float]) -> Task:
    """A task with the hand-set parameters, checked: every parameter given, finite, and > 0 where the
    training range is positive (masses, lengths, gravity, forces)."""
    fields = physics_fields(family)
    if not fields:
        raise UserError(f"{family} has no physics to set by hand; pick held-out or out-of-range tasks.")
    params = {}
    for name, lo, _, _ in fields:
        v = physics.get(name)
        if v is None or not math.isfinite(float(v)):
            raise UserError(f"Set a number for {name}.")
        if lo > 0 and v <= 0:
            raise UserError(f"{name} must be > 0 (training range starts at {lo:g}), got {v:g}.")
        params[name] = float(v)
    task = Task.from_params(family, params)
    try:
        get_family(family).make_env(task).close()
    except (ValueError, TypeError) as e:
        raise UserError(f"These physics cannot be simulated: {e}") from e
    return task


def chosen_modes(choice: str) -> tuple[Mode, ...]:
    """The adaptation modes a choice of :data:`ADAPT_MODES` runs, in table order."""
    if choice == "both":
        return ("standard", "hybrid")
    if choice == "standard":
        return ("standard",)
    if choice == "hybrid":
        return ("hybrid",)
    raise UserError(f"Unknown adaptation mode {choice!r}; pick one of {', '.join(ADAPT_MODES)}.")


def pick_tasks(family: str, source: str, n: int, physics: dict[str, float]) -> list[Task]:
    dist = get_family(family)
    if source == "by hand":
        return [hand_task(family, physics)]
    if source not in TASK_SOURCES:
        raise UserError(f"Unknown task choice {source!r}; pick one of {', '.join(TASK_SOURCES)}.")
    split = "test" if source == "held-out" else "out_of_range"
    tasks = dist.split(split)[: max(1, int(n))]
    if not tasks:
        raise UserError(f"{family} has no out-of-range tasks (its parameters have no range to leave).")
    return tasks


def range_note(family: str, tasks: list[Task]) -> str:
    """Which hand-set parameters lie outside the training range."""
    dist = get_family(family)
    if not isinstance(dist, BoxTaskDistribution) or len(tasks) != 1:
        return ""
    out = [
        f"{p}={tasks[0][p]:g} (trained on {lo:g}..{hi:g})"
        for p, (lo, hi) in dist.ranges.items()
        if not lo <= tasks[0][p] <= hi
    ]
    return ("Outside the training range: " + ", ".join(out) + ".") if out else "All parameters are in range."


def _check_budget(req: AdaptRequest, n_tasks: int, in_context: bool) -> None:
    modes = 1 if in_context else len(chosen_modes(req.modes))
    per_task = (req.steps + 1) * req.trajectories if not in_context else 1
    episodes = modes * req.seeds * n_tasks * per_task
    if min(req.seeds, req.trajectories) < 1 or req.steps < (0 if in_context else 1):
        raise UserError("Use at least 1 seed, 1 trajectory and 1 adaptation step.")
    if episodes > MAX_EPISODES:
        raise UserError(
            f"That is {episodes:,} episodes ({modes} mode(s) x {req.seeds} seeds x {n_tasks} tasks x "
            f"{per_task} episodes), more than this app runs at once ({MAX_EPISODES:,}): use fewer "
            "tasks, seeds, steps or trajectories."
        )


def _render(
    policy: ActorCritic,
    cfg: AdaptConfig,
    task: Task,
    buffer: ExperienceBuffer | None,
    session: AppSession,
    modes: tuple[Mode, ...],
) -> tuple[str | None, str, dict[str, list[float]]]:
    """Replay the comparison's adaptation of ``task`` with its first seed in each of ``modes``; record
    before and after.

    Returns the GIF's path (None when nothing could be drawn), a note, and the replayed runs' mean returns
    per mode (they equal the comparison's first seed and task: same seeds, same data, same parameters)."""
    panels: list[tuple[str, Episode]] = []
    replayed: dict[str, list[float]] = {}
    ep = record_episode(policy, task, RENDER_SEED)
    panels.append((f"before: return {ep.ret:.0f}", ep))
    for mode in modes:
        adapter = make_adapter(mode, policy, cfg, buffer)
        run = adapter.adapt(task, task_seed(0, 0))
        replayed[mode] = run.mean_returns
        ep = record_episode(adapter.adapted_policy(run.params), task, RENDER_SEED)
        panels.append((f"after {cfg.steps} {mode}: {ep.ret:.0f}", ep))
    if not any(e.frames for _, e in panels):
        return None, panels[0][1].note, replayed
    folder = session.run_dir / "episodes"
    for old in folder.glob("*.gif") if folder.is_dir() else []:
        old.unlink(missing_ok=True)
    path = episodes_gif(panels, folder / f"{uuid.uuid4().hex[:8]}.gif")
    note = (
        f"One episode on task 1 ({task}), the same env seed in every panel: the policy before adaptation "
        f"and after {cfg.steps} step(s) of {' and '.join(modes)} adaptation, with the first seed's "
        "adaptation data."
    )
    return str(path), note, replayed


def _render_paths(
    policy: ActorCritic, family: str, task: Task, k: int, session: AppSession
) -> tuple[str | None, str]:
    """Navigation-2d: the paths of one trial on ``task`` as a PNG (episode 1 explores, the later ones go to
    the goal they found); other families: nothing to draw."""
    if family != "navigation-2d":
        return None, "Paths are drawn for navigation-2d; episodes are rendered for gradient-adapted models."
    paths = trial_paths(policy, family, task, k, RENDER_SEED)
    fig, ax = plots.plt.subplots(figsize=(4.6, 4.6), dpi=100)
    goal = f"({task['goal_x']:.2f}, {task['goal_y']:.2f})"
    draw_trial_paths(ax, task, paths, f"one trial of {k} episodes, goal {goal}")
    folder = session.run_dir / "episodes"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("paths-*.png"):
        old.unlink(missing_ok=True)
    path = folder / f"paths-{uuid.uuid4().hex[:8]}.png"
    fig.tight_layout()
    fig.savefig(path)
    plots.plt.close(fig)
    note = (
        f"The agent's paths in one trial on task 1 ({task}): episode 1 searches for the goal it cannot see, "
        f"the later episodes of the same trial go where the rewards said it is (the state carries over; no "
        f"gradient step)."
    )
    return str(path), note


def _in_context(
    info: ModelInfo, policy: ActorCritic, req: AdaptRequest, tasks: list[Task], session: AppSession
) -> AdaptOutcome:
    K = int(info.episodes_per_trial or 2)
    seeds = tuple(range(req.seeds))
    results = {
        "random policy": baseline_returns(info.family or "", tasks, "random", req.trajectories, seeds),
        "in-context (RL²)": evaluate_in_context(
            policy, info.family or "", tasks, K, seeds, label="in-context (RL²)"
        ),
    }
    fig = plots.adaptation_curve(results, f"{info.label} on {len(tasks)} task(s)")
    headers, rows = table_rows(results)
    summary = (
        f"**{info.label}** is an RL² model: it adapts *in context* (its recurrent state carries what it "
        f"learned from earlier episodes of the same task), so gradient-based standard and hybrid "
        f"adaptation do not apply, and neither does the adaptation-mode choice ({req.modes!r}). Shown: "
        f"the return of each of the {K} episodes of one trial per task, "
        f"{len(tasks)} task(s) x {req.seeds} seed(s), mean ± 95% interval over seeds."
    )
    gif, note = _render_paths(policy, info.family or "", tasks[0], K, session) if req.render else (None, "")
    return AdaptOutcome(fig, headers, rows, summary, gif=gif, render_note=note, results=results)


def run_adaptation(session: AppSession, req: AdaptRequest) -> AdaptOutcome:
    """Adapt model ``req.label`` with the chosen modes, beside the random policy (see the module docstring)."""
    modes = chosen_modes(req.modes)
    info = model_info(session, req.label)
    if info.family is None:
        raise UserError(f"{info.label} does not record its task family, so there is nothing to adapt it to.")
    tasks = pick_tasks(info.family, req.tasks, req.num_tasks, req.physics)
    _check_budget(req, len(tasks), info.in_context)
    policy = load_policy(info.path).eval()
    if info.in_context:
        return _in_context(info, policy, req, tasks, session)
    try:
        base = adapt_recipe(info.family, info.kind)
        cfg = base.replace(
            steps=req.steps,
            episodes=req.trajectories,
            lr=req.lr or info.inner_lr or base.lr,
            experience_weight=req.experience_weight,
            algo=req.algo,
        )
    except InputError as e:
        raise UserError(str(e)) from e
    buffer = None
    if "hybrid" in modes:
        buffer = fill_buffer(
            policy, info.family, get_family(info.family).train[:10], req.trajectories, seed=10_007
        )
    seeds = tuple(range(req.seeds))
    results = compare_adaptation(policy, info.family, tasks, cfg, seeds, modes=modes, buffer=buffer)
    fig = plots.adaptation_curve(results, f"{info.label} on {len(tasks)} {req.tasks} task(s)")
    headers, rows = table_rows(results)
    summary = "\n\n".join(
        [
            comparison_header(results).replace("\n", "\n\n"),
            range_note(info.family, tasks) if req.tasks == "by hand" else "",
        ]
    )
    gif, note, replayed = (
        _render(policy, cfg, tasks[0], buffer, session, modes) if req.render else (None, "", {})
    )
    return AdaptOutcome(fig, headers, rows, summary.strip(), gif, note, results, replayed=replayed)


__all__ = [
    "ADAPT_MODES",
    "TASK_SOURCES",
    "AdaptOutcome",
    "AdaptRequest",
    "chosen_modes",
    "hand_task",
    "physics_fields",
    "pick_tasks",
    "run_adaptation",
]
