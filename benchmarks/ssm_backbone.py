"""Choosing the SSM backbone's defaults on tasks that need recall: real vs complex vs input-gated, 1 or 2 layers.

    python benchmarks/ssm_backbone.py                       # the selection study below (about 45 min, 2 jobs)
    python benchmarks/ssm_backbone.py --variants ssm-real-1 ssm-complex-1 --uses rl2 --seeds 100
    python benchmarks/ssm_backbone.py --uses maml --seeds 100    # MAML: backbone x inner params (all / heads)
    python benchmarks/ssm_backbone.py --uses maml --seeds 100 --maml-variants ssm-real-1 \
        --maml-inner-lrs 0.01 0.03 0.1                           # MAML: x inner step size
    python benchmarks/ssm_backbone.py --uses --merge results/ssm_backbone_rl2_memory.json \
        results/ssm_backbone_maml.json                             # the committed table, from those runs

The LRU-style ``ssm`` backbone's defaults (real diagonal, one layer) were chosen on CartPole, a task that
needs no recall. This script measures the variants on two uses where recall is the task, on a *selection*
protocol kept apart from every reported figure:

- **memory** (PPO): POPGym's RepeatPrevious and RepeatFirst (Easy), ``recipe("ppo", env_id)`` with only the
  backbone changed, MMER (``memory.py``), 200k env steps;
- **rl2** (in-context meta-RL): navigation-2d trials of 4 episodes, ``recipe("rl2", "navigation-2d")``, 600k
  env steps, scored on the family's ``validation`` goals (never ``test``) by the mean return of episodes 2-4
  (after the first, exploring, episode);
- **maml** (``--uses maml``): navigation-2d MAML, ``recipe("maml", "navigation-2d")`` for ``--maml-iterations``,
  each of ``--maml-variants`` with the inner step on every parameter or on the heads only
  (``AdaptConfig.params``) and each inner step size of ``--maml-inner-lrs`` (later steps half of it, as in the
  recipe), scored on ``validation`` goals by the mean return after 1-3 steps.

Seeds are selection seeds (100+ by default), disjoint from the reporting seeds 0, 1, 2 of ``meta_navigation.py``
and ``memory.py``. The winner per use is the variant with the best mean score; its cost is the wall-clock per
run (runs interleaved, ``--jobs`` processes of one torch thread each). Writes results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from typing import Any

import memory
import meta_navigation
from _common import (
    add_merge_arguments,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

from ssm_metarl.recipes import recipe

VARIANTS: dict[str, dict[str, Any]] = {
    "ssm-real-1": {"kind": "ssm", "complex": False, "num_layers": 1},
    "ssm-real-2": {"kind": "ssm", "complex": False, "num_layers": 2},
    "ssm-real-1-meta-sgd": {"kind": "ssm", "complex": False, "num_layers": 1, "learned_step_sizes": True},
    "ssm-complex-1": {"kind": "ssm", "complex": True, "num_layers": 1},
    "ssm-complex-2": {"kind": "ssm", "complex": True, "num_layers": 2},
    "gated-1": {"kind": "gated_ssm", "num_layers": 1},
    "gated-2": {"kind": "gated_ssm", "num_layers": 2},
}
"""ModelConfig overrides of each variant (the rest is the use's recipe: width 64, state 64, separate critic);
``-meta-sgd``: with learned per-tensor inner step sizes (``ModelConfig.learned_step_sizes``, MAML only)."""
DEFAULT_VARIANTS = ("ssm-real-1", "ssm-complex-1", "ssm-complex-2", "gated-1", "gated-2")
MEMORY_ENVS = ("RepeatPrevious", "RepeatFirst")
RL2_LR = recipe("rl2", "navigation-2d").lr
"""The learning rate of RL² runs without ``--rl2-lrs`` (and of runs from before the option)."""


def _run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """Runs that are the same measurement (a later one replaces an earlier one when merging)."""
    lr = _inner_lr(r) if r["use"] == "maml" else _rl2_lr(r) if r["use"] == "rl2" else None
    return r["use"], r["variant"], r.get("params"), lr, r.get("env"), r["seed"], r["steps"]


def _rl2_lr(r: dict[str, Any]) -> float:
    """An RL² run's PPO learning rate (runs from before the option had the recipe's 1e-3)."""
    return float(r.get("lr", RL2_LR))


def _inner_lr(r: dict[str, Any]) -> float:
    """A MAML run's inner step size (runs from before the option had the recipe's 1.0)."""
    return float(r.get("inner_lr", 1.0))


def _label(job: dict[str, Any]) -> str:
    if job["use"] == "rl2":
        lr = _rl2_lr(job)
        return job["variant"] + ("" if lr == RL2_LR else f", lr {lr:g}")
    if job["use"] != "maml":
        return job["variant"]
    lr = _inner_lr(job)
    return f"{job['variant']}, inner params {job['params']}" + ("" if lr == 1.0 else f", inner lr {lr:g}")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training run of one variant on one use (the benchmarks' own run functions do the work)."""
    v = dict(VARIANTS[job["variant"]])
    kind = v.pop("kind")
    if job["use"] == "memory":
        r = memory.run_one((job["env"], kind, job["seed"], job["steps"], v))
        return {**job, "score": r["mmer"], "seconds": r["seconds"], "final_eval": r["final_eval"]}
    common = {"model": kind, "seed": job["seed"], "overrides": v, "split": "validation"}
    if job["use"] == "maml":  # the return after 1, 2 and 3 inner steps (the paper's protocol), averaged
        r = meta_navigation.run_one(
            {
                **common,
                "kind": "maml",
                "iterations": job["steps"],
                "inner": {"params": job["params"], "lr": _inner_lr(job), "later_lr": _inner_lr(job) / 2},
            }
        )
    else:  # rl2: episodes 2-4 of a trial, after the first (exploring) one
        r = meta_navigation.run_one(
            {**common, "kind": "rl2", "steps": job["steps"], "ppo": {"lr": _rl2_lr(job)}}
        )
    return {
        **job,
        "score": statistics.fmean(r["returns"][1:]),
        "returns": r["returns"],
        "seconds": r["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--uses",
        nargs="*",
        default=["memory", "rl2"],
        choices=["memory", "rl2", "maml"],
        help="none: only --merge",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101], help="selection seeds")
    parser.add_argument("--memory-seeds", type=int, nargs="+", default=[100])
    parser.add_argument("--memory-steps", type=int, default=200_000)
    parser.add_argument("--rl2-steps", type=int, default=600_000)
    parser.add_argument("--rl2-lrs", type=float, nargs="+", default=[RL2_LR], help="RL² PPO learning rates")
    parser.add_argument(
        "--maml-variants", nargs="+", default=["ssm-real-1", "ssm-complex-1"], choices=list(VARIANTS)
    )
    parser.add_argument("--maml-params", nargs="+", default=["all", "heads"], choices=["all", "heads"])
    parser.add_argument(
        "--maml-inner-lrs", type=float, nargs="+", default=[1.0], help="inner step sizes (the recipe's: 1.0)"
    )
    parser.add_argument("--maml-iterations", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    add_merge_arguments(parser, "ssm_backbone")
    args = start_run(parser)
    jobs: list[dict[str, Any]] = []
    if "maml" in args.uses:  # the longest runs first
        jobs += [
            {
                "use": "maml",
                "variant": v,
                "params": p,
                "inner_lr": lr,
                "seed": s,
                "steps": args.maml_iterations,
            }
            for s in args.seeds
            for v in args.maml_variants
            for p in args.maml_params
            for lr in args.maml_inner_lrs
        ]
    if "rl2" in args.uses:  # variants interleaved within a seed
        jobs += [
            {"use": "rl2", "variant": v, "lr": lr, "seed": s, "steps": args.rl2_steps}
            for s in args.seeds
            for v in args.variants
            for lr in args.rl2_lrs
        ]
    if "memory" in args.uses:
        jobs += [
            {
                "use": "memory",
                "variant": v,
                "seed": s,
                "steps": args.memory_steps,
                "env": f"popgym-{e}Easy-v0",
            }
            for s in args.memory_seeds
            for e in MEMORY_ENVS
            for v in args.variants
        ]
    for j in jobs:
        j["label"] = _label(j)
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    if jobs and args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_job, jobs, chunksize=1)
    elif jobs:
        runs = [run_job(j) for j in jobs]
    minutes_total = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, _run_key)
    runs = [{**r, "label": r.get("label") or _label(r)} for r in runs]  # files from before labels
    table: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        table.setdefault(r["use"], {}).setdefault(r["label"], {})
    for use, labels in table.items():
        for label in labels:
            mine = [r for r in runs if r["use"] == use and r["label"] == label]
            labels[label] = {
                "score": statistics.fmean(r["score"] for r in mine),
                "seconds_per_run": statistics.fmean(r["seconds"] for r in mine),
                "runs": len(mine),
            }
    chosen = {use: max(labels, key=lambda v: labels[v]["score"]) for use, labels in table.items()}
    headline = {
        **{f"{use}_chosen": chosen[use] for use in table},
        **{
            f"{use}_{label}_score": c["score"] for use, labels in table.items() for label, c in labels.items()
        },
        "minutes": minutes_total + sum(m["minutes_total"] or 0 for m in merged_from),
    }

    def of(use: str, key: str) -> str:  # what the runs of one use had (seeds, steps), as text
        return ", ".join(f"{v:,}" for v in sorted({r[key] for r in runs if r["use"] == use}))

    what = {
        "maml": f"navigation-2d MAML ({of('maml', 'steps')} meta-iterations), validation goals, score = mean "
        f"return after 1, 2 and 3 inner steps (40 trajectories per step); seeds {of('maml', 'seed')}",
        "rl2": f"navigation-2d RL² ({of('rl2', 'steps')} env steps), validation goals, score = mean return of "
        f"episodes 2-4 of a trial; seeds {of('rl2', 'seed')}",
        "memory": f"POPGym {' and '.join(MEMORY_ENVS)} Easy, PPO ({of('memory', 'steps')} env steps), score = "
        f"mean MMER; seeds {of('memory', 'seed')}",
    }
    md = "## Choosing the SSM backbone's defaults (selection seeds; nothing here is a test figure)\n\n"
    for use, labels in table.items():
        rows = [
            [label, f"{c['score']:.3f}", f"{c['seconds_per_run']:.0f}", c["runs"]]
            for label, c in labels.items()
        ]
        md += f"**{use}**: {what[use]}. Chosen: **{chosen[use]}**.\n\n"
        md += markdown_table(["variant", "score", "seconds per run", "runs"], rows) + "\n\n"
    detail = [
        [
            r["use"],
            r["label"],
            r.get("env", "navigation-2d").removeprefix("popgym-"),
            r["seed"],
            f"{r['score']:.3f}",
        ]
        for r in runs
    ]
    md += (
        "Every run:\n\n"
        + markdown_table(["use", "variant", "env", "seed", "score"], detail)
        + f"\nCommand: `{provenance()['command']}`; {minutes_total:.0f} minutes for this invocation's runs."
        + merged_markdown(merged_from)
        + "\n"
    )
    payload = {
        "headline": headline,
        **provenance(),
        "minutes_total": minutes_total,
        "merged_from": merged_from,
        "args": vars(args),
        "table": table,
        "runs": runs,
    }
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
