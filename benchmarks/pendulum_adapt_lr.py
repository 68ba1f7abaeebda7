"""The step-size probe behind ``recipe("maml", "pendulum-physics")``: standard adaptation of a multi-task PPO
policy on held-out pendulum physics, for several inner learning rates.

    python benchmarks/pendulum_adapt_lr.py          # about 4 minutes

Multi-task PPO (ssm, 300k steps, seed 0, the recipe of ``adaptation.py``), then 2 policy-gradient steps of 10
episodes on the first 3 ``validation`` tasks (the family's adapt recipe with each step size; choices are made on
validation, never on test: EVALUATION.md), 2 seeds, per learning rate. Writes results/<name>.{json,md} (``--name``, default ``pendulum_adapt_lr``).
"""

from __future__ import annotations

import argparse
import time

from _common import ci_cell, command_line, machine_info, markdown_table, provenance, start_run, write_results

FAMILY = "pendulum-physics"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 1.0])
    parser.add_argument("--name", default="pendulum_adapt_lr", help="results/<name>.{json,md}")
    args = start_run(parser)

    import torch

    from ssm_metarl.adapt import compare_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    dist = get_family(FAMILY)
    t0 = time.perf_counter()
    cfg = recipe("ppo", dist.multitask_env_id()).replace(
        run__seed=0, run__progress=False, total_steps=300_000
    )
    policy = train_ppo(cfg).policy
    adapt = recipe("adapt", FAMILY).replace(steps=2, episodes=10)  # 2 steps of 10 episodes
    rows, curves = [], {}
    for lr in args.lrs:
        comp = compare_adaptation(
            policy, FAMILY, dist.validation[:3], adapt.replace(lr=lr), seeds=(0, 1), modes=("standard",)
        )
        s = comp["standard"].summary()  # (mean, 95% half-width) after 0, 1, 2 steps
        curves[str(lr)] = s
        rows.append([lr] + [ci_cell(m, h) for m, h in s])
    best = max(args.lrs, key=lambda lr: curves[str(lr)][-1][0])
    minutes = (time.perf_counter() - t0) / 60
    payload = {
        "headline": {"best_lr": best, "return_after_2_steps": {k: v[-1][0] for k, v in curves.items()}},
        "curves": curves,
        "config": vars(args),
        "seeds": [0, 1],
        **provenance(),
        "minutes": minutes,
    }
    md = (
        "## Standard adaptation of a multi-task PPO policy on pendulum physics (3 validation tasks), by step size\n\n"
        + markdown_table(["inner lr", "0 steps", "1 step", "2 steps"], rows)
        + f"\n\nBest: {best}. Command: `{command_line()}`; {machine_info()['cpu']}; {minutes:.0f} min."
    )
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
