"""The adaptation protocol every surface uses (CLI, app, benchmarks, demo, tests), as
``docs/concepts/evaluation.md`` states it.

For each mode, seed s and task i: the returns of ``cfg.episodes`` stochastic episodes acting with the
parameters after k = 0..K adaptation steps, each step using the episodes of evaluation k as its data
(:meth:`~ssm_metarl.adapt.standard.StandardAdapter.adapt`). Evaluation k of (s, i) is seeded identically in
every mode (environments and action noise), so the k = 0 column is the same in every mode and every
difference after it comes from the adaptation. Everything comes back as :class:`~ssm_metarl.results.Returns`
(index ``"step"``); intervals are over seeds, and ``hybrid - standard`` is the paired difference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ssm_metarl.adapt.hybrid import fill_buffer, make_adapter
from ssm_metarl.adapt.replay import ExperienceBuffer
from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.errors import InputError
from ssm_metarl.meta.evaluate import baseline_returns
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.results import Returns, describe, format_table

Mode = Literal["standard", "hybrid"]


def task_seed(seed: int, task_index: int) -> int:
    """The seed of the adaptation of task ``task_index`` with evaluation seed ``seed`` (its evaluation k is
    seeded ``task_seed + k``)."""
    return seed * 100_003 + task_index * 101


def evaluate_adaptation(
    policy: ActorCritic,
    family: str,
    tasks: Sequence[Task],
    cfg: AdaptConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    mode: Mode = "standard",
    buffer: ExperienceBuffer | None = None,
    label: str | None = None,
) -> Returns:
    """Return before and after each of ``cfg.steps`` adaptation steps, per seed, task and episode."""
    cfg = cfg or AdaptConfig()
    _check_tasks(family, tasks, seeds)
    adapter = make_adapter(mode, policy, cfg, buffer)
    S, I, K, E = len(seeds), len(tasks), cfg.steps + 1, cfg.episodes
    values, steps = np.zeros((S, I, K, E)), np.zeros((S, I, K), dtype=np.int64)
    envs = get_family(family).make_vec_env([tasks[0]] * E, seed=0, fast=True)
    try:
        for s_i, seed in enumerate(seeds):
            for t_i, task in enumerate(tasks):
                run = adapter.adapt(task, task_seed(seed, t_i), envs)
                values[s_i, t_i], steps[s_i, t_i] = np.stack(run.returns), run.env_steps
    finally:
        envs.close()
    meta = {"family": family, "mode": mode, **cfg.to_dict()}
    if mode == "hybrid" and buffer is not None:
        meta["buffer_steps"] = buffer.num_steps
    return Returns(label or mode, values, steps, tuple(seeds), "step", tuple(str(t) for t in tasks), meta)


def _check_tasks(family: str, tasks: Sequence[Task], seeds: Sequence[int]) -> None:
    if not tasks:
        raise InputError("adaptation needs at least one task")
    if not seeds:
        raise InputError("adaptation needs at least one seed")
    if any(t.family != family for t in tasks):
        raise InputError(f"every task must belong to {family!r}")


def compare_adaptation(
    policy: ActorCritic,
    family: str,
    tasks: Sequence[Task],
    cfg: AdaptConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    modes: Sequence[Mode] = ("standard", "hybrid"),
    buffer: ExperienceBuffer | None = None,
    buffer_tasks: int = 10,
) -> dict[str, Returns]:
    """Adapt ``policy`` to each of ``tasks`` with each mode and seed, from the same weights and seeds.

    Returns ``{"random policy", *modes, "hybrid - standard" (when both ran)}``. When ``"hybrid"`` is among
    ``modes`` and no ``buffer`` is given, one is filled by :func:`~ssm_metarl.adapt.hybrid.fill_buffer` with
    ``cfg.episodes`` episodes on each of the first ``buffer_tasks`` tasks of the family's **training** split,
    acting with the initial (meta-learned) policy; its env steps are in the hybrid result's ``meta``.
    Works for discrete and continuous families and for recurrent and feed-forward policies.
    """
    cfg = cfg or AdaptConfig()
    _check_tasks(family, tasks, seeds)
    unknown = [m for m in modes if m not in ("standard", "hybrid")]
    if unknown or not modes:
        raise InputError(f"modes must be a non-empty subset of ('standard', 'hybrid'), got {list(modes)}")
    if "hybrid" in modes and buffer is None:
        buffer = fill_buffer(
            policy, family, get_family(family).train[:buffer_tasks], cfg.episodes, seed=10_007
        )
    out = {"random policy": baseline_returns(family, tasks, "random", cfg.episodes, seeds)}
    for mode in modes:
        label = f"hybrid (w={cfg.experience_weight:g})" if mode == "hybrid" else mode
        out[mode] = evaluate_adaptation(policy, family, tasks, cfg, seeds, mode, buffer, label)
    if "standard" in out and "hybrid" in out:
        out["hybrid - standard"] = out["hybrid"] - out["standard"]
    return out


def comparison_header(results: dict[str, Returns]) -> str:
    """What an adaptation comparison measured, in a few lines above its table."""
    main = next(r for r in results.values() if r.index == "step")
    m = main.meta
    lines = [
        f"{m.get('family', '?')}: {describe(main)}; {m.get('episodes')} stochastic episodes per evaluation and per "
        f"adaptation step; algo {m.get('algo')}, lr {m.get('lr')}, baseline {m.get('baseline')}"
    ]
    hybrid = results.get("hybrid")
    if hybrid is not None and "buffer_steps" in hybrid.meta:
        lines.append(
            f"hybrid replay buffer: {hybrid.meta['buffer_steps']} env steps collected beforehand on training tasks"
        )
    return "\n".join(lines)


def adapt_checkpoint(
    checkpoint: str | Path,
    cfg: AdaptConfig | None = None,
    split: Literal["train", "validation", "test", "out_of_range"] = "test",
    num_tasks: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    modes: Sequence[Mode] = ("standard", "hybrid"),
    buffer: str | Path | None = None,
    family: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Returns]:
    """What ``ssm-metarl adapt <checkpoint>`` runs: load the policy, compare adaptation on a task split.

    ``cfg`` defaults to the family's adapt recipe for the policy's backbone; ``buffer`` is a saved :class:`ExperienceBuffer` folder for
    the hybrid mode (default: filled from the family's training tasks); ``family`` defaults to the one in the
    checkpoint's metadata; ``out`` writes ``<out>.json`` and ``<out>.md``.
    """
    from ssm_metarl.checkpoint import load_metadata, load_policy
    from ssm_metarl.recipes import adapt_recipe

    meta = load_metadata(checkpoint)
    family = family or meta.get("family")
    if family is None:
        raise InputError(f"{checkpoint} records no task family in its metadata: pass the family explicitly")
    tasks = get_family(family).split(split)[:num_tasks]
    if not tasks:
        raise InputError(f"{family!r} has no {split!r} tasks")
    policy = load_policy(checkpoint)
    cfg = cfg or adapt_recipe(family, policy.describe()["kind"])
    replay = ExperienceBuffer.load(buffer) if buffer is not None and "hybrid" in modes else None
    results = compare_adaptation(policy, family, tasks, cfg, seeds, modes, replay)
    if out is not None:
        save_results(results, out, comparison_header(results))
    return results


def save_results(results: dict[str, Returns], out: str | Path, header: str = "") -> tuple[Path, Path]:
    """Write ``<out>.json`` (every result, raw values included) and ``<out>.md`` (the markdown table)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    js.write_text(
        json.dumps({"header": header, "results": {k: r.to_dict() for k, r in results.items()}}, indent=1)
        + "\n"
    )
    md.write_text((header + "\n\n" if header else "") + format_table(results, markdown=True))
    return js, md


def scratch_ppo_returns(
    family: str, tasks: Sequence[Task], env_steps: int, seeds: Sequence[int] = (0,), episodes: int = 10
) -> Returns:
    """PPO from scratch (the family's ppo recipe) on each task, given ``env_steps`` env steps, then
    ``episodes`` stochastic evaluation episodes: the "no meta-learning at all" row at an adaptation's budget."""
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.evaluate import evaluate_policy
    from ssm_metarl.rl.ppo import train_ppo

    if env_steps < 1:
        raise InputError(f"env_steps must be >= 1, got {env_steps}")
    dist = get_family(family)
    values = np.zeros((len(seeds), len(tasks), 1, episodes))
    for s_i, seed in enumerate(seeds):
        for t_i, task in enumerate(tasks):
            cfg = recipe("ppo", dist.task_env_id(task))
            cfg = cfg.replace(
                total_steps=max(env_steps, cfg.batch_size), run=cfg.run.replace(seed=seed, progress=False)
            )
            policy = train_ppo(cfg).policy
            ev = evaluate_policy(policy, cfg.env_id, episodes, seed=seed, deterministic=False)
            values[s_i, t_i, 0] = ev.values.ravel()
    steps = np.full((len(seeds), len(tasks), 1), env_steps)
    return Returns(
        f"PPO from scratch, {env_steps} steps",
        values,
        steps,
        tuple(seeds),
        "eval",
        tuple(str(t) for t in tasks),
        {"env_steps": env_steps},
    )


__all__ = [
    "Mode",
    "adapt_checkpoint",
    "compare_adaptation",
    "comparison_header",
    "evaluate_adaptation",
    "save_results",
    "scratch_ppo_returns",
    "task_seed",
]
