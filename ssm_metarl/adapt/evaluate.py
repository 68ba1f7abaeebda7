"""The adaptation comparison every surface uses (CLI, app, benchmarks, demo): standard vs hybrid adaptation
on the same held-out tasks, seeds and initial weights (EVALUATION.md).

For each mode, seed s and task i: the return of ``num_trajectories`` stochastic episodes acting with the
parameters after k = 0..K adaptation steps, each step using the episodes of evaluation k as its data
(:meth:`~ssm_metarl.adapt.standard.StandardAdapter.adapt`). Evaluation k of (s, i) is seeded identically in
every mode (environments and action noise), so the k = 0 row is the same in every mode and every
difference after it comes from the adaptation. Intervals: 95% t-intervals over seed means
(:func:`~ssm_metarl.meta.evaluate.mean_ci`); :meth:`AdaptationComparison.paired_difference` gives the
interval of a paired difference, the only basis for claiming one mode beats another.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ssm_metarl.adapt.hybrid import fill_buffer, make_adapter
from ssm_metarl.adapt.replay import ExperienceBuffer
from ssm_metarl.adapt.standard import AdaptAlgo
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.meta.evaluate import AdaptationCurve, mean_ci, random_policy_returns
from ssm_metarl.models.heads import ActorCritic

Mode = Literal["standard", "hybrid"]


@dataclass(frozen=True)
class AdaptationComparison:
    """Returns per mode, seed, task and step, with everything needed to read or rerun them."""

    family: str
    tasks: list[Task]
    seeds: tuple[int, ...]
    steps: int
    """K: adaptation steps (each row has K + 1 entries)."""
    num_trajectories: int
    """episodes per evaluation (and per adaptation step)."""
    lr: float
    algo: str
    experience_weight: float
    curves: dict[str, AdaptationCurve]
    """mode -> curve with ``returns[s, i, k]`` (S, I, K + 1)."""
    env_steps: dict[str, np.ndarray]
    """mode -> (S, I, K + 1) env steps of evaluation k (the data of step k + 1)."""
    random_returns: np.ndarray
    """(S,) mean return of uniformly random actions on the tasks, per seed."""
    buffer_steps: int = 0
    """env steps held in the hybrid mode's starting buffer (collected before adaptation), 0 without one."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modes(self) -> list[str]:
        return list(self.curves)

    def summary(self, mode: str) -> list[tuple[float, float]]:
        """(mean, 95% half-width) of ``mode`` after each step k = 0..K, over seed means."""
        return self.curves[mode].summary()

    def random_summary(self) -> tuple[float, float]:
        """(mean, 95% half-width) of the random policy over seeds."""
        return mean_ci(self.random_returns)

    def paired_difference(self, a: str = "hybrid", b: str = "standard") -> list[tuple[float, float]]:
        """(mean, 95% half-width) of ``a - b`` after each step, paired by seed (same tasks, same seeds)."""
        d = self.curves[a].returns.mean(1) - self.curves[b].returns.mean(1)  # (S, K + 1)
        return [mean_ci(d[:, k]) for k in range(d.shape[1])]

    def improvement(self, mode: str) -> tuple[float, float]:
        """(mean, 95% half-width) of the return after K steps minus before, paired by seed."""
        per_seed = self.curves[mode].returns.mean(1)  # (S, K + 1)
        return mean_ci(per_seed[:, -1] - per_seed[:, 0])

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per method (EVALUATION.md "Results files"): name, per-step mean and 95%
        half-width, env steps per adaptation step; the random policy first."""
        m, h = self.random_summary()
        out: list[dict[str, Any]] = [
            {"name": "random policy", "mean": [m], "ci95": [h], "env_steps_per_step": 0}
        ]
        for mode, curve in self.curves.items():
            s = curve.summary()
            out.append({
                "name": mode, "mean": [x for x, _ in s], "ci95": [x for _, x in s],
                "env_steps_per_step": curve.env_steps_per_step,
                **({"buffer_steps": self.buffer_steps, "experience_weight": self.experience_weight}
                   if mode == "hybrid" else {}),
            })  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON: config, rows and the raw per-seed, per-task returns."""
        return {
            "family": self.family, "tasks": [t.to_dict() for t in self.tasks], "seeds": list(self.seeds),
            "steps": self.steps, "num_trajectories": self.num_trajectories, "lr": self.lr, "algo": self.algo,
            "experience_weight": self.experience_weight, "buffer_steps": self.buffer_steps, "rows": self.rows(),
            "returns": {m: c.returns.tolist() for m, c in self.curves.items()},
            "random_returns": self.random_returns.tolist(), **self.extra,
        }  # fmt: skip

    def table(self, markdown: bool = False) -> str:
        """The comparison as a text (or markdown) table; see :func:`ssm_metarl.adapt.report.format_table`."""
        from ssm_metarl.adapt.report import format_table

        return format_table(self, markdown=markdown)


