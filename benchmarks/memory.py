"""POPGym's memory benchmark (Morad et al. 2023) for every backbone, one PPO recipe per env for all of them.

    python benchmarks/memory.py                                   # 8 envs x 6 models x 3 seeds, 200k steps
    python benchmarks/memory.py --envs RepeatPrevious --models ssm gated_ssm gru --seeds 0 --steps 50000

(Named memory.py, not popgym.py: a script of that name would shadow the popgym package it imports.)

Needs the ``memory`` extra (``pip install -e '.[memory]'``; ``make bench-memory``). The envs are POPGym's own
Gymnasium ids (``popgym-<Name><Level>-v0``) with their own spaces (Discrete, MultiDiscrete and Tuple
observations, MultiDiscrete actions): the policies take them as they are (``ssm_metarl.spaces``). Every model
trains with ``recipe("ppo", env_id, kind)``: the same PPO settings for every model (tuned for no single one),
the backbone in the recipe's settings for memory tasks (``recipes.MEMORY_BACKBONES``, chosen on selection
seed 100 by ``ssm_backbone.py``: the ssm complex with two layers, the gated ssm two layers; gru, lstm and
transformer one layer; mlp, the no-memory floor, two). Each run records its backbone. POPGym's rewards are
normalised so that an episode's return lies in [-1, 1].

MMER (POPGym's "maximum mean episodic reward"): the mean return of the training episodes finished in each
PPO update, maximised over the run's updates. Per env and model: mean and 95% interval over seeds; averaged
over envs; the paired ssm - gru difference over (env, seed) pairs; wall-clock per model (from this
invocation's runs only, where it ran any, so a merge never divides times measured on different machines). Models run
interleaved seed by seed, so machine noise hits all alike. ``--merge`` joins the runs of earlier results files
(the same env, model, seed and budget: this invocation's run wins). Writes results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from _common import (
    add_merge_arguments,
    backbone_label,
    backbone_of,
    backbone_record,
    command_line,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

ENVS = (
    "RepeatPrevious",
    "RepeatFirst",
    "CountRecall",
    "Autoencode",
    "PositionOnlyCartPole",
    "VelocityOnlyCartpole",
    "NoisyPositionOnlyPendulum",
    "HigherLower",
)
MODELS = ("ssm", "gated_ssm", "gru", "lstm", "transformer", "mlp")


def mmer(episode_returns: list[float], end_steps: list[int]) -> float:
    """Max over PPO updates of the mean return of the episodes that ended in that update."""
    by_update: dict[int, list[float]] = {}
    for r, s in zip(episode_returns, end_steps):
        by_update.setdefault(s, []).append(r)
    return max(float(np.mean(v)) for v in by_update.values()) if by_update else float("nan")


def run_one(job: tuple[Any, ...]) -> dict[str, Any]:
    """(env_id, kind, seed, steps[, ModelConfig overrides]) -> the run's MMER, final eval and seconds."""
    import popgym  # noqa: F401  (registers the popgym-* ids)
    import torch

    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    env_id, kind, seed, steps, *rest = job
    overrides = rest[0] if rest else {}  # more ModelConfig fields (ssm_backbone.py's variants)
    cfg = recipe("ppo", env_id, kind).replace(run__seed=seed, run__progress=False, total_steps=steps)
    cfg = cfg.replace(model=cfg.model.replace(**overrides))
    t0 = time.perf_counter()
    result = train_ppo(cfg)
    seconds = time.perf_counter() - t0
    return {
        "env": env_id,
        "model": kind,
        "backbone": backbone_record(cfg.model),
        "seed": seed,
        "steps": steps,
        "mmer": mmer(result.episode_returns, result.episode_end_steps),
        "final_eval": result.final_eval,
        "seconds": seconds,
        "episodes": len(result.episode_returns),
    }


def _ci(values: list[float]) -> tuple[float, float | None]:
    from ssm_metarl.results import mean_ci

    iv = mean_ci(values)
    return iv.mean, iv.half


