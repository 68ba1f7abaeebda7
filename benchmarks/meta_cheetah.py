"""MAML on HalfCheetah forward/backward (``halfcheetah-dir``, H=100, learn2learn's benchmark): a long run.

    python benchmarks/meta_cheetah.py                         # seed 0, stops after --minutes of training
    python benchmarks/meta_cheetah.py --minutes 5 --name meta_cheetah_smoke
    python benchmarks/meta_cheetah.py --baseline critic --minutes 60             # the critic baseline

MAML with the mlp backbone (``recipe("maml", "halfcheetah-dir")``: inner lr 1.0, ten times learn2learn's
0.1, because our Gaussian is tanh-squashed; with 0.1 the post-step return stayed flat at about -12 for 43
iterations; 20 tasks x 20 trajectories per meta-iteration; both directions, sampled), trained until
``--iterations`` or ``--minutes`` run out, then evaluated on both directions: return after 0, 1 and 3
policy-gradient steps (the recipe's inner loop, 20 trajectories per step, 3 evaluation seeds).
learn2learn's MAML-TRPO reaches about 260-275 after one step after 300 iterations (ANCHORS.md).
The recipe's inner baseline is rllab's linear feature baseline, as in learn2learn's example (``LinearValue``);
``--baseline critic`` uses the learned critic instead (the recipe's choice before commit 5c3ce35's runs showed
it stalling). Writes results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    ci_cell,
    command_line,
    machine_info,
    markdown_table,
    provenance,
    start_run,
    write_results,
)

FAMILY = "halfcheetah-dir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-clock budget")
    parser.add_argument("--inner-lr", type=float, default=1.0)
    parser.add_argument(
        "--baseline", choices=["critic", "linear"], default=None, help="default: the maml recipe's"
    )
    parser.add_argument("--name", default="meta_cheetah")
    args = start_run(parser)

    import torch

    from ssm_metarl.adapt import evaluate_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.recipes import recipe

    torch.set_num_threads(1)
    cfg = recipe("maml", FAMILY).replace(
        run__seed=args.seed,
        run__progress=False,
        meta_iterations=args.iterations,
        inner__lr=args.inner_lr,
    )
    cfg = cfg.replace(inner__baseline=args.baseline or cfg.inner.baseline)
    t0 = time.perf_counter()

    def stop(row: dict[str, Any]) -> bool:
        print(
            f"it {row['iteration']:4d}  {row['seconds']:7.0f} s  before {row['return_before']:8.1f}  "
            f"after {row['return_after']:8.1f}",
            flush=True,
        )
        return time.perf_counter() - t0 > 60 * args.minutes

    result = train_maml(cfg, callback=stop)
    minutes = (time.perf_counter() - t0) / 60
    tasks = get_family(FAMILY).test
    # return after 0, 1, 2, 3 steps of 20 trajectories each, 3 evaluation seeds
    curve = evaluate_adaptation(
        result.policy, FAMILY, tasks, cfg.inner.replace(steps=3, episodes=20), (0, 1, 2)
    )
    summary = curve.summary()
    headline = {
        "return_after_1_step": summary[1].mean,
        "return_after_0_steps": summary[0].mean,
        "return_after_3_steps": summary[3].mean,
        "minutes": minutes,
        "iterations": len(result.metrics),
    }
    payload = {
        "headline": headline,
        "targets": {"return_after_1_step": 275, "minutes": 60},
        "summary": [{"steps": k, "mean": m, "ci95": h} for k, (m, h) in enumerate(summary)],
        "per_seed_task": curve.values.mean(-1).tolist(),  # (seed, task, step): mean over the episodes
        "training_curve": [[r["iteration"], r["return_before"], r["return_after"]] for r in result.metrics],
        "env_steps": result.env_steps,
        "config": vars(args) | {"baseline": cfg.inner.baseline},
        **provenance(),
    }
    rows = [[k, ci_cell(m, h)] for k, (m, h) in enumerate(summary)]
    md = (
        f"## MAML on halfcheetah-dir (H=100, {cfg.inner.baseline} baseline), {len(result.metrics)} meta-iterations, "
        f"{minutes:.0f} min, "
        f"{result.env_steps:,} env steps\n\n"
        + markdown_table(["adaptation steps", "return (both directions, 3 seeds)"], rows)
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}."
    )
    write_results(args.name, payload, md)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve_rows = np.array(payload["training_curve"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve_rows[:, 0], curve_rows[:, 1], label="before adaptation")
    ax.plot(curve_rows[:, 0], curve_rows[:, 2], label="after 1 step")
    ax.axhline(275, color="k", ls="--", lw=0.8, label="learn2learn MAML-TRPO, 1 step")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("training return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{args.name}.png", dpi=120)
    print(md)


if __name__ == "__main__":
    main()
