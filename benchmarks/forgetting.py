"""What experience replay is for: the new task's return and the return kept on the training tasks, after k steps.

    python benchmarks/forgetting.py                       # choose the replay weight, then report (5 seeds)
    python benchmarks/forgetting.py --seeds 0 1 --steps 1 3 --weights 0.3 --select-seeds 100

The shipped ``cartpole-ssm`` (multi-task PPO, then MAML, on cartpole-physics) adapts to a new task with
``adapt_recipe("cartpole-physics")`` steps (policy gradient, fresh episodes from the current parameters each
step), standard or hybrid (plus ``experience_weight`` times a PPO-clip loss replayed from a buffer of
training-task episodes the meta-trained policy acted). After k = 0 and each k in ``--steps`` we measure

- the **new task**'s return: the episodes the next step would use (the adapters' own protocol);
- the return **kept** on ``--keep-tasks`` training tasks: fresh seeded episodes with the adapted parameters.

Phase 1 (selection): the hybrid replay weight is chosen among ``--weights`` on ``validation`` tasks as new tasks,
with selection seeds, by the mean over k of (new-task return + kept return) / 2. Phase 2 (report): standard and
hybrid with the chosen weight on ``test`` and ``out_of_range`` tasks, ``--seeds`` adaptation seeds, the same
tasks, seeds and initial weights for both (paired). The policy is trained once (it is the shipped model), so
the intervals are over adaptation seeds: they measure adaptation noise, not training noise. Writes
results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from typing import Any

import numpy as np
from _common import markdown_table, provenance, start_run, write_results

FAMILY = "cartpole-physics"
MODEL = "cartpole-ssm"


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One (mode, weight, split, task, seed): new-task and kept returns after k = 0 and each k of job["steps"]."""
    import torch

    from ssm_metarl.adapt import fill_buffer, make_adapter, task_episodes
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.pretrained import load_pretrained
    from ssm_metarl.recipes import adapt_recipe

    torch.set_num_threads(1)
    dist = get_family(FAMILY)
    policy = load_pretrained(MODEL)
    cfg = adapt_recipe(FAMILY).replace(experience_weight=job["weight"], episodes=job["episodes"])
    keep = list(dist.train[: job["keep_tasks"]])
    buffer = fill_buffer(policy, FAMILY, keep, episodes_per_task=job["episodes"], seed=job["seed"])
    adapter = make_adapter(job["mode"], policy, cfg, buffer if job["mode"] == "hybrid" else None)
    task = getattr(dist, job["split"])[job["task"]]
    envs = dist.make_vec_env([task] * cfg.episodes, seed=job["seed"], fast=True)
    t0 = time.perf_counter()
    new, kept = {}, {}
    try:
        params = adapter.initial_params()
        adapter.begin_task(task, job["seed"])
        last = max(job["steps"])
        for k in range(last + 1):
            ep = task_episodes(envs, policy, params, task, job["seed"] + k)
            if k == 0 or k in job["steps"]:
                new[k] = float(ep.returns.mean())
                kept[k] = statistics.fmean(
                    float(
                        task_episodes(envs, policy, params, t, 50_000 + job["seed"] * 100 + i).returns.mean()
                    )
                    for i, t in enumerate(keep)
                )
            if k < last:
                params, _ = adapter.step(params, ep, k)
                adapter.observe(ep, task)
    finally:
        envs.close()
    return {**job, "new": new, "kept": kept, "seconds": time.perf_counter() - t0}


def _jobs(
    args: argparse.Namespace, modes: list[tuple[str, float]], splits: list[str], seeds: list[int]
) -> list:
    return [
        {
            "mode": mode,
            "weight": w,
            "split": split,
            "task": i,
            "seed": s,
            "steps": args.steps,
            "episodes": args.episodes,
            "keep_tasks": args.keep_tasks,
        }
        for s in seeds
        for split in splits
        for i in range(args.tasks)
        for mode, w in modes
    ]


