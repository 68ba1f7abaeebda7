"""Which MAML ingredients matter on 2D navigation: action bounds, inner-loop baseline, inner step size.

    python benchmarks/maml_navigation_variants.py                  # 4 variants x 30 meta-iterations, seed 0

Each variant meta-trains the mlp policy of ``recipe("maml", "navigation-2d")`` for ``--iterations``
meta-iterations with one combination of
- action bounds: ``tanh`` (our default Gaussian, squashed into [-0.1, 0.1]) or ``clip`` (the MAML code's:
  the Gaussian sample clipped to the bounds),
- inner-loop baseline: ``critic`` (the meta-learned value head; it sees only the position) or ``linear``
  (rllab's linear fit on [obs, obs^2, t, t^2, t^3, 1] per batch of episodes, as in the MAML paper's code),
- inner step size (1.0 for tanh, the paper's 0.1 for clip),
then is evaluated with the paper's test protocol on the family's ``validation`` goals (40 trajectories per
step, step size then half of it): this script chooses, so it never looks at ``test``. Writes results/<name>.{json,md} (``--name``, default ``maml_navigation_variants``).
One seed: a probe, not a benchmark; ``meta_navigation.py`` measures the chosen recipe over 3 seeds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

from _common import command_line, machine_info, markdown_table, provenance, start_run, write_results

VARIANTS = [
    {"action_bounds": "tanh", "baseline": "critic", "inner_lr": 1.0},
    {"action_bounds": "tanh", "baseline": "linear", "inner_lr": 1.0},
    {"action_bounds": "clip", "baseline": "critic", "inner_lr": 0.1},
    {"action_bounds": "clip", "baseline": "linear", "inner_lr": 0.1},
]


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.adapt import evaluate_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.recipes import recipe

    torch.set_num_threads(1)
    v = job["variant"]
    cfg = recipe("maml", "navigation-2d").replace(
        run__seed=job["seed"],
        run__progress=False,
        meta_iterations=job["iterations"],
        inner__lr=v["inner_lr"],
        inner__baseline=v["baseline"],
        model__action_bounds=v["action_bounds"],
    )
    t0 = time.perf_counter()
    result = train_maml(cfg)
    minutes = (time.perf_counter() - t0) / 60
    # the paper's test protocol: 40 trajectories per step, the step size then half of it
    test = cfg.inner.replace(steps=3, episodes=40, later_lr=cfg.inner.lr / 2)
    curve = evaluate_adaptation(  # a choice: made on validation goals, never on test (EVALUATION.md)
        result.policy, "navigation-2d", get_family("navigation-2d").validation, test, seeds=(job["seed"],)
    )
    return {
        **job,
        "returns": curve.seed_means()[0].tolist(),  # after k = 0..3 steps, mean over tasks
        "train_minutes": minutes,
        "env_steps": result.env_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--name", default="maml_navigation_variants", help="results/<name>.{json,md}")
    args = start_run(parser)
    jobs = [{"variant": v, "seed": args.seed, "iterations": args.iterations} for v in VARIANTS]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(run_one, jobs, chunksize=1)
    minutes = (time.perf_counter() - t0) / 60
    best = max(runs, key=lambda r: r["returns"][1])
    headline = {
        "best_variant": best["variant"],
        "best_return_after_1": best["returns"][1],
        "best_return_after_3": best["returns"][3],
    }
    payload = {
        "headline": headline,
        "runs": runs,
        "config": vars(args),
        "minutes_total": minutes,
        "seeds": [args.seed],
        **provenance(),
    }
    rows = [
        [
            r["variant"]["action_bounds"],
            r["variant"]["baseline"],
            r["variant"]["inner_lr"],
            *[f"{x:.2f}" for x in r["returns"]],
            f"{r['train_minutes']:.1f}",
        ]
        for r in runs
    ]
    md = (
        f"## MAML variants on navigation-2d (mlp, seed {args.seed}, {args.iterations} meta-iterations, 20 validation "
        "goals, 40 trajectories per step)\n\n"
        + markdown_table(
            ["action bounds", "baseline", "inner lr", "0 steps", "1 step", "2 steps", "3 steps", "train min"],
            rows,
        )
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {machine_info()['cpu']}; {minutes:.0f} min."
    )
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