def compare_adaptation(
    policy: ActorCritic,
    family: str,
    tasks: Sequence[Task],
    steps: int = 3,
    seeds: Sequence[int] = (0, 1, 2),
    num_trajectories: int = 20,
    lr: float = 0.1,
    experience_weight: float = 0.1,
    buffer: ExperienceBuffer | None = None,
    modes: Sequence[Mode] = ("standard", "hybrid"),
    algo: AdaptAlgo = "pg",
    gamma: float = 0.99,
    replay_batch_size: int | None = None,
    buffer_tasks: int = 10,
    ppo_epochs: int = 4,
) -> AdaptationComparison:
    """Adapt ``policy`` to each of ``tasks`` with each mode, for each seed; see the module docstring.

    Args:
        policy: the meta-learned policy (never modified); every mode starts from its parameters.
        family: the task family of ``tasks``.
        tasks: held-out tasks, e.g. ``get_family(family).test[:10]``.
        steps: K adaptation steps.
        seeds: evaluation seeds; evaluation k of seed s on task i is seeded ``s * 100_003 + i * 101 + k``.
        num_trajectories: episodes per evaluation and per adaptation step.
        lr: adaptation step size; algo: ``pg`` (MAML's inner loss) or ``ppo``; gamma: discount.
        experience_weight: weight of the hybrid mode's replay loss.
        buffer: the hybrid mode's replay buffer. When None and ``"hybrid"`` is among ``modes``, one is filled
            here by :func:`~ssm_metarl.adapt.hybrid.fill_buffer` with ``num_trajectories`` episodes on each of
            the first ``buffer_tasks`` tasks of the family's **training** split, acting with the initial
            (meta-learned) policy; its env steps are reported as ``buffer_steps``.
        replay_batch_size: trajectories replayed per step (default ``num_trajectories``).
        buffer_tasks: training tasks the default buffer is filled from.
        ppo_epochs: SGD steps per adaptation step with ``algo="ppo"``.

    Works for discrete and continuous families and for recurrent and feed-forward policies.
    """
    if not tasks:
        raise ValueError("compare_adaptation needs at least one task")
    if not seeds:
        raise ValueError("compare_adaptation needs at least one seed")
    if any(t.family != family for t in tasks):
        raise ValueError(f"every task must belong to {family!r}")
    unknown = [m for m in modes if m not in ("standard", "hybrid")]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of ('standard', 'hybrid'), got {list(modes)}")
    dist = get_family(family)
    if "hybrid" in modes and buffer is None:
        buffer = fill_buffer(policy, family, dist.train[:buffer_tasks], num_trajectories, seed=10_007)
    buffer_steps = buffer.num_steps if buffer is not None and "hybrid" in modes else 0
    S, I, K = len(seeds), len(tasks), steps
    envs = dist.make_vec_env([tasks[0]] * num_trajectories, seed=0, fast=True)
    curves, env_steps = {}, {}
    try:
        for mode in modes:
            adapter = make_adapter(mode, policy, buffer, experience_weight, replay_batch_size or num_trajectories,
                                   lr=lr, algo=algo, gamma=gamma, ppo_epochs=ppo_epochs)  # fmt: skip
            returns, used = np.zeros((S, I, K + 1)), np.zeros((S, I, K + 1), dtype=np.int64)
            for s_i, seed in enumerate(seeds):
                for t_i, task in enumerate(tasks):
                    run = adapter.adapt(task, K, num_trajectories, seed * 100_003 + t_i * 101, envs)
                    returns[s_i, t_i], used[s_i, t_i] = run.returns, run.env_steps
            curves[mode] = AdaptationCurve(returns, float(used.mean()))
            env_steps[mode] = used
    finally:
        envs.close()
    random = np.array([random_policy_returns(family, list(tasks), num_trajectories, seed) for seed in seeds])
    return AdaptationComparison(
        family=family, tasks=list(tasks), seeds=tuple(seeds), steps=K, num_trajectories=num_trajectories,
        lr=lr, algo=algo, experience_weight=experience_weight, curves=curves, env_steps=env_steps,
        random_returns=random, buffer_steps=buffer_steps,
    )  # fmt: skip


