"""Test-time adaptation: standard vs hybrid vs PPO from scratch vs multi-task training without meta-learning.

    python benchmarks/adaptation.py                                    # 3 families, 5 seeds
    python benchmarks/adaptation.py --families cartpole-physics --seeds 0 1

For each family, a meta-trained policy (cartpole: the shipped ``cartpole-ssm``; pendulum: the same recipe,
multi-task PPO then MAML, run here; navigation: MAML with the mlp backbone, run here) and a policy trained
multi-task without meta-learning (multi-task PPO; navigation: ``train_multitask``) are adapted with K
policy-gradient steps on the first ``--tasks`` held-out and out-of-range tasks
(:func:`ssm_metarl.adapt.compare_adaptation`: same tasks, seeds and initial weights for every mode; hybrid
adds the replay loss on a buffer of training-task episodes). Each step is the family's MAML inner loop
(``recipe("maml", family).inner``: step size, baseline, later step size) with ``--trajectories`` episodes;
on navigation-2d that is the recipe's linear baseline with half the step size after the first step (runs
before the config redesign used the critic baseline and one step size there). PPO from scratch gets the env
steps the adaptation used. Returns after 0..K steps with 95% intervals over seeds (none, and ``null`` in
the JSON, for a single seed). Writes results/<name>.{json,md,png} (``--name``, default ``adaptation``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from _common import (
    FROM_MULTITASK_MAML,
    RESULTS_DIR,
    ci_cell,
    command_line,
    machine_info,
    markdown_table,
    provenance,
    start_run,
    write_results,
)

SPLITS = ("test", "out_of_range")


def _policies(family: str, seed: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(meta-trained policy, multi-task policy, the MAML inner loop it adapts with, how they were made)."""
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.maml import train_maml, train_multitask
    from ssm_metarl.pretrained import load_pretrained
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    shipped = {"cartpole-physics": "cartpole-ssm"}  # the shipped navigation-ssm adapts in context (RL²)
    if family == "navigation-2d":
        cfg = recipe("maml", family).replace(run__seed=seed, run__progress=False, meta_iterations=60)
        return (
            train_maml(cfg).policy,
            train_multitask(cfg).policy,
            cfg.inner,
            {"meta": "MAML (mlp, maml recipe, 60 iterations)", "multitask": "train_multitask, same budget"},
        )
    # cartpole- and pendulum-physics: multi-task PPO, then MAML from it (the recipe of the shipped cartpole-ssm)
    steps = {"cartpole-physics": 150_000, "pendulum-physics": 300_000}[family]
    ppo_cfg = recipe("ppo", get_family(family).multitask_env_id()).replace(
        run__seed=seed, run__progress=False, total_steps=steps
    )
    multitask = train_ppo(ppo_cfg).policy
    if family in shipped:
        return (
            load_pretrained(shipped[family]),
            multitask,
            recipe("maml", family).inner,
            {"meta": shipped[family], "multitask": f"multi-task PPO {steps}"},
        )
    from ssm_metarl.meta.functional import params_of, snapshot

    start = snapshot(multitask, params_of(multitask))  # MAML trains its own copy
    cfg = recipe("maml", family, "ssm").replace(run__seed=seed, run__progress=False, **FROM_MULTITASK_MAML)
    meta = train_maml(cfg, policy=start).policy
    return (
        meta,
        multitask,
        cfg.inner,
        {"meta": "multi-task PPO + 10 MAML iterations", "multitask": f"multi-task PPO {steps}"},
    )


