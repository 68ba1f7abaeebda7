"""PPO on HalfCheetah-v5 with the ssm and mlp policies: training return at 300k and 1M env steps.

    python benchmarks/ppo_mujoco.py                                  # ssm + mlp, 3 seeds, 1M steps
    python benchmarks/ppo_mujoco.py --steps 300000 --jobs 2          # the 300k point only, 2 processes

"Return at N" is the mean of the last 20 training episodes (1000 steps each, stochastic policy, raw
reward) when N env steps have been collected; the final deterministic and stochastic evaluations (10
seeded episodes each) are reported beside it. The continuous-control recipe (``recipe("ppo", env)``) with the
model kind swapped, one layer for every kind (``recipe("ppo", env, "mlp")`` would give the mlp two).
Writes results/<name>.{json,md,png} (``--name``, default ``ppo_mujoco``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from typing import Any

from _common import (
    RESULTS_DIR,
    command_line,
    machine_info,
    markdown_table,
    provenance,
    write_results,
)

CHECKPOINTS = (300_000, 1_000_000)


def run_one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    import torch

    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    env_id, kind, seed, steps = job
    # the continuous-control recipe with the kind swapped in, one layer for every kind (mlp included)
    cfg = recipe("ppo", env_id).replace(
        model__kind=kind, run__seed=seed, run__progress=False, total_steps=steps
    )
    t0 = time.perf_counter()
    result = train_ppo(cfg)
    rows = [r for r in result.metrics if "sps" in r]
    at = {}
    for n in CHECKPOINTS:
        before = [r for r in rows if r["global_step"] <= n]
        if n <= steps and before:
            at[str(n)] = {"return_mean20": before[-1]["return_mean20"], "seconds": before[-1]["seconds"]}
    return {
        "env": env_id,
        "model": kind,
        "seed": seed,
        "steps": steps,
        "at": at,
        "final_eval": result.final_eval,
        "sps": rows[-1]["sps"],
        "seconds": time.perf_counter() - t0,
        "curve": [[r["global_step"], r["return_mean20"]] for r in rows[::4]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--models", nargs="+", default=["ssm", "mlp"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    parser.add_argument("--name", default="ppo_mujoco")
    args = parser.parse_args()

    jobs = [(args.env, m, s, args.steps) for s in args.seeds for m in args.models]
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_one, jobs)
    else:
        runs = [run_one(j) for j in jobs]

    rows = []
    for kind in args.models:
        rs = [r for r in runs if r["model"] == kind]
        row: dict[str, Any] = {"name": kind, "seeds": [r["seed"] for r in rs]}
        for n in CHECKPOINTS:
            vals = [r["at"][str(n)]["return_mean20"] for r in rs if str(n) in r["at"]]
            if vals:
                row[f"return_{n}"] = vals
                row[f"return_{n}_median"] = statistics.median(vals)
                row[f"seconds_{n}_median"] = statistics.median(r["at"][str(n)]["seconds"] for r in rs)
        row["eval_det"] = [r["final_eval"]["eval_return_det"] for r in rs]
        row["eval_stoch"] = [r["final_eval"]["eval_return_stoch"] for r in rs]
        row["sps_median"] = statistics.median(r["sps"] for r in rs)
        row["curves"] = [r["curve"] for r in rs]
        rows.append(row)
    env_key = args.env.split("-")[0].lower()
    ssm = next((r for r in rows if r["name"] == "ssm"), {})
    headline = {
        f"{env_key}_ssm_return_300k": ssm.get("return_300000_median"),
        f"{env_key}_ssm_return_1m": ssm.get("return_1000000_median"),
    }
    payload = {
        "headline": headline,
        "rows": rows,
        "runs": runs,
        "config": {
            "env": args.env,
            "steps": args.steps,
            "definition": "mean of the last 20 training episodes",
        },
        "seeds": args.seeds,
        **provenance(),
    }
    table_rows = []
    for r in rows:
        table_rows.append(
            [
                r["name"],
                r.get("return_300000_median", "-"),
                r.get("return_1000000_median", "-"),
                statistics.median(r["eval_det"]),
                statistics.median(r["eval_stoch"]),
                r["sps_median"],
                ", ".join(f"{v:.0f}" for v in r.get("return_300000", [])),
            ]
        )
    table = markdown_table(
        [
            "model",
            "median return @300k",
            "median return @1M",
            "final eval det",
            "final eval stoch",
            "steps/s",
            "per-seed @300k",
        ],
        table_rows,
    )
    md = (
        f"## PPO on {args.env} ({args.steps} env steps; return = mean of the last 20 training episodes)\n\n"
        f"{table}\n\nCommand: `{command_line()}`; seeds {args.seeds}; {machine_info()['cpu']}."
    )
    write_results(args.name, payload, md)
    _plot(rows, args)
    print(md)


def _plot(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(rows):
        for j, curve in enumerate(r["curves"]):
            pts = [(x, y) for x, y in curve if y is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=f"C{i}", alpha=0.8, label=r["name"] if j == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return, last 20 episodes")
    ax.set_title(f"PPO on {args.env}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{args.name}.png", dpi=120)


if __name__ == "__main__":
    main()
