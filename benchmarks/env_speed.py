"""The batched task envs (``make_vec_env(..., fast=True)``) against Gymnasium's ``SyncVectorEnv``.

    python benchmarks/env_speed.py                 # about two minutes
    python benchmarks/env_speed.py --maml-iterations 0   # env steps only

1. One vector step of B = 20 sub-envs (the MAML recipes' 20 episodes per task) on ``halfcheetah-dir``,
   ``halfcheetah-vel`` and ``navigation-2d``, fast and sync, with the same uniform random actions, timed
   round-robin in one process (episodes roll over through same-step autoresets).
2. ``train_maml`` on ``halfcheetah-dir`` (the recipe: 20 tasks x 20 episodes, one inner step), a few
   meta-iterations with each kind of vector env, alternating; both kinds give bitwise the same
   trajectories (``tests/unit/test_mujoco_vec.py``), so the two runs' returns must agree exactly, which
   this script checks.

One torch thread. Writes results/env_speed.{json,md}; the headline has the step and meta-iteration
speed-ups (ratios of median CPU time per call).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from _common import interleaved_timings, markdown_table, provenance, start_run, summarize, write_results

FAMILIES = ["halfcheetah-dir", "halfcheetah-vel", "navigation-2d"]


def _step_timings(reps: int, inner: int, batch: int) -> dict[str, dict[str, Any]]:
    from ssm_metarl.envs import get_family

    out: dict[str, dict[str, Any]] = {}
    for name in FAMILIES:
        dist = get_family(name)
        tasks = (dist.train * batch)[:batch]
        envs = {kind: dist.make_vec_env(tasks, seed=0, fast=kind == "fast") for kind in ("sync", "fast")}
        rng = np.random.default_rng(0)
        low, high = envs["sync"].single_action_space.low, envs["sync"].single_action_space.high
        actions = rng.uniform(low, high, size=(64, batch, low.shape[0]))

        def stepper(kind: str, envs: dict[str, Any] = envs, actions: np.ndarray = actions) -> Any:
            steps_done = dict.fromkeys(envs, 0)

            def step() -> None:
                envs[kind].step(actions[steps_done[kind] % len(actions)])
                steps_done[kind] += 1

            return step

        for e in envs.values():
            e.reset(seed=0)
        _, cpu = interleaved_timings({k: stepper(k) for k in envs}, reps, warmup=20, inner=inner)
        for e in envs.values():
            e.close()
        out[name] = {k: summarize(v, 1e6) for k, v in cpu.items()}  # microseconds per vector step
    return out


def _maml_timings(iterations: int, rounds: int) -> dict[str, Any]:
    import ssm_metarl.envs.mujoco as mj
    from ssm_metarl.envs.tasks import FiniteTaskDistribution
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.recipes import recipe

    cfg = recipe("maml", "halfcheetah-dir").replace(run__progress=False, meta_iterations=iterations)
    fast_make = mj.HalfCheetahDirDistribution.make_vec_env

    def sync_make(self: Any, tasks: Any, seed: Any, fast: bool = False, **kwargs: Any) -> Any:
        return FiniteTaskDistribution.make_vec_env(self, tasks, seed, **kwargs)

    seconds: dict[str, list[float]] = {"sync": [], "fast": []}
    returns: dict[str, list[float]] = {"sync": [], "fast": []}
    try:
        for _ in range(rounds):
            for kind in ("sync", "fast"):
                mj.HalfCheetahDirDistribution.make_vec_env = sync_make if kind == "sync" else fast_make  # type: ignore[method-assign]
                c0 = time.thread_time()
                result = train_maml(cfg)
                seconds[kind].append((time.thread_time() - c0) / iterations)
                returns[kind] = [row["return_after"] for row in result.metrics]
    finally:
        mj.HalfCheetahDirDistribution.make_vec_env = fast_make  # type: ignore[method-assign]
    if returns["sync"] != returns["fast"]:
        raise RuntimeError(f"fast and sync MAML runs diverged: {returns}")
    return {"seconds_per_iteration": {k: summarize(v, 1.0) for k, v in seconds.items()}, "returns": returns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="round-robin rounds of env steps")
    parser.add_argument("--inner", type=int, default=50, help="vector steps per round")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--maml-iterations", type=int, default=2, help="per MAML run; 0 skips part 2")
    parser.add_argument("--maml-rounds", type=int, default=2, help="sync/fast MAML run pairs")
    parser.add_argument("--name", default="env_speed")
    args = start_run(parser)

    import torch

    torch.set_num_threads(1)
    steps = _step_timings(args.reps, args.inner, args.batch)
    headline: dict[str, Any] = {
        f"{name}_step_speedup": v["sync"]["median"] / v["fast"]["median"] for name, v in steps.items()
    }
    rows = [
        [name, kind, f"{v[kind]['median']:.0f} us", f"{v[kind]['p25']:.0f} - {v[kind]['p75']:.0f}"]
        for name, v in steps.items()
        for kind in ("sync", "fast")
    ]
    maml = None
    if args.maml_iterations > 0:
        maml = _maml_timings(args.maml_iterations, args.maml_rounds)
        s = maml["seconds_per_iteration"]
        headline["maml_halfcheetah_dir_iteration_speedup"] = s["sync"]["median"] / s["fast"]["median"]
        headline["maml_halfcheetah_dir_seconds_per_iteration_fast"] = s["fast"]["median"]
        rows += [
            [
                "MAML iteration, halfcheetah-dir",
                kind,
                f"{s[kind]['median']:.1f} s",
                f"{s[kind]['p25']:.1f} - {s[kind]['p75']:.1f}",
            ]
            for kind in ("sync", "fast")
        ]
    payload = {
        "headline": headline,
        "steps_us": steps,
        "maml": maml,
        "config": vars(args),
        "seeds": [0],
        **provenance(),
    }
    md = markdown_table(["measure", "vector env", "median CPU time", "p25 - p75"], rows)
    speedups = ", ".join(f"{k} {v:.2f}x" for k, v in headline.items() if k.endswith("speedup"))
    md = (
        f"`python benchmarks/env_speed.py` (B = {args.batch} sub-envs; round-robin, one thread)\n\n{md}\n\n"
        f"Speed-ups of the fast vector envs: {speedups}. The MAML runs' returns agree exactly."
    )
    for path in write_results(args.name, payload, md):
        print(path)
    print(md)


if __name__ == "__main__":
    main()