def summarize(
    runs: list[dict[str, Any]],
    envs: list[str],
    models: list[str],
    speed_runs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per-env table and headline. Wall-clock figures come from ``speed_runs`` (one invocation's runs, so that
    every model ran on the same machine under the same load) when given, else from ``runs``."""
    table: dict[str, dict[str, Any]] = {}
    for env in envs:
        table[env] = {}
        for m in models:
            vals = [r["mmer"] for r in runs if r["env"] == env and r["model"] == m]
            if vals:
                mean, half = _ci(vals)
                table[env][m] = {"mean": mean, "ci95": half, "seeds": len(vals)}
    timed = speed_runs or runs
    seconds = {
        m: float(np.mean([r["seconds"] for r in timed if r["model"] == m]))
        for m in models
        if any(r["model"] == m for r in timed)
    }
    means = {m: float(np.mean([table[e][m]["mean"] for e in envs if m in table[e]])) for m in models}
    headline: dict[str, Any] = {"envs": len(envs), "models": models, "seconds_per_run": seconds}
    for m in models:
        headline[f"{m}_mmer_mean"] = means[m]
    if "ssm" in models and "gru" in models:
        pairs = {(r["env"], r["seed"]): r["mmer"] for r in runs if r["model"] == "ssm"}
        diffs = [
            pairs[(r["env"], r["seed"])] - r["mmer"]
            for r in runs
            if r["model"] == "gru" and (r["env"], r["seed"]) in pairs
        ]
        mean, half = _ci(diffs) if diffs else (float("nan"), None)
        headline["ssm_minus_gru_mmer"] = mean
        headline["ssm_minus_gru_mmer_ci_low"] = None if half is None else mean - half
    if "ssm" in seconds and "gru" in seconds:
        headline["ssm_seconds_over_gru"] = seconds["ssm"] / seconds["gru"]
    if "ssm" in seconds and "transformer" in seconds:
        headline["ssm_seconds_over_transformer"] = seconds["ssm"] / seconds["transformer"]
    memory = [m for m in models if m != "mlp"]

    def score(e: str, m: str) -> float:
        return table[e].get(m, {"mean": -np.inf})["mean"]

    # the memory models with the env's highest mean MMER (several where they tie, e.g. all solve it)
    best = {e: [m for m in memory if score(e, m) >= max(score(e, k) for k in memory) - 1e-9] for e in envs}
    headline["best_models_per_env"] = best
    for m in ("ssm", "gated_ssm"):
        if m in models:
            headline[f"envs_where_{m}_best"] = sum(b == [m] for b in best.values())  # alone, no tie
            headline[f"envs_where_{m}_ties_best"] = sum(m in b and len(b) > 1 for b in best.values())
    return {"headline": headline, "table": table}


def plot(summary: dict[str, Any], envs: list[str], models: list[str], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(envs)), 3.8))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        cells = [summary["table"][e].get(m, {"mean": np.nan, "ci95": None}) for e in envs]
        x = np.arange(len(envs)) + i * width
        err = [c["ci95"] or 0.0 for c in cells]
        ax.bar(x, [c["mean"] for c in cells], width, yerr=err, label=m, color=f"C{i}")
    ax.set_xticks(np.arange(len(envs)) + 0.4 - width / 2)
    ax.set_xticklabels(envs, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("MMER")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--level", default="Easy", choices=["Easy", "Medium", "Hard"])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: only --merge")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    add_merge_arguments(parser, "popgym")
    args = start_run(parser)
    env_ids = [f"popgym-{e}{args.level}-v0" for e in args.envs]
    jobs = [(env, m, s, args.steps) for s in args.seeds for env in env_ids for m in args.models]
    t0 = time.perf_counter()
    if args.jobs > 1 and jobs:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = list(pool.imap(run_one, jobs, chunksize=1))
    else:
        runs = [run_one(j) for j in jobs]
    minutes = (time.perf_counter() - t0) / 60
    this_invocation = list(runs)  # wall-clock ratios come from these only (one machine, one load)
    runs, merged_from = merge_runs(
        runs, args.merge, key=lambda r: (r["env"], r["model"], r["seed"], r["steps"])
    )
    if not runs:
        raise SystemExit("nothing to summarise: give --seeds to run, or --merge earlier results files")
    seeds = sorted({r["seed"] for r in runs})
    # the merged files' envs and models join this invocation's, in this script's order
    env_ids = [
        e for e in dict.fromkeys([*env_ids, *(r["env"] for r in runs)]) if any(r["env"] == e for r in runs)
    ]
    models = list(dict.fromkeys(m for m in (*MODELS, *args.models) if any(r["model"] == m for r in runs)))
    summary = summarize(runs, env_ids, models, speed_runs=this_invocation or None)
    summary["headline"]["seconds_from"] = (
        "this invocation's runs" if this_invocation else "the merged runs (summarised without new runs)"
    )
    payload = {
        **summary,
        "runs": runs,
        "config": vars(args),
        "minutes_total": minutes,
        "seeds": seeds,
        "merged_from": merged_from,
        **provenance(),
    }
    labels = {r["model"]: backbone_label(backbone_of(r)) for r in runs}
    header = ["env", *(labels.get(m, m) for m in models)]
    rows = []
    for env in env_ids:
        cells = []
        for m in models:
            c = summary["table"][env].get(m)
            cells.append(
                ""
                if c is None
                else f"{c['mean']:.2f}" + (f" ± {c['ci95']:.2f}" if c["ci95"] is not None else "")
            )
        rows.append([env.removeprefix("popgym-").removesuffix("-v0"), *cells])
    h = summary["headline"]
    rows.append(["mean", *(f"{h[f'{m}_mmer_mean']:.2f}" for m in models)])
    rows.append(
        [
            f"seconds per run ({h['seconds_from']})",
            *(f"{h['seconds_per_run'].get(m, float('nan')):.0f}" for m in models),
        ]
    )
    md = (
        f"`{command_line()}` ({' / '.join(f'{n:,}' for n in sorted({r['steps'] for r in runs}))} env steps per run, seeds {seeds}; MMER, mean ± 95% interval "
        f"over seeds)\n\n" + markdown_table(header, rows) + merged_markdown(merged_from)
    )
    paths = write_results(args.name, payload, md)
    plot(summary, env_ids, models, paths[0].with_suffix(".png"))
    print(md)


if __name__ == "__main__":
    main()
