"""Where PPO's time goes with the ssm: one minibatch update and one acting step, ssm against mlp.

    python benchmarks/ppo_update_cost.py              # -> results/ppo_update_cost.{json,md}
    python benchmarks/ppo_update_cost.py --compile    # also torch.compile of the update's forward

``ppo_cartpole.py`` measures whole runs; this measures their two inner loops at the CartPole recipe's sizes
(``recipe("ppo", "CartPole-v1")``: 8 envs, 64-step segments, 2 minibatches of 4 env sequences, hidden and
state size 64, separate actor and critic backbones), one torch thread, methods interleaved round-robin:

* update: ``policy.evaluate`` on a (4, 64) minibatch, ``ppo_loss``, backward, gradient clipping, Adam's
  step (what ``ppo_update`` does per minibatch). For the ssm also: the same with the Python scan kernels
  instead of the native one, and with the scan replaced by ``u * lambda`` (no recurrence: the floor that
  any scan kernel could reach); with ``--compile``, ``torch.compile(policy.evaluate)`` (its compile time
  is recorded, from an empty inductor cache).
* act: ``policy.act`` on 8 envs (what the rollout loop calls per step).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import torch
from _common import interleaved_timings, markdown_table, provenance, start_run, summarize, write_results

import ssm_metarl.models.ssm as ssm_module
from ssm_metarl.models import native, policy_from_config
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.ppo import FlatGrads
from ssm_metarl.rl.run import make_optimizer

SEED = 0


def make(kind: str) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    cfg = recipe("ppo", "CartPole-v1").replace(model__kind=kind)
    env = gym.make("CartPole-v1")
    torch.manual_seed(SEED)
    policy = policy_from_config(cfg.model, env.observation_space, env.action_space)
    env.close()
    B, T = cfg.envs_per_minibatch, cfg.rollout_steps
    g = torch.Generator().manual_seed(SEED)
    batch = {
        "obs": torch.randn(B, T, policy.obs_dim, generator=g),
        "reset": torch.rand(B, T, generator=g) < 0.05,
        "action": torch.randint(0, 2, (B, T), generator=g),
        "old_log_prob": torch.full((B, T), -0.69),
        "advantage": torch.randn(B, T, generator=g),
        "old_value": torch.randn(B, T, generator=g),
        "ret": torch.randn(B, T, generator=g),
    }
    return cfg, policy, batch


def update_fn(cfg: Any, policy: Any, batch: dict[str, torch.Tensor], evaluate: Callable | None = None):
    optimizer = make_optimizer(policy.parameters(), lr=1e-5, eps=1e-5)
    grads = FlatGrads([list(policy.parameters())])  # as ppo_update keeps them (the recipes clip globally)
    evaluate = evaluate or policy.evaluate
    state0 = policy.initial_state(batch["obs"].shape[0])

    def run() -> None:
        log_prob, entropy, value, _ = evaluate(batch["obs"], state0, batch["reset"], batch["action"])
        loss, _ = ppo_loss(
            log_prob,
            batch["old_log_prob"],
            batch["advantage"],
            value,
            batch["old_value"],
            batch["ret"],
            entropy,
            clip_coef=cfg.clip_coef,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
        )
        grads.zero_()
        loss.backward()
        grads.clip_(cfg.max_grad_norm)
        optimizer.step()

    return run


@contextmanager
def patched(module: Any, name: str, value: Any):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def under(fn: Callable[[], None], module: Any, name: str, value: Any) -> Callable[[], None]:
    def run() -> None:
        with patched(module, name, value):
            fn()

    return run


def act_fn(policy: Any, num_envs: int) -> Callable[[], None]:
    policy.eval()
    obs = torch.randn(num_envs, policy.obs_dim, generator=torch.Generator().manual_seed(SEED))
    reset = torch.zeros(num_envs, dtype=torch.bool)
    state = [policy.initial_state(num_envs)]

    def run() -> None:
        _, _, _, state[0] = policy.act(obs, state[0], reset)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--inner", type=int, default=20, help="calls per timing")
    parser.add_argument("--compile", action="store_true", help="also torch.compile(policy.evaluate)")
    parser.add_argument("--name", default="ppo_update_cost")
    args = start_run(parser)
    torch.set_num_threads(1)

    cfg, ssm, ssm_batch = make("ssm")
    _, mlp, mlp_batch = make("mlp")
    ssm_update = update_fn(cfg, ssm, ssm_batch)
    update: dict[str, Callable[[], None]] = {
        "ssm": ssm_update,
        "ssm, Python scan kernels": under(ssm_update, native, "supports", lambda x: False),
        "ssm, scan replaced by u * lambda (floor)": under(
            ssm_update, ssm_module, "linear_scan", lambda a, u, h0, reset: u * a
        ),
        "mlp": update_fn(cfg, mlp, mlp_batch),
    }
    compile_seconds = None
    if args.compile:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # a cold compile
        _, ssm_c, batch_c = make("ssm")
        compiled = torch.compile(ssm_c.evaluate)
        fn = update_fn(cfg, ssm_c, batch_c, evaluate=compiled)
        t0 = time.perf_counter()
        fn()  # the first call compiles
        compile_seconds = time.perf_counter() - t0
        update["ssm, torch.compile(policy.evaluate)"] = fn
    act = {"ssm": act_fn(ssm, cfg.num_envs), "mlp": act_fn(mlp, cfg.num_envs)}

    rows = []
    for section, fns in (("update", update), ("act", act)):
        wall, cpu = interleaved_timings(fns, reps=args.reps, warmup=3, inner=args.inner)
        for name in fns:
            rows.append(
                {"section": section, "method": name}
                | {f"wall_{k}_ms": v for k, v in summarize(wall[name]).items() if k != "reps"}
                | {"cpu_median_ms": summarize(cpu[name])["median"]}
            )
    med = {(r["section"], r["method"]): r["cpu_median_ms"] for r in rows}
    headline = {
        "update_ssm_ms": med[("update", "ssm")],
        "update_mlp_ms": med[("update", "mlp")],
        "update_ssm_over_mlp": med[("update", "ssm")] / med[("update", "mlp")],
        "update_python_scan_over_native": med[("update", "ssm, Python scan kernels")]
        / med[("update", "ssm")],
        "update_scan_share": 1
        - med[("update", "ssm, scan replaced by u * lambda (floor)")] / med[("update", "ssm")],
        "act_ssm_over_mlp": med[("act", "ssm")] / med[("act", "mlp")],
        "native_kernel": native.available(),
    }
    if compile_seconds is not None:
        headline["compile_seconds"] = compile_seconds
        headline["update_compiled_over_eager"] = (
            med[("update", "ssm, torch.compile(policy.evaluate)")] / med[("update", "ssm")]
        )
    payload = {
        "headline": headline,
        "rows": rows,
        "config": {
            "recipe": "ppo CartPole-v1",
            "minibatch": [cfg.envs_per_minibatch, cfg.rollout_steps],
            "act_envs": cfg.num_envs,
            "reps": args.reps,
            "inner": args.inner,
            "threads": 1,
        },
        "seeds": [SEED],
        **provenance(),
    }
    table = markdown_table(
        ["section", "method", "CPU ms (median)", "wall ms (median)", "wall p25-p75"],
        [
            [
                r["section"],
                r["method"],
                f"{r['cpu_median_ms']:.3f}",
                f"{r['wall_median_ms']:.3f}",
                f"{r['wall_p25_ms']:.3f}-{r['wall_p75_ms']:.3f}",
            ]
            for r in rows
        ],
    )
    md = (
        "## One PPO minibatch update and one acting step, CartPole recipe sizes\n\n"
        f"{table}\n\nHeadline: {headline}\n\nCommand: `{payload['command']}`; machine "
        f"{payload['machine']['cpu']}; compile time {compile_seconds if compile_seconds else '-'} s."
    )
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