def adapt_checkpoint(
    checkpoint: str | Path,
    mode: Literal["standard", "hybrid", "both"] = "both",
    split: Literal["train", "test", "out_of_range"] = "test",
    steps: int = 3,
    num_tasks: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    num_trajectories: int = 20,
    lr: float | None = None,
    experience_weight: float = 0.1,
    buffer: str | Path | None = None,
    family: str | None = None,
    algo: AdaptAlgo = "pg",
    out: str | Path | None = None,
) -> AdaptationComparison:
    """What ``ssm-metarl adapt <checkpoint>`` runs: load the policy, compare adaptation on a task split.

    Args:
        checkpoint: a policy checkpoint folder (:func:`~ssm_metarl.checkpoint.save_policy`).
        mode: ``standard``, ``hybrid`` or ``both``; ``hybrid`` alone still runs standard beside it, so the
            table always carries the paired difference (same tasks, seeds and initial weights).
        split: which fixed task list to adapt to; the first ``num_tasks`` of it are used.
        lr: adaptation step size (default: the ``inner_lr`` the checkpoint was meta-trained with, else 0.1).
        buffer: a saved :class:`ExperienceBuffer` folder for the hybrid mode (default: filled from the
            family's training tasks, see :func:`compare_adaptation`).
        family: the task family (default: the one in the checkpoint's metadata).
        out: when given, write ``<out>.json`` (:meth:`AdaptationComparison.to_dict`) and ``<out>.md`` (the
            markdown table).
        steps, seeds, num_trajectories, experience_weight, algo: as for :func:`compare_adaptation`.
    """
    from ssm_metarl.checkpoint import load_metadata, load_policy

    meta = load_metadata(checkpoint)
    family = family or meta.get("family")
    if family is None:
        raise ValueError(f"{checkpoint} records no task family in its metadata: pass the family explicitly")
    if lr is None:
        lr = float(meta.get("config", {}).get("inner_lr", 0.1))
    tasks = get_family(family).split(split)[:num_tasks]
    if not tasks:
        raise ValueError(f"{family!r} has no {split!r} tasks")
    modes: tuple[Mode, ...] = ("standard",) if mode == "standard" else ("standard", "hybrid")
    policy = load_policy(checkpoint)
    replay = ExperienceBuffer.load(buffer) if buffer is not None and "hybrid" in modes else None
    comparison = compare_adaptation(
        policy, family, tasks, steps=steps, seeds=seeds, num_trajectories=num_trajectories, lr=lr,
        experience_weight=experience_weight, buffer=replay, modes=modes, algo=algo,
    )  # fmt: skip
    comparison.extra.update({"checkpoint": str(checkpoint), "split": split})
    if out is not None:
        save_comparison(comparison, out)
    return comparison


def scratch_ppo_returns(
    family: str, tasks: Sequence[Task], env_steps: int, seeds: Sequence[int] = (0,), episodes: int = 10
) -> np.ndarray:
    """(S, I) mean stochastic return of ``episodes`` episodes after PPO from scratch (the family's tuned
    ``ppo_defaults``) on task i with seed s, given ``env_steps`` env steps: the "no meta-learning at all" row,
    at the same budget an adaptation used."""
    from ssm_metarl.config import replace
    from ssm_metarl.defaults import ppo_defaults
    from ssm_metarl.rl.evaluate import evaluate_policy
    from ssm_metarl.rl.ppo import train_ppo

    if env_steps < 1:
        raise ValueError(f"env_steps must be >= 1, got {env_steps}")
    dist = get_family(family)
    out = np.zeros((len(seeds), len(tasks)))
    for s_i, seed in enumerate(seeds):
        for t_i, task in enumerate(tasks):
            cfg = replace(ppo_defaults(dist.task_env_id(task)), total_steps=env_steps, seed=seed, progress=False,
                          eval_every=0)  # fmt: skip
            policy = train_ppo(cfg).policy
            out[s_i, t_i] = evaluate_policy(policy, cfg.env_id, episodes, seed=seed, deterministic=False).mean
    return out


def save_comparison(comparison: AdaptationComparison, out: str | Path) -> tuple[Path, Path]:
    """Write ``<out>.json`` (everything, plain JSON) and ``<out>.md`` (the markdown table)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    js.write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
    md.write_text(comparison.table(markdown=True))
    return js, md


__all__ = [
    "AdaptationComparison",
    "Mode",
    "adapt_checkpoint",
    "compare_adaptation",
    "save_comparison",
    "scratch_ppo_returns",
]