def _map(jobs: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    if n > 1:
        with mp.get_context("spawn").Pool(n) as pool:
            return pool.map(run_one, jobs, chunksize=1)
    return [run_one(j) for j in jobs]


def _label(mode: str, w: float) -> str:
    return "standard" if mode == "standard" else f"hybrid (w={w:g})"


def main() -> None:
    from ssm_metarl.results import mean_ci

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3, 10, 20])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--select-seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", type=int, default=2, help="new tasks per split")
    parser.add_argument("--keep-tasks", type=int, default=3, help="training tasks whose return is kept")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per adaptation step")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="forgetting")
    args = start_run(parser)
    t0 = time.perf_counter()
    ks = [0, *args.steps]

    # phase 1: the replay weight, on validation tasks and selection seeds
    select = _map(
        _jobs(args, [("hybrid", w) for w in args.weights], ["validation"], args.select_seeds), args.jobs
    )
    sel_score = {
        w: statistics.fmean(
            (r["new"][k] + r["kept"][k]) / 2 for r in select if r["weight"] == w for k in args.steps
        )
        for w in args.weights
    }
    chosen = max(sel_score, key=lambda w: sel_score[w])

    # phase 2: standard vs hybrid(chosen), paired, on test and out_of_range
    runs = _map(
        _jobs(args, [("standard", 0.0), ("hybrid", chosen)], ["test", "out_of_range"], args.seeds), args.jobs
    )
    table: dict[str, Any] = {}
    rows = []
    for split in ("test", "out_of_range"):
        for what in ("new", "kept"):
            for mode in ("standard", "hybrid"):
                mine = [r for r in runs if r["split"] == split and r["mode"] == mode]
                cells = []
                for k in ks:
                    per_seed = [
                        statistics.fmean(r[what][k] for r in mine if r["seed"] == s) for s in args.seeds
                    ]  # mean over tasks, then over seeds
                    iv = mean_ci(per_seed)
                    table[f"{split}/{what}/{mode}/{k}"] = {"mean": iv.mean, "ci95": iv.half}
                    cells.append(f"{iv.mean:.1f}" + (f" ± {iv.half:.1f}" if iv.half is not None else ""))
                rows.append([split, what, _label(mode, chosen if mode == "hybrid" else 0.0), *cells])
            diff_cells = []
            for k in ks:  # paired by (seed, task)
                d = [
                    statistics.fmean(
                        h[what][k] - s_[what][k]
                        for h in runs
                        for s_ in runs
                        if h["mode"] == "hybrid"
                        and s_["mode"] == "standard"
                        and h["split"] == s_["split"] == split
                        and h["task"] == s_["task"]
                        and h["seed"] == s_["seed"] == seed
                    )
                    for seed in args.seeds
                ]
                iv = mean_ci(d)
                table[f"{split}/{what}/hybrid-standard/{k}"] = {"mean": iv.mean, "ci95": iv.half}
                diff_cells.append(f"{iv.mean:+.1f}" + (f" ± {iv.half:.1f}" if iv.half is not None else ""))
            rows.append([split, what, "hybrid - standard", *diff_cells])
    last = max(args.steps)
    headline = {
        "replay_weight_chosen": chosen,
        "selection_scores": {str(w): v for w, v in sel_score.items()},
        **{
            f"{split}_{what}_{m}_after_{last}": table[f"{split}/{what}/{m}/{last}"]["mean"]
            for split in ("test", "out_of_range")
            for what in ("new", "kept")
            for m in ("standard", "hybrid", "hybrid-standard")
        },
        **{
            f"{split}_{what}_hybrid_minus_standard_after_{last}_ci95": table[
                f"{split}/{what}/hybrid-standard/{last}"
            ]["ci95"]
            for split in ("test", "out_of_range")
            for what in ("new", "kept")
        },
        # issue 14's figure: what replay keeps on the training tasks after 10 steps on out-of-range tasks
        **(
            {
                "hybrid_minus_standard_retention_k10": table["out_of_range/kept/hybrid-standard/10"]["mean"],
                "hybrid_minus_standard_retention_k10_ci95": table["out_of_range/kept/hybrid-standard/10"][
                    "ci95"
                ],
            }
            if 10 in args.steps
            else {}
        ),
        "minutes": (time.perf_counter() - t0) / 60,
    }
    sel_rows = [[f"{w:g}", f"{sel_score[w]:.1f}"] for w in args.weights]
    md = (
        f"## Forgetting: {MODEL} adapted on new {FAMILY} tasks, standard vs hybrid (paired; {len(args.seeds)} "
        f"adaptation seeds x {args.tasks} tasks per split; {args.episodes} episodes per step; kept = mean return "
        f"on {args.keep_tasks} training tasks)\n\n"
        f"Replay weight chosen on validation tasks (seeds {args.select_seeds}; score = mean over k of "
        f"(new + kept) / 2): **{chosen:g}**\n\n"
        + markdown_table(["weight", "validation score"], sel_rows)
        + "\n\n"
        + markdown_table(["split", "return", "mode", *[f"k={k}" for k in ks]], rows)
        + f"\nIntervals: 95% over adaptation seeds (the policy is trained once). Command: "
        f"`{provenance()['command']}`; {headline['minutes']:.0f} minutes.\n"
    )
    payload = {
        "headline": headline,
        **provenance(),
        "args": vars(args),
        "seeds": args.seeds,
        "table": table,
        "selection": select,
        "runs": runs,
    }
    paths = write_results(args.name, payload, md)
    _plot(table, ks, chosen, paths[0].with_suffix(".png"))
    print(md)


def _plot(table: dict[str, Any], ks: list[int], chosen: float, path: Any) -> None:
    from ssm_metarl.results import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (split, what) in zip(axes, [(s, w) for s in ("test", "out_of_range") for w in ("new", "kept")]):
        for mode, color in (("standard", "C0"), ("hybrid", "C1")):
            m = np.array([table[f"{split}/{what}/{mode}/{k}"]["mean"] for k in ks])
            h = np.array([table[f"{split}/{what}/{mode}/{k}"]["ci95"] or 0.0 for k in ks])
            ax.plot(ks, m, "o-", color=color, label=_label(mode, chosen))
            ax.fill_between(ks, m - h, m + h, color=color, alpha=0.2)
        ax.set_title(f"{split}: {'new task' if what == 'new' else 'kept (training tasks)'}", fontsize=9)
        ax.set_xlabel("adaptation steps k")
    axes[0].set_ylabel("return")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
