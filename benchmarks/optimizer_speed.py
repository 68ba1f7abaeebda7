"""The choices behind the trainers' optimiser step and the ssms' acting caches, measured side by side.

    python benchmarks/optimizer_speed.py            # about a minute

1. Adam's step on the parameters of ``recipe("ppo", "CartPole-v1")``'s policy (ssm actor and critic):
   ``foreach=True`` against ``fused=True`` (what ``ssm_metarl.rl.run.make_optimizer`` uses).
2. ``ActorCritic.act`` at B = 8 with the ssm's cached acting plan against the same step with the plan
   rebuilt on every call (what a model without the cache would cost).
3. On the RL² recipe's gated-ssm policy for navigation-2d (61 tensors): gradient clipping with
   ``clip_grad_norm_`` over the tensors against ``ppo.FlatGrads`` (one buffer per set, what ``ppo_update``
   uses), and ``act`` at B = 16 with the native step kept (``native.ParamWatch``) against rebuilt per call.

All variants are timed round-robin in one process (one torch thread), so machine noise hits them alike.
Writes results/optimizer_speed.{json,md}.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
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
from ssm_metarl.models.gated_ssm import GatedSSM
from ssm_metarl.models.ssm import SSM
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.ppo import FlatGrads, build_policy, clip_groups


def act_timings(
    policy: Any, B: int, drop_cache: Callable[[], Any], kept: str, rebuilt: str, args: Any
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``policy.act`` at B rows with its acting cache kept against dropped (``drop_cache``) before every call,
    round-robin: (wall, cpu) seconds per call by label."""
    obs, state = torch.randn(B, policy.obs_dim), policy.initial_state(B)
    reset = torch.zeros(B, dtype=torch.bool)

    def act(drop: bool) -> None:
        with torch.no_grad():
            if drop:
                drop_cache()
            policy.act(obs, state, reset)

    calls = {kept: lambda: act(False), rebuilt: lambda: act(True)}
    return interleaved_timings(calls, args.reps, warmup=20, inner=args.inner)


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
    blocks = [m for m in policy.modules() if isinstance(m, SSM)]
    act_wall, act_cpu = act_timings(
        policy,
        B,
        lambda: [setattr(m, "_plan", None) for m in blocks],
        "cached plan",
        "plan rebuilt per step",
        args,
    )
    rl2 = recipe("rl2", "navigation-2d")
    envs = make_vec_env(rl2.env_id, rl2.num_envs, seed=0)
    gated = build_policy(rl2, envs)
    envs.close()
    sets = clip_groups(gated, rl2)
    flat = FlatGrads(sets)
    for p in gated.parameters():
        p.grad.copy_(torch.randn_like(p) * 1e-3)  # clipping scales by at most 1: the values stay typical
    per_tensor = {"clip_grad_norm_": lambda: [torch.nn.utils.clip_grad_norm_(ps, 1e9) for ps in sets]}
    clip_wall, clip_cpu = interleaved_timings(
        {**per_tensor, "FlatGrads": lambda: flat.clip_(1e9)}, args.reps, warmup=5, inner=args.inner
    )
    backbones = [m for m in gated.modules() if isinstance(m, GatedSSM)]
    gact_wall, gact_cpu = act_timings(
        gated,
        rl2.num_envs,
        lambda: [setattr(m, "_native", None) for m in backbones],
        "native step kept",
        "native step rebuilt per call",
        args,
    )
    rows: dict[str, Any] = {
        "clip_us": {k: summarize(v, 1e6) for k, v in clip_cpu.items()},
        "clip_wall_us": {k: summarize(v, 1e6) for k, v in clip_wall.items()},
        "gated_act_us": {k: summarize(v, 1e6) for k, v in gact_cpu.items()},
        "gated_act_wall_us": {k: summarize(v, 1e6) for k, v in gact_wall.items()},
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
        "flat_clip_speedup": rows["clip_us"]["clip_grad_norm_"]["median"]
        / rows["clip_us"]["FlatGrads"]["median"],
        "gated_act_kept_speedup": rows["gated_act_us"]["native step rebuilt per call"]["median"]
        / rows["gated_act_us"]["native step kept"]["median"],
        "gated_rl2_tensors": len(list(gated.parameters())),
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
        ]
        + [
            ["clip, gated RL² policy", k, f"{v['median']:.0f} us", f"{v['p25']:.0f} - {v['p75']:.0f}"]
            for k, v in rows["clip_us"].items()
        ]
        + [
            ["act, gated RL² (B = 16)", k, f"{v['median']:.0f} us", f"{v['p25']:.0f} - {v['p75']:.0f}"]
            for k, v in rows["gated_act_us"].items()
        ],
    )
    md = (
        f"`python benchmarks/optimizer_speed.py` ({headline['tensors']} tensors, {headline['parameters']:,} "
        f"parameters; round-robin, one thread)\n\n{md}\n\nfused Adam {headline['fused_adam_speedup_over_foreach']:.2f}x "
        f"faster than foreach; the cached acting plan makes `act` {headline['cached_plan_act_speedup']:.2f}x faster. "
        f"On the gated-ssm RL² policy ({headline['gated_rl2_tensors']} tensors) clipping over flat buffers is "
        f"{headline['flat_clip_speedup']:.1f}x faster than `clip_grad_norm_` over the tensors (zeroing is one "
        f"`zero_` per set instead of a fresh gradient per tensor), and keeping the native step makes its `act` "
        f"{headline['gated_act_kept_speedup']:.2f}x faster"
    )
    for path in write_results(args.name, payload, md):
        print(path)
    print(md)


if __name__ == "__main__":
    main()