def run_family(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.adapt import compare_adaptation
    from ssm_metarl.adapt.evaluate import scratch_ppo_returns
    from ssm_metarl.envs.tasks import get_family

    torch.set_num_threads(1)
    family, seeds, K, n = job["family"], tuple(job["seeds"]), job["steps"], job["trajectories"]
    t0 = time.perf_counter()
    meta, multitask, inner, made = _policies(family, 0)
    # the family's MAML inner loop (step size, baseline, later step size), K steps of n episodes
    cfg = inner.replace(steps=K, episodes=n, experience_weight=job["experience_weight"])
    dist = get_family(family)
    out: dict[str, Any] = {"family": family, "lr": cfg.lr, "adapt": cfg.to_dict(), "made": made, "splits": {}}
    for split in SPLITS:
        tasks = dist.split(split)[: job["tasks"]]
        comp = compare_adaptation(meta, family, tasks, cfg, seeds)
        mt = compare_adaptation(multitask, family, tasks, cfg, seeds, modes=("standard",))["standard"]
        std, hyb = comp["standard"], comp["hybrid"]
        budget = int(std.env_steps[:, :, :K].sum(-1).mean())
        scratch = scratch_ppo_returns(family, tasks, budget, seeds[: job["scratch_seeds"]], n)
        out["splits"][split] = {
            "standard": std.seed_means().tolist(),  # (S, K + 1) per-seed means over tasks
            "hybrid": hyb.seed_means().tolist(),
            "multitask_standard": mt.seed_means().tolist(),
            "random": comp["random policy"].seed_means()[:, 0].tolist(),
            "scratch": scratch.seed_means()[:, 0].tolist(),
            "scratch_env_steps": budget,
            "buffer_steps": hyb.meta.get("buffer_steps", 0),
            "env_steps_per_step": float(std.env_steps.mean()),
        }
    out["minutes"] = (time.perf_counter() - t0) / 60
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--families", nargs="+", default=["cartpole-physics", "pendulum-physics", "navigation-2d"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=3, help="K adaptation steps")
    parser.add_argument("--tasks", type=int, default=5, help="tasks per split")
    parser.add_argument("--trajectories", type=int, default=10, help="episodes per evaluation and per step")
    parser.add_argument("--experience-weight", type=float, default=0.1)
    parser.add_argument("--scratch-seeds", type=int, default=2, help="seeds of the PPO-from-scratch row")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="adaptation", help="results/<name>.{json,md,png}")
    args = start_run(parser)

    from ssm_metarl.results import mean_ci

    jobs = [
        {
            "family": f,
            "seeds": args.seeds,
            "steps": args.steps,
            "tasks": args.tasks,
            "trajectories": args.trajectories,
            "experience_weight": args.experience_weight,
            "scratch_seeds": args.scratch_seeds,
        }
        for f in args.families
    ]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
        runs = pool.map(run_family, jobs, chunksize=1)
    minutes = (time.perf_counter() - t0) / 60

    def cell(x: np.ndarray) -> str:
        return ci_cell(*mean_ci(x))

    headline: dict[str, Any] = {}
    rows = []
    for r in runs:
        fam = r["family"]
        for split, d in r["splits"].items():
            std, hyb, mt = (np.asarray(d[k]) for k in ("standard", "hybrid", "multitask_standard"))
            if split == "test":
                headline[f"{fam}_standard_gain"] = float((std[:, -1] - std[:, 0]).mean())
                headline[f"{fam}_hybrid_gain"] = float((hyb[:, -1] - hyb[:, 0]).mean())
                diff = mean_ci(hyb[:, -1] - std[:, -1])
                headline[f"{fam}_hybrid_minus_standard"] = diff.mean
                headline[f"{fam}_hybrid_minus_standard_ci"] = diff.half  # None for a single seed
            else:
                headline[f"{fam}_out_of_range_hybrid_minus_standard"] = mean_ci(hyb[:, -1] - std[:, -1]).mean

            K = std.shape[1] - 1
            rows += [
                [fam, split, "random policy", cell(np.asarray(d["random"])), "", ""],
                [fam, split, "meta-trained + standard", cell(std[:, 0]), cell(std[:, 1]), cell(std[:, K])],
                [fam, split, "meta-trained + hybrid", cell(hyb[:, 0]), cell(hyb[:, 1]), cell(hyb[:, K])],
                [
                    fam,
                    split,
                    "hybrid - standard (paired)",
                    "",
                    cell(hyb[:, 1] - std[:, 1]),
                    cell(hyb[:, K] - std[:, K]),
                ],
                [
                    fam,
                    split,
                    "multi-task (no meta) + standard",
                    cell(mt[:, 0]),
                    cell(mt[:, 1]),
                    cell(mt[:, K]),
                ],
                [
                    fam,
                    split,
                    f"PPO from scratch, {d['scratch_env_steps']} steps",
                    "",
                    "",
                    cell(np.asarray(d["scratch"])),
                ],
            ]
    payload = {
        "headline": headline,
        "runs": runs,
        "config": vars(args),
        "minutes_total": minutes,
        "seeds": args.seeds,
        **provenance(),
    }
    basis = "mean ± 95% CI over seeds" if len(args.seeds) > 1 else "one seed: no interval"
    md = (
        f"## Test-time adaptation ({len(args.seeds)} seeds, first {args.tasks} tasks per split, "
        f"{args.trajectories} episodes per step, {basis})\n\n"
        + markdown_table(["family", "split", "policy", "0 steps", "1 step", f"{args.steps} steps"], rows)
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}; {minutes:.0f} min."
    )
    write_results(args.name, payload, md)
    _plot(runs, args.name)
    print(md)


def _plot(runs: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssm_metarl.results import mean_ci

    fig, axes = plt.subplots(len(SPLITS), len(runs), figsize=(4.2 * len(runs), 6.5), squeeze=False)
    for j, r in enumerate(runs):
        for i, split in enumerate(SPLITS):
            ax, d = axes[i][j], r["splits"][split]
            for c, key in enumerate(("standard", "hybrid", "multitask_standard")):
                x = np.asarray(d[key])
                s = [mean_ci(x[:, k]) for k in range(x.shape[1])]
                m, h = np.array([iv.mean for iv in s]), np.array([iv.half or 0.0 for iv in s])
                ks = np.arange(len(s))
                ax.plot(ks, m, marker="o", color=f"C{c}", label=key.replace("_", " + "))
                ax.fill_between(ks, m - h, m + h, color=f"C{c}", alpha=0.2)
            ax.axhline(np.mean(d["random"]), color="grey", ls=":", label="random")
            ax.axhline(np.mean(d["scratch"]), color="k", ls="--", lw=0.8, label="PPO from scratch")
            ax.set_title(f"{r['family']}: {split.replace('_', '-')}", fontsize=9)
            ax.set_xlabel("adaptation steps")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
