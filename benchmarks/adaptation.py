"""Test-time adaptation: standard vs hybrid vs PPO from scratch vs multi-task training without meta-learning.

    python benchmarks/adaptation.py                                    # 3 families, 5 seeds
    python benchmarks/adaptation.py --families cartpole-physics --seeds 0 1

For each family, a meta-trained policy (cartpole: the shipped ``cartpole-ssm``; pendulum: the same recipe,
multi-task PPO then MAML, run here; navigation: MAML with the mlp backbone, run here) and a policy trained
multi-task without meta-learning (multi-task PPO; navigation: ``train_multitask``) are adapted with K
policy-gradient steps on the first ``--tasks`` held-out and out-of-range tasks
(:func:`ssm_metarl.adapt.compare_adaptation`: same tasks, seeds and initial weights for every mode; hybrid
adds the replay loss on a buffer of training-task episodes). PPO from scratch gets the env steps the
adaptation used. Returns after 0..K steps with 95% intervals over seeds. Writes
results/adaptation.{json,md,png}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    command_line,
    git_commit,
    machine_info,
    markdown_table,
    now_iso,
    write_results,
)

SPLITS = ("test", "out_of_range")


def _policies(family: str, seed: int) -> tuple[Any, Any, float, dict[str, Any]]:
    """(meta-trained policy, multi-task policy, adaptation lr, how they were made)."""
    from ssm_metarl.defaults import maml_defaults, ppo_defaults

    from ssm_metarl.config import replace
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.maml import train_maml, train_multitask
    from ssm_metarl.pretrained import load_pretrained
    from ssm_metarl.rl.ppo import train_ppo

    shipped = {"cartpole-physics": "cartpole-ssm"}  # the shipped navigation-ssm adapts in context (RL²)
    if family == "navigation-2d":
        cfg = replace(maml_defaults(family), seed=0, progress=False, meta_iterations=60)
        return (
            train_maml(cfg).policy,
            train_multitask(cfg).policy,
            cfg.inner_lr,
            {"meta": "MAML (mlp, maml_defaults, 60 iterations)", "multitask": "train_multitask, same budget"},
        )
    # cartpole- and pendulum-physics: multi-task PPO, then MAML from it (the recipe of the shipped cartpole-ssm)
    steps = {"cartpole-physics": 150_000, "pendulum-physics": 300_000}[family]
    ppo_cfg = replace(
        ppo_defaults(get_family(family).multitask_env_id()), seed=0, total_steps=steps, progress=False
    )
    multitask = train_ppo(ppo_cfg).policy
    lr = maml_defaults(family).inner_lr
    if family in shipped:
        return (
            load_pretrained(shipped[family]),
            multitask,
            lr,
            {"meta": shipped[family], "multitask": f"multi-task PPO {steps}"},
        )
    from ssm_metarl.meta.functional import params_of, snapshot

    start = snapshot(multitask, params_of(multitask))  # MAML trains its own copy
    cfg = replace(
        maml_defaults(family),
        seed=0,
        meta_iterations=10,
        meta_batch_size=8,
        num_trajectories=8,
        outer_epochs=10,
        outer_lr=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        progress=False,
    )
    meta = train_maml(cfg, policy=start).policy
    return (
        meta,
        multitask,
        cfg.inner_lr,
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
    meta, multitask, lr, made = _policies(family, 0)
    dist = get_family(family)
    out: dict[str, Any] = {"family": family, "lr": lr, "made": made, "splits": {}}
    for split in SPLITS:
        tasks = dist.split(split)[: job["tasks"]]
        comp = compare_adaptation(
            meta,
            family,
            tasks,
            steps=K,
            seeds=seeds,
            num_trajectories=n,
            lr=lr,
            experience_weight=job["experience_weight"],
        )
        mt = compare_adaptation(
            multitask, family, tasks, steps=K, seeds=seeds, num_trajectories=n, lr=lr, modes=("standard",)
        )
        budget = int(comp.env_steps["standard"][:, :, :K].sum(-1).mean())
        scratch = scratch_ppo_returns(family, tasks, budget, seeds[: job["scratch_seeds"]], n)
        out["splits"][split] = {
            "standard": comp.curves["standard"]
            .returns.mean(1)
            .tolist(),  # (S, K + 1) per-seed means over tasks
            "hybrid": comp.curves["hybrid"].returns.mean(1).tolist(),
            "multitask_standard": mt.curves["standard"].returns.mean(1).tolist(),
            "random": comp.random_returns.tolist(),
            "scratch": scratch.mean(1).tolist(),
            "scratch_env_steps": budget,
            "buffer_steps": comp.buffer_steps,
            "env_steps_per_step": comp.curves["standard"].env_steps_per_step,
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
    args = parser.parse_args()

    from ssm_metarl.meta.evaluate import mean_ci

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
                headline[f"{fam}_hybrid_minus_standard"] = diff[0]
                headline[f"{fam}_hybrid_minus_standard_ci"] = diff[1]
            else:
                headline[f"{fam}_out_of_range_hybrid_minus_standard"] = mean_ci(hyb[:, -1] - std[:, -1])[0]

            def cell(x: np.ndarray) -> str:
                m, h = mean_ci(x)
                return f"{m:.1f} ± {h:.1f}"

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
        "machine": machine_info(),
        "command": command_line(),
        "commit": git_commit(),
        "seeds": args.seeds,
        "date": now_iso(),
    }
    md = (
        f"## Test-time adaptation ({len(args.seeds)} seeds, first {args.tasks} tasks per split, "
        f"{args.trajectories} episodes per step, mean ± 95% CI over seeds)\n\n"
        + markdown_table(["family", "split", "policy", "0 steps", "1 step", f"{args.steps} steps"], rows)
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}; {minutes:.0f} min."
    )
    write_results("adaptation", payload, md)
    _plot(runs)
    print(md)


def _plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssm_metarl.meta.evaluate import mean_ci

    fig, axes = plt.subplots(len(SPLITS), len(runs), figsize=(4.2 * len(runs), 6.5), squeeze=False)
    for j, r in enumerate(runs):
        for i, split in enumerate(SPLITS):
            ax, d = axes[i][j], r["splits"][split]
            for c, key in enumerate(("standard", "hybrid", "multitask_standard")):
                x = np.asarray(d[key])
                s = np.array([mean_ci(x[:, k]) for k in range(x.shape[1])])
                ks = np.arange(len(s))
                ax.plot(ks, s[:, 0], marker="o", color=f"C{c}", label=key.replace("_", " + "))
                ax.fill_between(ks, s[:, 0] - s[:, 1], s[:, 0] + s[:, 1], color=f"C{c}", alpha=0.2)
            ax.axhline(np.mean(d["random"]), color="grey", ls=":", label="random")
            ax.axhline(np.mean(d["scratch"]), color="k", ls="--", lw=0.8, label="PPO from scratch")
            ax.set_title(f"{r['family']}: {split.replace('_', '-')}", fontsize=9)
            ax.set_xlabel("adaptation steps")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "adaptation.png", dpi=110)


if __name__ == "__main__":
    main()
