"""The two choices behind the trainers' optimiser and the ssm's acting cache, measured side by side.

    python benchmarks/optimizer_speed.py            # about a minute

1. Adam's step on the parameters of ``recipe("ppo", "CartPole-v1")``'s policy (ssm actor and critic):
   ``foreach=True`` against ``fused=True`` (what ``ssm_metarl.rl.run.make_optimizer`` uses).
2. ``ActorCritic.act`` at B = 8 with the ssm's cached acting plan against the same step with the plan
   rebuilt on every call (what a model without the cache would cost).

All variants are timed round-robin in one process (one torch thread), so machine noise hits them alike.
Writes results/optimizer_speed.{json,md}.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import (
    interleaved_timings,
    markdown_table,
    provenance,
    start_run,
    summarize,
    write_results,
)

from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models.ssm import SSM
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.ppo import build_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="round-robin rounds")
    parser.add_argument("--inner", type=int, default=200, help="calls per round")
    parser.add_argument("--name", default="optimizer_speed")
    args = start_run(parser)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = recipe("ppo", "CartPole-v1")
    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=0)
    policy = build_policy(cfg, envs)
    envs.close()
    params = list(policy.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {
        "foreach": torch.optim.Adam(params, lr=1e-6, eps=1e-5, foreach=True),
        "fused": torch.optim.Adam(params, lr=1e-6, eps=1e-5, fused=True),
    }
    wall, cpu = interleaved_timings(
        {k: o.step for k, o in opts.items()}, args.reps, warmup=5, inner=args.inner
    )

    B = cfg.num_envs
    obs, state, reset = torch.randn(B, 4), policy.initial_state(B), torch.zeros(B, dtype=torch.bool)
    blocks = [m for m in policy.modules() if isinstance(m, SSM)]

    def cached() -> None:
        with torch.no_grad():
            policy.act(obs, state, reset)

    def rebuilt() -> None:
        with torch.no_grad():
            for m in blocks:
                m._plan = None
            policy.act(obs, state, reset)

    act_wall, act_cpu = interleaved_timings(
        {"cached plan": cached, "plan rebuilt per step": rebuilt}, args.reps, warmup=20, inner=args.inner
    )
    rows: dict[str, Any] = {
        "adam_step_ms": {k: summarize(v) for k, v in cpu.items()},
        "adam_step_wall_ms": {k: summarize(v) for k, v in wall.items()},
        "act_us": {k: summarize(v, 1e6) for k, v in act_cpu.items()},
        "act_wall_us": {k: summarize(v, 1e6) for k, v in act_wall.items()},
    }
    a, b = rows["adam_step_ms"]["foreach"]["median"], rows["adam_step_ms"]["fused"]["median"]
    c, d = rows["act_us"]["cached plan"]["median"], rows["act_us"]["plan rebuilt per step"]["median"]
    headline = {
        "fused_adam_speedup_over_foreach": a / b,
        "cached_plan_act_speedup": d / c,
        "parameters": sum(p.numel() for p in params),
        "tensors": len(params),
    }
    payload = {
        "headline": headline,
        "rows": rows,
        "config": {
            "policy": "recipe('ppo', 'CartPole-v1')",
            "batch": B,
            "reps": args.reps,
            "inner": args.inner,
        },
        "seeds": [0],
        **provenance(),
    }
    md = markdown_table(
        ["measure", "variant", "median CPU time", "p25 - p75"],
        [
            ["Adam step", k, f"{v['median']:.3f} ms", f"{v['p25']:.3f} - {v['p75']:.3f}"]
            for k, v in rows["adam_step_ms"].items()
        ]
        + [
            ["act (B = 8)", k, f"{v['median']:.0f} us", f"{v['p25']:.0f} - {v['p75']:.0f}"]
            for k, v in rows["act_us"].items()
        ],
    )
    md = (
        f"`python benchmarks/optimizer_speed.py` ({headline['tensors']} tensors, {headline['parameters']:,} "
        f"parameters; round-robin, one thread)\n\n{md}\n\nfused Adam {headline['fused_adam_speedup_over_foreach']:.2f}x "
        f"faster than foreach; the cached acting plan makes `act` {headline['cached_plan_act_speedup']:.2f}x faster"
    )
    for path in write_results(args.name, payload, md):
        print(path)
    print(md)


if __name__ == "__main__":
    main()
