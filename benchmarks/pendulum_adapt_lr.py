"""The step-size probe behind ``maml_defaults("pendulum-physics")``: standard adaptation of a multi-task PPO
policy on held-out pendulum physics, for several inner learning rates.

    python benchmarks/pendulum_adapt_lr.py          # about 4 minutes

Multi-task PPO (ssm, 300k steps, seed 0, the recipe of ``adaptation.py``), then 2 policy-gradient steps of 10
episodes on the first 3 held-out tasks, 2 seeds, per learning rate. Writes results/pendulum_adapt_lr.{json,md}.
"""

from __future__ import annotations

import argparse
import time

from _common import command_line, git_commit, machine_info, markdown_table, now_iso, write_results

FAMILY = "pendulum-physics"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 1.0])
    args = parser.parse_args()

    import torch
    from ssm_metarl.defaults import ppo_defaults

    from ssm_metarl.adapt import compare_adaptation
    from ssm_metarl.config import replace
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    dist = get_family(FAMILY)
    t0 = time.perf_counter()
    cfg = replace(ppo_defaults(dist.multitask_env_id()), seed=0, total_steps=300_000, progress=False)
    policy = train_ppo(cfg).policy
    rows, curves = [], {}
    for lr in args.lrs:
        comp = compare_adaptation(
            policy,
            FAMILY,
            dist.test[:3],
            steps=2,
            seeds=(0, 1),
            num_trajectories=10,
            lr=lr,
            modes=("standard",),
        )
        s = comp.summary("standard")
        curves[str(lr)] = s
        rows.append([lr] + [f"{m:.1f} ± {h:.1f}" for m, h in s])
    best = max(args.lrs, key=lambda lr: curves[str(lr)][-1][0])
    minutes = (time.perf_counter() - t0) / 60
    payload = {
        "headline": {"best_lr": best, "return_after_2_steps": {k: v[-1][0] for k, v in curves.items()}},
        "curves": curves,
        "config": vars(args),
        "machine": machine_info(),
        "command": command_line(),
        "commit": git_commit(),
        "seeds": [0, 1],
        "date": now_iso(),
        "minutes": minutes,
    }
    md = (
        "## Standard adaptation of a multi-task PPO policy on held-out pendulum physics, by step size\n\n"
        + markdown_table(["inner lr", "0 steps", "1 step", "2 steps"], rows)
        + f"\n\nBest: {best}. Command: `{command_line()}`; {machine_info()['cpu']}; {minutes:.0f} min."
    )
    write_results("pendulum_adapt_lr", payload, md)
    print(md)


if __name__ == "__main__":
    main()
