"""Meta-RL on CartPole physics: held-out and out-of-range pole lengths, masses, gravity and force.

    python benchmarks/meta_cartpole.py                   # 3 seeds, 2 processes
    python benchmarks/meta_cartpole.py --seeds 2 --merge benchmarks/results/meta_cartpole.json  # add a seed

Three agents, all with the ``ssm`` backbone, per seed:
- multi-task PPO: recurrent PPO (``recipe("ppo", ...)``) on ``cartpole-physics``'s multi-task env (a new
  training task at every reset), no meta-learning;
- MAML: the multi-task policy meta-trained further with MAML (the recipe of the shipped ``cartpole-ssm``),
  evaluated before and after 1 and 3 policy-gradient steps of its inner loop on each task (10 episodes per
  step);
- RL²: PPO (``recipe("rl2", ...)``) over trials of 2 episodes of one task; the return of each episode of a
  trial, no gradient step.
All on the first 10 tasks of the test and out-of-range splits. Intervals are over seeds (none, and ``null``
in the JSON, for a single seed). Writes results/<name>.{json,md,png} (``--name``, default
``meta_cartpole``).
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
    add_merge_arguments,
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

FAMILY = "cartpole-physics"
SPLITS = ("test", "out_of_range")
TASKS = 10
TRAJ = 10
EPISODES_PER_TRIAL = 2


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.adapt import evaluate_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.envs.trial import rl2_env_id
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    dist = get_family(FAMILY)
    seed = job["seed"]
    out: dict[str, Any] = {**job}
    t0 = time.perf_counter()
    if job["kind"] == "rl2":
        cfg = recipe("rl2", FAMILY).replace(
            env_id=rl2_env_id(FAMILY, EPISODES_PER_TRIAL),
            run__seed=seed,
            run__progress=False,
            total_steps=job["rl2_steps"],
        )
        policy = train_rl2(cfg).policy
        out["train_seconds"] = time.perf_counter() - t0
        for split in SPLITS:
            tasks = dist.split(split)[:TASKS]
            r = evaluate_in_context(policy, FAMILY, tasks, EPISODES_PER_TRIAL, seeds=(10_000 + seed,))
            out[split] = r.seed_means()[0].tolist()  # return of episode 1, 2, mean over tasks
        return out

    mt_cfg = recipe("ppo", dist.multitask_env_id()).replace(
        run__seed=seed, run__progress=False, total_steps=job["ppo_steps"]
    )
    # MAML from the multi-task ssm policy: the recipe of the shipped cartpole-ssm
    maml_cfg = recipe("maml", FAMILY, "ssm").replace(
        run__seed=seed,
        run__progress=False,
        **{**FROM_MULTITASK_MAML, "meta_iterations": job["maml_iterations"]},
    )
    test = maml_cfg.inner.replace(steps=3, episodes=TRAJ)  # 0, 1, 2, 3 steps of TRAJ episodes

    def curve(policy) -> dict[str, list[float]]:
        res = {}
        for split in SPLITS:
            c = evaluate_adaptation(policy, FAMILY, dist.split(split)[:TASKS], test, seeds=(seed,))
            res[split] = c.seed_means()[0].tolist()  # after k = 0..3 steps, mean over tasks
        return res

    mt = train_ppo(mt_cfg).policy
    out["multitask_seconds"] = time.perf_counter() - t0
    out["multitask"] = curve(mt)
    t1 = time.perf_counter()
    maml = train_maml(maml_cfg, policy=mt).policy
    out["maml_seconds"] = time.perf_counter() - t1
    out["maml"] = curve(maml)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: only --merge")
    parser.add_argument("--ppo-steps", type=int, default=150_000)
    parser.add_argument("--maml-iterations", type=int, default=10)
    parser.add_argument("--rl2-steps", type=int, default=300_000)
    parser.add_argument("--jobs", type=int, default=2)
    add_merge_arguments(parser, "meta_cartpole")
    args = start_run(parser)

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.evaluate import baseline_returns
    from ssm_metarl.results import mean_ci

    jobs = [{"kind": "rl2", "seed": s, "rl2_steps": args.rl2_steps} for s in args.seeds]
    jobs += [
        {"kind": "maml", "seed": s, "ppo_steps": args.ppo_steps, "maml_iterations": args.maml_iterations}
        for s in args.seeds
    ]
    t0 = time.perf_counter()
    runs = []
    if jobs:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    minutes = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, lambda r: (r["kind"], r["seed"]))
    budgets = {
        k: {
            (r.get("rl2_steps"), r.get("ppo_steps"), r.get("maml_iterations")) for r in runs if r["kind"] == k
        }
        for k in ("rl2", "maml")
    }
    if any(len(b) > 1 for b in budgets.values()):
        raise SystemExit(f"the runs to summarise were trained with different budgets: {budgets}")
    seeds = sorted({r["seed"] for r in runs})
    dist = get_family(FAMILY)

    def agg(kind: str, key: str, split: str) -> list[tuple[float, float | None]]:
        vals = np.array([r[key][split] for r in runs if r["kind"] == kind and key in r])  # (S, n)
        return [mean_ci(vals[:, k]) for k in range(vals.shape[1])]

    table: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        tasks = dist.split(split)[:TASKS]
        table[split] = {
            "random": baseline_returns(FAMILY, tasks, "random", TRAJ, (0,)).mean,
            "constant": baseline_returns(FAMILY, tasks, "constant", TRAJ, (0,)).mean,
            "multitask_ppo": agg("maml", "multitask", split),
            "maml": agg("maml", "maml", split),
        }
        rl2 = np.array([r[split] for r in runs if r["kind"] == "rl2"])
        table[split]["rl2_ssm"] = [mean_ci(rl2[:, k]) for k in range(rl2.shape[1])]
    headline = {
        "heldout_return_after_2_episodes": table["test"]["rl2_ssm"][1][0],
        "heldout_return_after_1_step": table["test"]["maml"][1][0],
        "out_of_range_return_after_2_episodes": table["out_of_range"]["rl2_ssm"][1][0],
        "out_of_range_return_after_1_step": table["out_of_range"]["maml"][1][0],
        "out_of_range_return_after_3_steps": table["out_of_range"]["maml"][3][0],
    }
    payload = {
        "headline": headline,
        "targets": {"heldout_return_after_2_episodes": 475, "heldout_return_after_1_step": 475},
        "table": table,
        "runs": runs,
        "config": vars(args) | {"family": FAMILY, "tasks_per_split": TASKS, "trajectories": TRAJ},
        "minutes_total": minutes,
        "merged_from": merged_from,
        "seeds": seeds,
        **provenance(),
    }

    def c(x: tuple[float, float | None]) -> str:
        return ci_cell(*x)

    rows = []
    for split in SPLITS:
        t = table[split]
        rows += [
            [split, "random policy", f"{t['random']:.1f}", "", ""],
            [split, "constant action", f"{t['constant']:.1f}", "", ""],
            [
                split,
                "multi-task PPO (0 / 1 / 3 steps)",
                c(t["multitask_ppo"][0]),
                c(t["multitask_ppo"][1]),
                c(t["multitask_ppo"][3]),
            ],
            [split, "MAML (0 / 1 / 3 steps)", c(t["maml"][0]), c(t["maml"][1]), c(t["maml"][3])],
            [split, "RL² ssm (episode 1 / 2)", c(t["rl2_ssm"][0]), c(t["rl2_ssm"][1]), ""],
        ]
    md = (
        f"## Meta-RL on cartpole-physics ({len(seeds)} seeds, first {TASKS} tasks per split, "
        f"{'mean ± 95% CI over seeds' if len(seeds) > 1 else 'one seed: no interval'})\n\n"
        + markdown_table(["split", "agent", "zero-shot / episode 1", "1 step / episode 2", "3 steps"], rows)
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}; "
        f"{minutes:.0f} minutes for this invocation's runs ({args.jobs} processes)."
        + merged_markdown(merged_from)
    )
    write_results(args.name, payload, md)
    _plot(table, args.name)
    print(md)


def _mean_half(cells: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Means and half-widths of (mean, half) pairs; no interval (one seed) plots as zero."""
    return np.array([m for m, _ in cells]), np.array([h or 0.0 for _, h in cells])


def _plot(table: dict[str, Any], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, split in zip(axes, SPLITS):
        t = table[split]
        for i, key in enumerate(("multitask_ppo", "maml")):
            m, h = _mean_half(t[key])
            ks = np.arange(len(m))
            ax.errorbar(ks, m, yerr=h, marker="o", color=f"C{i}", capsize=3, label=key)
        m, h = _mean_half(t["rl2_ssm"])
        ax.errorbar([0, 1], m, yerr=h, marker="s", color="C2", capsize=3, label="RL² (episode 1, 2)")
        ax.axhline(t["random"], color="grey", ls=":", label="random")
        ax.set_title(f"{split.replace('_', '-')} tasks")
        ax.set_xlabel("adaptation steps / episode index - 1")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean return")
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
