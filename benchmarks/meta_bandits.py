"""RL² on Bernoulli bandits (Duan et al. 2016, sec. 4.1): ssm and gru agents vs UCB1, Thompson sampling and Bayes-optimal.

    python benchmarks/meta_bandits.py                                  # K in {5, 10}, N in {10, 100}
    python benchmarks/meta_bandits.py --cells k5-n10 --steps 300000 --seeds 0
    python benchmarks/meta_bandits.py --seeds 1 2 --merge benchmarks/results/meta_bandits.json  # add seeds
    python benchmarks/meta_bandits.py --models gated_ssm --split validation --seeds 100 101 102 103 104 \
        --set state_dim=128 --ppo-set gamma=1.0 --name meta_bandits_select_wide  # a variant, on selection seeds

Each agent (by default the RL² recipe's backbone, ``recipes.RL2_KIND``, and the gru; runs are labelled by
backbone kind and settings) is trained with PPO (``recipe("rl2", family, model)``) on one-episode trials of N pulls of a
bandit drawn from U[0, 1]^K, then plays every held-out bandit of the cell's test split (``--split
validation`` to choose a setting, such as ``--ring-min``, ``--set`` of ModelConfig fields or ``--ppo-set`` of
PPOConfig fields, on selection seeds; a variant's column names what it changed) ``--eval-runs`` times
(evaluation seeds 0, 1000, 2000, ...); the classic algorithms play the same bandits
(``ssm_metarl.meta.bandits``), and so does the exact Bayes-optimal policy for the prior where its dynamic
program is small enough (N <= 20): the ceiling of what meta-training on this prior can reach on average.
The figure of merit is the mean total reward; ``ssm_over_thompson_worst`` is the lowest ratio of the ssm
agent to Thompson sampling over the cells.
An agent's interval is over training seeds (none, and ``null`` in the JSON, for a single seed). Writes
results/<name>.{json,md,png} (``--name``, default ``meta_bandits``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    add_merge_arguments,
    backbone_label,
    backbone_of,
    backbone_record,
    ci_cell,
    command_line,
    machine_info,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
    from ssm_metarl.recipes import recipe

    torch.set_num_threads(1)
    family = f"bandit-{job['cell']}"
    # a trial is one episode of N pulls: the recipe's trial env for bandit families
    cfg = recipe("rl2", family, job["model"]).replace(
        run__seed=job["seed"], run__progress=False, total_steps=job["steps"]
    )
    cfg = cfg.replace(model=cfg.model.replace(**job.get("overrides", {})), **job.get("ppo_overrides", {}))
    t0 = time.perf_counter()
    policy = train_rl2(cfg).policy
    seconds = time.perf_counter() - t0
    tasks = get_family(family).split(job.get("split", "test"))
    played = evaluate_in_context(policy, family, tasks, 1, seeds=[1000 * r for r in range(job["eval_runs"])])
    totals = played.values[:, :, 0, 0]  # (eval runs, tasks): the total reward of each play
    return {
        **job,
        "backbone": backbone_record(cfg.model),
        "mean_total": float(totals.mean()),
        "per_task": totals.mean(0).tolist(),
        "train_seconds": seconds,
    }


def run_label(r: dict[str, Any]) -> str:
    """A run's column: its backbone's label, plus the PPO fields it changed (``--ppo-set``) in brackets."""
    ppo = r.get("ppo_overrides") or {}
    return backbone_label(backbone_of(r)) + "".join(f" [{k} {v}]" for k, v in sorted(ppo.items()))


def _assignments(items: list[str], flag: str) -> dict[str, Any]:
    """FIELD=VALUE pairs -> {field: value}, values read as JSON (numbers, true, null) or else as strings."""
    out: dict[str, Any] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise SystemExit(f"{flag} takes FIELD=VALUE pairs, got {item!r}")
        try:
            out[field] = json.loads(value)
        except json.JSONDecodeError:
            out[field] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=["k5-n10", "k10-n10", "k5-n100", "k10-n100"])
    parser.add_argument(
        "--models", nargs="+", default=None, help="default: the RL² recipe's ssm backbone (RL2_KIND) and gru"
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: only --merge")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--eval-runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="the bandits played after training: validation to choose a setting (selection seeds 100+), test to report",
    )
    parser.add_argument(
        "--ring-min",
        default=None,
        help="the ssm's ring_min instead of the recipe's ('none': the ring from 0.9); a variant to choose from",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="ModelConfig fields of the ssm beyond the recipe's (state_dim=128), a variant to choose from",
    )
    parser.add_argument(
        "--ppo-set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="PPOConfig fields beyond the recipe's (gamma=1.0), a variant to choose from",
    )
    add_merge_arguments(parser, "meta_bandits")
    args = start_run(parser)

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.errors import ConfigError
    from ssm_metarl.meta.bandits import (
        BAYES_MAX_PULLS,
        bayes_optimal,
        oracle,
        random_arms,
        task_means,
        thompson,
        ucb1,
    )
    from ssm_metarl.models import model_kwargs
    from ssm_metarl.recipes import RL2_KIND, recipe
    from ssm_metarl.results import mean_ci

    args.models = args.models or [RL2_KIND, "gru"]
    overrides = (
        {}
        if args.ring_min is None
        else {"ring_min": None if args.ring_min == "none" else float(args.ring_min)}
    )
    overrides |= _assignments(args.set, "--set")
    ppo_overrides = _assignments(args.ppo_set, "--ppo-set")
    for m in args.models:  # a setting a backbone does not have is refused here, not inside a worker
        try:
            cfg = recipe("rl2", f"bandit-{args.cells[0]}", m)
            model_kwargs(cfg.model.replace(**overrides))
            cfg.replace(**ppo_overrides)
        except (ConfigError, TypeError, ValueError) as e:
            raise SystemExit(f"--ring-min / --set / --ppo-set with --models {m}: {e}") from None
    jobs = [
        {
            "cell": c,
            "model": m,
            "seed": s,
            "steps": args.steps,
            "eval_runs": args.eval_runs,
            "split": args.split,
        }
        | ({"overrides": overrides} if overrides else {})
        | ({"ppo_overrides": ppo_overrides} if ppo_overrides else {})
        for c in args.cells
        for m in args.models
        for s in args.seeds
    ]
    t0 = time.perf_counter()
    runs = []
    if jobs:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    minutes = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, lambda r: (r["cell"], run_label(r), r["seed"]))
    steps = {r["steps"] for r in runs}
    if len(steps) != 1:
        raise SystemExit(f"the runs to summarise were trained for different step counts {sorted(steps)}")
    (steps_per_agent,) = steps
    splits = {r.get("split", "test") for r in runs}
    if len(splits) != 1:
        raise SystemExit(f"the runs to summarise played different splits {sorted(splits)}")
    (split,) = splits
    seeds = sorted({r["seed"] for r in runs})
    cell_names = list(dict.fromkeys(r["cell"] for r in runs))
    # one column per backbone (kind and settings: runs from before RL2_BACKBONES were one real ssm layer)
    models = list(dict.fromkeys(run_label(r) for r in runs))
    chosen = backbone_label(backbone_record(recipe("rl2", "bandit-k5-n10").model))
    variants = [m for m in models if m.split(",")[0] == RL2_KIND]
    if chosen not in models and len(variants) == 1:  # a variant of the recipe's ssm (--set, --ring-min)
        chosen = variants[0]

    cells: dict[str, dict[str, Any]] = {}
    for cell in cell_names:
        dist = get_family(f"bandit-{cell}")
        means, n = task_means(dist.split(split)), dist.n
        row: dict[str, Any] = {
            "random": float(random_arms(means, n).mean()),
            "ucb1": float(ucb1(means, n, runs=200, seed=0).mean()),
            "thompson": float(thompson(means, n, runs=200, seed=0).mean()),
            "bayes_optimal": float(bayes_optimal(means, n, runs=200, seed=0).mean())
            if n <= BAYES_MAX_PULLS
            else None,
            "oracle": float(oracle(means, n).mean()),
        }
        for m in models:
            mine = [r for r in runs if r["cell"] == cell and run_label(r) == m]
            vals = np.array([r["mean_total"] for r in mine])
            row[m], row[f"{m}_ci95"] = mean_ci(vals)
            row[f"{m}_per_seed"] = vals.tolist()
            row[f"{m}_train_minutes"] = float(np.mean([r["train_seconds"] for r in mine]) / 60)
        cells[cell] = row
    ratios = {c: r[chosen] / r["thompson"] for c, r in cells.items() if chosen in r}
    bayes = {
        c: r[chosen] / r["bayes_optimal"] for c, r in cells.items() if chosen in r and r["bayes_optimal"]
    }
    headline = {
        "ssm_backbone": chosen,
        "ssm_over_thompson_worst": min(ratios.values()) if ratios else None,
        "ssm_over_thompson": ratios,
        "ssm_over_bayes_optimal_n10_worst": min(bayes.values()) if bayes else None,
        "gru_over_thompson": {c: r["gru"] / r["thompson"] for c, r in cells.items() if "gru" in r},
    }
    payload = {
        "headline": headline,
        "targets": {"ssm_over_thompson_worst": 0.9, "ssm_over_bayes_optimal_n10_worst": 0.95},
        "cells": cells,
        "runs": runs,
        "config": vars(args) | {"steps": steps_per_agent, "split": split},
        "minutes_total": minutes,
        "merged_from": merged_from,
        "seeds": seeds,
        **provenance(),
    }
    headers = [
        "cell",
        "random",
        "UCB1",
        "Thompson",
        *[f"RL² {m}" for m in models],
        f"{chosen} / Thompson",
        "Bayes-optimal",
        "oracle",
    ]
    rows = [
        [
            c,
            f"{r['random']:.2f}",
            f"{r['ucb1']:.2f}",
            f"{r['thompson']:.2f}",
            *[ci_cell(r[m], r[m + "_ci95"], 2) for m in models],
            f"{ratios.get(c, float('nan')):.3f}",
            "" if r["bayes_optimal"] is None else f"{r['bayes_optimal']:.2f}",
            f"{r['oracle']:.2f}",
        ]
        for c, r in cells.items()
    ]
    md = (
        f"## RL² on Bernoulli bandits: mean total reward on the {split} bandits ({len(seeds)} seeds, "
        f"{steps_per_agent} training steps per agent)\n\n"
        + markdown_table(headers, rows)
        + "\n\nBayes-optimal: the exact finite-horizon Bayes-optimal policy for the U[0, 1] prior (dynamic "
        f"programming; only for N <= {BAYES_MAX_PULLS}), 200 runs per bandit: no agent trained on the prior can "
        "beat it on average; on these 20 held-out bandits one can by luck, within the interval."
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}; "
        f"{minutes:.0f} min for this invocation's runs." + merged_markdown(merged_from)
    )
    write_results(args.name, payload, md)
    _plot(cells, models, args.name)
    print(md)


def _plot(cells: dict[str, dict[str, Any]], models: list[str], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = ["random", "ucb1", "thompson", *models, "bayes_optimal", "oracle"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(agents)
    for j, agent in enumerate(agents):
        xs = np.arange(len(cells)) + j * width
        ys = [(r[agent] or np.nan) / r["oracle"] for r in cells.values()]
        ax.bar(xs, ys, width, label=agent.replace("_", "-"))
    ax.set_xticks(np.arange(len(cells)) + 0.4 - width / 2, list(cells))
    ax.set_ylabel("total reward / oracle")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
