"""PPO on CartPole-v1: our recurrent PPO with every model vs Stable-Baselines3 PPO, in one run.

    python benchmarks/ppo_cartpole.py                 # 3 seeds, all models, SB3 PPO, RecurrentPPO speed
    python benchmarks/ppo_cartpole.py --seeds 0 --models ssm mlp --quick
    python benchmarks/ppo_cartpole.py --models ssm --no-sb3 --python-scan --name ppo_cartpole_scan

Measures, per method and seed: env steps and wall-clock until the mean of the last 100 episodes first
reaches 475 ("sustained 475"; runs stop there, capped at --max-steps), training steps/s, and the raw
SyncVectorEnv(8) random-action throughput measured in the same run. SB3 PPO (MLP) runs with RL Zoo's tuned
CartPole hyper-parameters; sb3-contrib RecurrentPPO (LSTM) runs a short fixed budget for its steps/s.
Methods are interleaved seed by seed so machine noise hits all alike. One torch thread throughout. Ours is
``recipe("ppo", "CartPole-v1")`` with the model kind swapped (all one layer). ``--quick`` only changes the
output name. ``--python-scan`` adds ``ours-ssm-python-scan``, the ssm with the Python scan kernels instead of
the native one (``SSM_METARL_NATIVE=0``), interleaved with the others. Writes results/<name>.{json,md,png}
(``--name``, default ``ppo_cartpole``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from _common import command_line, machine_info, markdown_table, provenance, start_run, write_results

from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.models import native
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.ppo import train_ppo

TARGET = 475.0
MODELS = ["ssm", "gru", "lstm", "transformer", "mlp"]


def ours_config(kind: str, seed: int, max_steps: int) -> Any:
    """The CartPole recipe with the ``kind`` backbone swapped in, its other model settings kept (one layer for
    every kind, mlp included, as in the committed results; ``recipe("ppo", env, "mlp")`` would give two)."""
    return recipe("ppo", "CartPole-v1").replace(
        model__kind=kind, run__seed=seed, run__progress=False, total_steps=max_steps
    )


def run_ours(kind: str, seed: int, max_steps: int, native_scan: bool = True) -> dict[str, Any]:
    """``native_scan=False`` runs the same training with the Python scan kernels (SSM_METARL_NATIVE=0)."""
    if not native_scan:
        with _python_scan():
            return run_ours(kind, seed, max_steps)
    cfg = ours_config(kind, seed, max_steps)
    hit: dict[str, float] = {}

    def stop(row: dict[str, Any]) -> bool:
        if row["episodes"] >= 100 and row["return_mean100"] >= TARGET and not hit:
            hit.update(steps=row["global_step"], seconds=row["seconds"])
        return bool(hit)

    result = train_ppo(cfg, callback=stop)
    last = [r for r in result.metrics if "sps" in r][-1]
    return {
        "steps_to_475": hit.get("steps"),
        "seconds_to_475": hit.get("seconds"),
        "sps": last["sps"],
        "curve": _curve(result.episode_end_steps, result.episode_returns),
    }


@contextlib.contextmanager
def _python_scan() -> Iterator[None]:
    old = os.environ.get("SSM_METARL_NATIVE")
    os.environ["SSM_METARL_NATIVE"] = "0"
    native._library.cache_clear()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSM_METARL_NATIVE")
        else:
            os.environ["SSM_METARL_NATIVE"] = old
        native._library.cache_clear()


def run_sb3(seed: int, max_steps: int) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = sb3_vec_env("CartPole-v1", n_envs=8, seed=seed, vec_env_cls=DummyVecEnv)

    def linear(v: float):
        return lambda progress: progress * v

    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gae_lambda=0.8,
        gamma=0.98,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
        verbose=0,
    )

    class Track(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.steps: list[int] = []
            self.hit: dict[str, float] = {}
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
                    self.steps.append(int(self.num_timesteps))
            if len(self.returns) >= 100 and np.mean(self.returns[-100:]) >= TARGET and not self.hit:
                self.hit = {"steps": self.num_timesteps, "seconds": time.perf_counter() - self.t0}
                return False
            return True

    track = Track()
    t0 = time.perf_counter()
    model.learn(total_timesteps=max_steps, callback=track)
    elapsed = time.perf_counter() - t0
    torch.set_num_threads(1)
    return {
        "steps_to_475": track.hit.get("steps"),
        "seconds_to_475": track.hit.get("seconds"),
        "sps": model.num_timesteps / elapsed,
        "curve": _curve(track.steps, track.returns),
    }


def recurrent_ppo_sps(steps: int) -> float:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env as sb3_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = sb3_vec_env("CartPole-v1", n_envs=8, seed=0, vec_env_cls=DummyVecEnv)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, n_epochs=10, seed=0, device="cpu")
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    torch.set_num_threads(1)
    return model.num_timesteps / (time.perf_counter() - t0)


def raw_env_sps(seconds: float = 3.0) -> float:
    envs = make_vec_env("CartPole-v1", 8, seed=0)
    envs.action_space.seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(envs.action_space.sample())
        n += 8
    envs.close()
    return n / (time.perf_counter() - t0)


def _curve(steps: list[int], returns: list[float], window: int = 100) -> list[list[float]]:
    """(env step, mean of the last `window` returns) every 10 episodes, for the plot."""
    r = np.asarray(returns, dtype=float)
    return [[int(steps[i]), float(r[max(0, i - window + 1) : i + 1].mean())] for i in range(0, len(r), 10)]


def _median(xs: list[float | None]) -> float | None:
    """Median over seeds; an unreached target counts as +inf (so a majority must reach it)."""
    vals = [x if x is not None else float("inf") for x in xs]
    m = statistics.median(vals)
    return None if m == float("inf") else m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--max-steps", type=int, default=300_000)
    parser.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 peers")
    parser.add_argument(
        "--python-scan",
        action="store_true",
        help="also run ours-ssm with the Python scan kernels (ours-ssm-python-scan), interleaved, to measure "
        "what the native kernel buys",
    )
    parser.add_argument("--recurrent-ppo-steps", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help="write results/ppo_cartpole_quick.*")
    parser.add_argument(
        "--name", default=None, help="results/<name>.{json,md,png} (default: ppo_cartpole[_quick])"
    )
    args = start_run(parser)
    torch.set_num_threads(1)

    methods = [f"ours-{m}" for m in args.models] + ([] if args.no_sb3 else ["sb3-ppo-mlp"])
    if args.python_scan:
        if "ours-ssm" not in methods:
            parser.error("--python-scan compares against ours-ssm: include ssm in --models")
        methods.insert(methods.index("ours-ssm") + 1, "ours-ssm-python-scan")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    env_sps = [raw_env_sps()]
    for seed in args.seeds:
        for method in methods:
            t0 = time.perf_counter()
            if method == "sb3-ppo-mlp":
                out = run_sb3(seed, args.max_steps)
            elif method == "ours-ssm-python-scan":
                out = run_ours("ssm", seed, args.max_steps, native_scan=False)
            else:
                out = run_ours(method.removeprefix("ours-"), seed, args.max_steps)
            out["seed"] = seed
            runs[method].append(out)
            print(
                f"{method} seed {seed}: steps {out['steps_to_475']} seconds {out['seconds_to_475']} "
                f"sps {out['sps']:.0f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        env_sps.append(raw_env_sps())
    rppo = None if args.no_sb3 else recurrent_ppo_sps(args.recurrent_ppo_steps)

    rows = []
    for method, rs in runs.items():
        rows.append(
            {
                "name": method,
                "steps_to_475_median": _median([r["steps_to_475"] for r in rs]),
                "seconds_to_475_median": _median([r["seconds_to_475"] for r in rs]),
                "steps_to_475": [r["steps_to_475"] for r in rs],
                "seconds_to_475": [r["seconds_to_475"] for r in rs],
                "reached": sum(r["steps_to_475"] is not None for r in rs),
                "sps_median": statistics.median(r["sps"] for r in rs),
                "sps": [r["sps"] for r in rs],
                "curves": [r["curve"] for r in rs],
            }
        )
    by = {r["name"]: r for r in rows}
    ssm = by.get("ours-ssm")
    headline: dict[str, Any] = {}
    if ssm is not None:
        headline["ssm_steps_to_475"] = ssm["steps_to_475_median"]
        headline["ssm_seconds_to_475"] = ssm["seconds_to_475_median"]
        if "ours-mlp" in by:
            headline["ssm_sps_over_mlp_sps"] = ssm["sps_median"] / by["ours-mlp"]["sps_median"]
        if rppo is not None:
            headline["ssm_sps_over_recurrentppo_sps"] = ssm["sps_median"] / rppo
        if "ours-ssm-python-scan" in by:
            headline["ssm_sps_native_over_python_scan"] = (
                ssm["sps_median"] / by["ours-ssm-python-scan"]["sps_median"]
            )
        if "sb3-ppo-mlp" in by:
            sb3 = by["sb3-ppo-mlp"]
            headline["sb3_ppo_steps_to_475"] = sb3["steps_to_475_median"]
            if ssm["seconds_to_475_median"] and sb3["seconds_to_475_median"]:
                headline["ssm_seconds_over_sb3_seconds"] = (
                    ssm["seconds_to_475_median"] / sb3["seconds_to_475_median"]
                )
    payload = {
        "headline": headline,
        "rows": rows,
        "recurrent_ppo_lstm_sps": rppo,
        "raw_env_sps": env_sps,
        "config": {
            "env": "CartPole-v1",
            "target": "mean of the last 100 training episodes >= 475 (runs stop there)",
            "max_steps": args.max_steps,
            "ours": recipe("ppo", "CartPole-v1").to_dict(),
            "sb3": "PPO MlpPolicy, 8 envs, n_steps 32, batch 256, 20 epochs, lr 1e-3 linear, clip 0.2 linear, "
            "gae_lambda 0.8, gamma 0.98 (RL Zoo)",
            "recurrent_ppo": f"sb3-contrib RecurrentPPO MlpLstmPolicy, 8 envs, n_steps 32, {args.recurrent_ppo_steps} steps",
        },
        "seeds": args.seeds,
        **provenance(),
    }
    table = markdown_table(
        ["method", "reached 475", "median steps to 475", "median seconds to 475", "median train steps/s"],
        [
            [
                r["name"],
                f"{r['reached']}/{len(args.seeds)}",
                r["steps_to_475_median"] or "not reached",
                r["seconds_to_475_median"] or "not reached",
                r["sps_median"],
            ]
            for r in rows
        ],
    )
    extra = f"\n\nsb3-contrib RecurrentPPO (LSTM): {rppo:.0f} steps/s" if rppo else ""
    md = (
        f"## PPO on CartPole-v1 (sustained 475 = mean of the last 100 episodes)\n\n{table}{extra}\n\n"
        f"Raw SyncVectorEnv(8) random-action throughput: {statistics.median(env_sps):.0f} steps/s.\n"
        f"Headline: {headline}\n\nCommand: `{command_line()}`; seeds {args.seeds}; {machine_info()['cpu']}."
    )
    name = args.name or ("ppo_cartpole_quick" if args.quick else "ppo_cartpole")
    write_results(name, payload, md)
    _plot(rows, name)
    print(md)


def _plot(rows: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _common import RESULTS_DIR

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(rows):
        for j, curve in enumerate(r["curves"]):
            if curve:
                xs, ys = zip(*curve)
                ax.plot(xs, ys, color=f"C{i}", alpha=0.8, label=r["name"] if j == 0 else None)
    ax.axhline(TARGET, color="k", ls="--", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return, last 100 episodes")
    ax.set_title("PPO on CartPole-v1 (runs stop at sustained 475)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
