"""Where a PPO update's time goes, per backbone, at the shapes the recipes use: the map for making the ssm cheap.

    python benchmarks/backbone_profile.py                          # -> results/backbone_profile.{json,md}
    python benchmarks/backbone_profile.py --shapes cartpole --reps 3 --name backbone_profile_smoke

For each shape (``cartpole``: ``recipe("ppo", "CartPole-v1", kind)``; ``popgym``: ``recipe("ppo",
"popgym-RepeatPreviousEasy-v0", kind)``, with the memory backbones; ``rl2``: ``recipe("rl2", "navigation-2d",
kind)``) and each backbone (ssm real, ssm complex, gated ssm, gru, lstm, transformer, mlp, each in the
settings its recipe gives it), one PPO update cycle as ``train_ppo`` runs it, split into:

* **act**: ``policy.act`` during the rollout (every env in one call per step);
* **env**: ``envs.step`` during the rollout; **collector**: the rest of ``RolloutCollector.collect``
  (buffers, observation encoding, episode bookkeeping);
* **forward**: ``policy.evaluate`` and ``ppo_loss`` over every minibatch of every epoch;
* **backward**: ``loss.backward()``; **optimizer**: gradient clipping and zeroing over the flat gradient
  buffers (``ppo.FlatGrads``, as ``ppo_update`` does) and Adam's step.

Timings are this thread's CPU seconds (``time.thread_time``; one torch thread), median over ``--reps``
cycles, the backbones of a shape interleaved round-robin so that machine noise hits all alike; GAE is left
out (the same for every backbone). Operation counts are the aten operators dispatched (a
``TorchDispatchMode`` counter) per acting step and per minibatch update (forward, backward, optimizer); a
native call (the scan, the gated ssm's fused recurrence, block and acting step) counts as none.

The acting latency table (``--latency-batches``, default 1, 8, 64) times ``policy.act`` per backbone at
each batch size, in the settings of the ``--latency-shape`` recipe (default RL²), at steady state.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import markdown_table, provenance, start_run, write_results
from torch.utils._python_dispatch import TorchDispatchMode

from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.gae import gae
from ssm_metarl.rl.losses import ppo_loss
from ssm_metarl.rl.ppo import FlatGrads, build_policy, clip_groups
from ssm_metarl.rl.rollout import RolloutCollector
from ssm_metarl.rl.run import make_optimizer

SHAPES: dict[str, tuple[str, str]] = {
    "cartpole": ("ppo", "CartPole-v1"),
    "popgym": ("ppo", "popgym-RepeatPreviousEasy-v0"),
    "rl2": ("rl2", "navigation-2d"),
}
BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "ssm real": ("ssm", {"complex": False}),
    "ssm complex": ("ssm", {"complex": True}),
    "gated ssm": ("gated_ssm", {}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
    "transformer": ("transformer", {}),
    "mlp": ("mlp", {}),
}
"""Label -> (kind, ModelConfig fields beyond the recipe's). The ssm's two diagonals are both measured; the
rest is what each recipe gives the kind (the memory and RL² recipes' layer counts included)."""
PHASES = ("act", "env", "collector", "forward", "backward", "optimizer")


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def config(shape: str, label: str) -> Any:
    algo, target = SHAPES[shape]
    if target.startswith("popgym-"):
        import popgym  # noqa: F401  (registers the popgym-* ids; the memory extra: make bench-memory)

    kind, fields = BACKBONES[label]
    cfg = recipe(algo, target, kind)  # type: ignore[call-overload]
    fields = {k: v for k, v in fields.items() if k != "complex" or kind == "ssm"}
    return cfg.replace(model=cfg.model.replace(**fields), run__progress=False)


class Cycle:
    """One backbone's PPO update cycle with per-phase CPU timers; ``run()`` does one and returns its phases."""

    def __init__(self, shape: str, label: str, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cfg = cfg = config(shape, label)
        self.envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=seed)
        self.policy = build_policy(cfg, self.envs)
        self.optimizer = make_optimizer(self.policy.parameters(), lr=1e-5, eps=1e-5)  # tiny steps: stationary
        self.collector = RolloutCollector(self.envs, self.policy, seed=seed)
        self.clock: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.policy.act = self._timed(self.policy.act, "act")  # type: ignore[method-assign]
        self.envs.step = self._timed(self.envs.step, "env")  # type: ignore[method-assign]
        self.params = sum(p.numel() for p in self.policy.parameters())

    def _timed(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            c0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.clock[phase] += time.thread_time() - c0

        return run

    def minibatches(self) -> tuple[FlatGrads, list[Callable[[], Any]]]:
        """A fresh rollout, the policy's gradients bound to flat buffers (as ``ppo_update`` binds them) and,
        per minibatch of every epoch, the closure of its forward."""
        cfg, policy = self.cfg, self.policy
        self.clock = dict.fromkeys(PHASES, 0.0)
        c0 = time.thread_time()
        policy.eval()
        ro = self.collector.collect(policy, cfg.rollout_steps)
        policy.train()
        collect = time.thread_time() - c0
        self.clock["collector"] = collect - self.clock["act"] - self.clock["env"]
        adv, ret = gae(
            ro.reward,
            ro.value,
            ro.terminated,
            ro.truncated,
            ro.final_value,
            ro.last_value,
            cfg.gamma,
            cfg.gae_lambda,
        )
        obs, reset, action = ro.obs.transpose(0, 1), ro.reset.transpose(0, 1), ro.action.transpose(0, 1)
        old_lp, old_v, adv, ret = ro.log_prob.T, ro.value.T, adv.T, ret.T
        grads = FlatGrads(clip_groups(policy, cfg))
        steps = []
        for _ in range(cfg.update_epochs):
            for mb in torch.randperm(ro.num_envs).split(cfg.envs_per_minibatch):
                state0 = tuple(s[mb] for s in ro.state0)

                def forward(mb: Any = mb, state0: Any = state0) -> Any:
                    lp, ent, v, _ = policy.evaluate(obs[mb], state0, reset[mb], action[mb])
                    loss, _ = ppo_loss(
                        lp, old_lp[mb], adv[mb], v, old_v[mb], ret[mb], ent,
                        clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                        clip_vloss=cfg.clip_vloss, norm_adv=cfg.norm_adv,
                    )  # fmt: skip
                    return loss

                steps.append(forward)
        return grads, steps

    def optimizer_step(self, grads: FlatGrads) -> None:
        """What ``ppo_update`` does around a backward: clip over the flat gradient buffers, Adam's step, and
        the zeroing for the next minibatch (the buffers start at zero)."""
        grads.clip_(self.cfg.max_grad_norm)
        self.optimizer.step()
        grads.zero_()

    def run(self) -> dict[str, float]:
        grads, forwards = self.minibatches()
        for forward in forwards:
            c0 = time.thread_time()
            loss = forward()
            c1 = time.thread_time()
            loss.backward()
            c2 = time.thread_time()
            self.optimizer_step(grads)
            c3 = time.thread_time()
            self.clock["forward"] += c1 - c0
            self.clock["backward"] += c2 - c1
            self.clock["optimizer"] += c3 - c2
        return dict(self.clock)

    def op_counts(self) -> dict[str, int]:
        """aten operators per acting step and per minibatch update (forward, backward, optimizer)."""
        policy, B = self.policy, self.cfg.num_envs
        obs = torch.zeros(B, policy.obs_dim)
        state, reset = policy.initial_state(B), torch.zeros(B, dtype=torch.bool)
        policy.eval()
        with torch.no_grad():
            policy.act(obs, state, reset)  # the acting plan is built outside the count
        counts = {}
        with OpCounter() as c, torch.no_grad():
            policy.act(obs, state, reset)
        counts["act"] = c.count
        policy.train()
        grads, forwards = self.minibatches()
        with OpCounter() as c:
            loss = forwards[0]()
        counts["forward"] = c.count
        with OpCounter() as c:
            loss.backward()
        counts["backward"] = c.count
        with OpCounter() as c:
            self.optimizer_step(grads)
        counts["optimizer"] = c.count
        return counts


def acting_latency(policy: Any, B: int, calls: int) -> float:
    """Microseconds of this thread's CPU per ``policy.act`` call for B envs (actor and critic, sampling
    included), under inference mode as rollouts act, at steady state: the state is carried from call to call
    after 100 warm-up calls (a transformer's cache window is full by then)."""
    obs = torch.randn(B, policy.obs_dim)
    state, reset = policy.initial_state(B), torch.zeros(B, dtype=torch.bool)
    policy.eval()
    with torch.inference_mode():
        for _ in range(100):
            state = policy.act(obs, state, reset)[3]
        c0 = time.thread_time()
        for _ in range(calls):
            state = policy.act(obs, state, reset)[3]
        return (time.thread_time() - c0) / calls * 1e6


def latency_rows(shape: str, labels: list[str], batches: list[int], reps: int) -> list[dict[str, Any]]:
    """Acting latency per backbone (its recipe's settings for ``shape``) and batch size, median over reps,
    the backbones interleaved round-robin."""
    policies = {}
    for label in labels:
        torch.manual_seed(0)
        cfg = config(shape, label)
        envs = make_vec_env(cfg.env_id, 1, seed=0)
        policies[label] = build_policy(cfg, envs)
        envs.close()
    per: dict[tuple[str, int], list[float]] = {(label, B): [] for label in labels for B in batches}
    for _ in range(reps):
        for B in batches:
            for label, policy in policies.items():
                per[(label, B)].append(acting_latency(policy, B, calls=200))
    return [
        {"shape": shape, "backbone": label, "batch": B, "act_us": statistics.median(per[(label, B)])}
        for label in labels
        for B in batches
    ]


def profile_shape(shape: str, labels: list[str], reps: int) -> list[dict[str, Any]]:
    cycles = {label: Cycle(shape, label) for label in labels}
    for c in cycles.values():  # warm-up: the acting plan, allocator, first-call costs
        c.run()
    per: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    for _ in range(reps):
        for label, c in cycles.items():
            per[label].append(c.run())
    rows = []
    for label, c in cycles.items():
        ms = {p: statistics.median(r[p] for r in per[label]) * 1e3 for p in PHASES}
        total = statistics.median(sum(r.values()) for r in per[label]) * 1e3
        cfg = c.cfg
        steps = cfg.rollout_steps
        n_mb = cfg.update_epochs * cfg.num_minibatches
        rows.append(
            {
                "shape": shape,
                "backbone": label,
                "kind": cfg.model.kind,
                "layers": cfg.model.num_layers,
                "parameters": c.params,
                "num_envs": cfg.num_envs,
                "rollout_steps": steps,
                "minibatches_per_update": n_mb,
                "ms": ms,
                "total_ms": total,
                "share": {p: ms[p] / sum(ms.values()) for p in PHASES},
                "act_us_per_step": ms["act"] * 1e3 / (steps + 1),
                "update_ms_per_minibatch": (ms["forward"] + ms["backward"] + ms["optimizer"]) / n_mb,
                "ops": c.op_counts(),
            }
        )
        c.envs.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--reps", type=int, default=7, help="update cycles per backbone (median)")
    parser.add_argument("--latency-batches", type=int, nargs="*", default=[1, 8, 64], help="none: no table")
    parser.add_argument("--latency-shape", default="rl2", choices=list(SHAPES))
    parser.add_argument("--name", default="backbone_profile")
    args = start_run(parser)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = [r for shape in args.shapes for r in profile_shape(shape, args.backbones, args.reps)]
    latency = latency_rows(args.latency_shape, args.backbones, args.latency_batches, args.reps)
    minutes = (time.perf_counter() - t0) / 60

    by = {(r["shape"], r["backbone"]): r for r in rows}
    headline: dict[str, Any] = {}
    for shape in args.shapes:
        for label in args.backbones:
            r = by[(shape, label)]
            key = f"{shape}_{label.replace(' ', '_')}"
            headline[f"{key}_total_ms"] = r["total_ms"]
        ref = by.get((shape, "mlp")) or by.get((shape, "lstm"))
        for label in ("ssm real", "ssm complex", "gated ssm"):
            if ref is not None and (shape, label) in by:
                headline[f"{shape}_{label.replace(' ', '_')}_over_{ref['backbone']}"] = (
                    by[(shape, label)]["total_ms"] / ref["total_ms"]
                )
        if (shape, "gated ssm") in by and (shape, "lstm") in by:
            headline[f"{shape}_gated_ssm_over_lstm"] = (
                by[(shape, "gated ssm")]["total_ms"] / by[(shape, "lstm")]["total_ms"]
            )
    lat = {(r["backbone"], r["batch"]): r["act_us"] for r in latency}
    for B in args.latency_batches:
        for label in args.backbones:
            headline[f"act_us_b{B}_{label.replace(' ', '_')}"] = lat[(label, B)]
    md = (
        "## Where a PPO update cycle's time goes, per backbone\n\n"
        "CPU milliseconds per update cycle (median of "
        f"{args.reps}), one torch thread, backbones interleaved; shares of the cycle in brackets. "
        "ops: aten operators per acting step / per minibatch update (forward + backward + optimizer).\n\n"
    )
    for shape in args.shapes:
        mine = [r for r in rows if r["shape"] == shape]
        first = mine[0]
        md += (
            f"**{shape}** (`{SHAPES[shape][0]}` recipe for {SHAPES[shape][1]}: {first['num_envs']} envs x "
            f"{first['rollout_steps']} steps, {first['minibatches_per_update']} minibatch updates per cycle)\n\n"
        )
        table = [
            [
                r["backbone"] + (f" ({r['layers']} layers)" if r["layers"] > 1 else ""),
                f"{r['total_ms']:.0f}",
                *(f"{r['ms'][p]:.0f} ({r['share'][p]:.0%})" for p in PHASES),
                f"{r['act_us_per_step']:.0f}",
                f"{r['update_ms_per_minibatch']:.2f}",
                f"{r['ops']['act']} / {r['ops']['forward']} + {r['ops']['backward']} + {r['ops']['optimizer']}",
                f"{r['parameters']:,}",
            ]
            for r in mine
        ]
        md += markdown_table(
            [
                "backbone",
                "total ms",
                *PHASES,
                "act µs/step",
                "update ms/minibatch",
                "ops act / update",
                "params",
            ],
            table,
        )
        md += "\n\n"
    if latency:
        md += (
            f"**Acting latency** (`policy.act`, actor and critic with sampling, under inference mode, the "
            f"`{SHAPES[args.latency_shape][0]}` recipe's settings for {SHAPES[args.latency_shape][1]}): "
            f"µs of CPU per call, median of {args.reps} interleaved rounds of 200 calls at steady state\n\n"
        )
        md += markdown_table(
            ["backbone", *(f"B = {B}" for B in args.latency_batches)],
            [[label, *(f"{lat[(label, B)]:.0f}" for B in args.latency_batches)] for label in args.backbones],
        )
        md += "\n\n"
    md += f"Headline: `{headline}`\n\nCommand: `{provenance()['command']}`; {minutes:.1f} minutes.\n"
    payload = {
        "headline": headline,
        **provenance(),
        "args": vars(args),
        "minutes": minutes,
        "rows": rows,
        "latency": latency,
    }
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
