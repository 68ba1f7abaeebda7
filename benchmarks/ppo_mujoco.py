"""PPO on MuJoCo (HalfCheetah, Ant, Humanoid) with the ssm and mlp policies, and SB3 PPO with RL Zoo's settings.

    python benchmarks/ppo_mujoco.py                                        # HalfCheetah-v5, ssm + mlp + sb3, 1M
    python benchmarks/ppo_mujoco.py --envs Ant-v5 Humanoid-v5 --steps 300000 --jobs 2 \
        --merge results/ppo_mujoco.json                                    # add two envs to the table

"Return at N" is the mean of the last 20 training episodes (up to 1000 steps each, stochastic policy, raw
reward) when N env steps have been collected; for our policies the final deterministic and stochastic
evaluations (10 seeded episodes each) are reported beside it. Ours: the continuous-control recipe
(``recipe("ppo", env)``) with the model kind swapped, one layer for every kind (``recipe("ppo", env, "mlp")``
would give the mlp two). ``sb3``: Stable-Baselines3 PPO (MlpPolicy) with RL Zoo's hyper-parameters for the env
(:data:`ZOO`, from ``hyperparams/ppo.yml`` of DLR-RM/rl-baselines3-zoo, written for the -v3 envs; VecNormalize
of observations and rewards, as the zoo's ``normalize: true``), one env, its raw episode returns from the
Monitor wrapper; an env without a zoo entry stops the run before it starts. Runs go round-robin (seed, env,
model), so machine load hits every model alike. ``--merge``
joins earlier results files (a run with the same env, model, seed and budget is replaced). Writes
results/<name>.{json,md,png} (``--name``, default ``ppo_mujoco``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections import deque
from typing import Any

from _common import (
    RESULTS_DIR,
    add_merge_arguments,
    command_line,
    machine_info,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

CHECKPOINTS = (300_000, 1_000_000)
WINDOW = 20  # training episodes in a "return at N"

_ZOO_NET = {"log_std_init": -2, "ortho_init": False, "activation_fn": "relu", "net_arch": [256, 256]}
ZOO: dict[str, dict[str, Any]] = {
    # tuned ("# Tuned / 10 mujoco envs" in the zoo's ppo.yml, HalfCheetah-v3)
    "HalfCheetah": {
        "n_steps": 512,
        "batch_size": 64,
        "gamma": 0.98,
        "learning_rate": 2.0633e-05,
        "ent_coef": 0.000401762,
        "clip_range": 0.1,
        "n_epochs": 20,
        "gae_lambda": 0.92,
        "max_grad_norm": 0.8,
        "vf_coef": 0.58096,
        "policy_kwargs": _ZOO_NET,
    },
    # Ant-v3's entry is the zoo's mujoco defaults (normalize, 1M steps): SB3's PPO defaults
    "Ant": {},
    # tuned (Humanoid-v3)
    "Humanoid": {
        "n_steps": 512,
        "batch_size": 256,
        "gamma": 0.95,
        "learning_rate": 3.56987e-05,
        "ent_coef": 0.00238306,
        "clip_range": 0.3,
        "n_epochs": 5,
        "gae_lambda": 0.9,
        "max_grad_norm": 2.0,
        "vf_coef": 0.431892,
        "policy_kwargs": _ZOO_NET,
    },
}
"""RL Zoo's PPO hyper-parameters by env name (one env, ``normalize: true``)."""


def zoo_settings(env_id: str) -> dict[str, Any]:
    """The :data:`ZOO` entry of ``env_id`` (a copy); an env without one raises ``SystemExit`` naming those that
    have one, so that no SB3 row is labelled with the zoo's settings it did not use."""
    name = env_id.split("-")[0]
    if name not in ZOO:
        raise SystemExit(f"no RL Zoo PPO settings for {env_id} in ppo_mujoco.ZOO (known: {', '.join(ZOO)})")
    return dict(ZOO[name])


def _checkpoints(rows: list[tuple[int, float | None, float]], steps: int) -> dict[str, dict[str, float]]:
    """``{N: {return_mean20, seconds}}`` at each checkpoint N <= steps, from (global step, return, seconds) rows."""
    at = {}
    for n in CHECKPOINTS:
        before = [r for r in rows if r[0] <= n]
        if n <= steps and before and before[-1][1] is not None:
            at[str(n)] = {"return_mean20": before[-1][1], "seconds": before[-1][2]}
    return at


def run_ours(env_id: str, kind: str, seed: int, steps: int) -> dict[str, Any]:
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    # the continuous-control recipe with the kind swapped in, one layer for every kind (mlp included)
    cfg = recipe("ppo", env_id).replace(
        model__kind=kind, run__seed=seed, run__progress=False, total_steps=steps
    )
    result = train_ppo(cfg)
    rows = [r for r in result.metrics if "sps" in r]
    return {
        "at": _checkpoints([(r["global_step"], r["return_mean20"], r["seconds"]) for r in rows], steps),
        "final_eval": result.final_eval,
        "sps": rows[-1]["sps"],
        "curve": [[r["global_step"], r["return_mean20"]] for r in rows[::4]],
    }


def run_sb3(env_id: str, seed: int, steps: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    params = zoo_settings(env_id)
    if "policy_kwargs" in params:
        kw = dict(params["policy_kwargs"])
        kw["activation_fn"] = torch.nn.ReLU
        kw["net_arch"] = {"pi": kw["net_arch"], "vf": kw["net_arch"]}
        params["policy_kwargs"] = kw
    env = sb3_vec_env(env_id, n_envs=1, seed=seed, vec_env_cls=DummyVecEnv)
    env = VecNormalize(env, gamma=params.get("gamma", 0.99))  # the zoo's normalize: true
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **params)
    t0 = time.perf_counter()

    class Track(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.recent: deque[float] = deque(maxlen=WINDOW)
            self.rows: list[tuple[int, float | None, float]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # the Monitor's raw return, under VecNormalize
                    self.recent.append(float(info["episode"]["r"]))
            if self.num_timesteps % 2048 == 0 or self.num_timesteps in CHECKPOINTS:
                mean = statistics.fmean(self.recent) if self.recent else None
                self.rows.append((int(self.num_timesteps), mean, time.perf_counter() - t0))
            return True

    track = Track()
    model.learn(total_timesteps=steps, callback=track)
    return {
        "at": _checkpoints(track.rows, steps),
        "final_eval": None,
        "sps": model.num_timesteps / (time.perf_counter() - t0),
        "curve": [[n, r] for n, r, _ in track.rows[::4]],
        "hyperparameters": {k: str(v) for k, v in params.items()},
    }


def run_one(job: tuple[str, str, int, int]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    env_id, kind, seed, steps = job
    t0 = time.perf_counter()
    out = run_sb3(env_id, seed, steps) if kind == "sb3" else run_ours(env_id, kind, seed, steps)
    return {
        "env": env_id,
        "model": kind,
        "seed": seed,
        "steps": steps,
        **out,
        "seconds": time.perf_counter() - t0,
    }


def _env_key(env_id: str) -> str:
    return env_id.split("-")[0].lower()


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(runs: list[dict[str, Any]], envs: list[str], models: list[str]) -> list[dict[str, Any]]:
    """One row per (env, model) that has runs: per-seed and median return at each checkpoint, steps/s."""
    rows = []
    for env_id in envs:
        for kind in models:
            rs = sorted(
                (r for r in runs if r["env"] == env_id and r["model"] == kind), key=lambda r: r["seed"]
            )
            if not rs:
                continue
            row: dict[str, Any] = {"env": env_id, "name": kind, "seeds": [r["seed"] for r in rs]}
            for n in CHECKPOINTS:
                vals = [r["at"][str(n)]["return_mean20"] for r in rs if str(n) in r["at"]]
                if vals:
                    row[f"return_{n}"] = vals
                    row[f"return_{n}_median"] = statistics.median(vals)
                    row[f"seconds_{n}_median"] = statistics.median(
                        r["at"][str(n)]["seconds"] for r in rs if str(n) in r["at"]
                    )
            evals = [r["final_eval"] for r in rs if r.get("final_eval")]
            row["eval_det"] = [e["eval_return_det"] for e in evals]
            row["eval_stoch"] = [e["eval_return_stoch"] for e in evals]
            row["sps_median"] = statistics.median(r["sps"] for r in rs)
            row["curves"] = [r["curve"] for r in rs]
            rows.append(row)
    return rows


def headline_of(rows: list[dict[str, Any]], envs: list[str]) -> dict[str, Any]:
    """``<env>_<model>_return_300k`` / ``_1m`` (median over seeds; None where the budget stopped short)."""
    headline: dict[str, Any] = {}
    for env_id in envs:
        for row in (r for r in rows if r["env"] == env_id):
            for n, tag in zip(CHECKPOINTS, ("300k", "1m")):
                key = f"{_env_key(env_id)}_{row['name']}_return_{tag}"
                if row["name"] == "ssm" or f"return_{n}_median" in row:
                    headline[key] = row.get(f"return_{n}_median")
    return headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", "--env", nargs="+", default=["HalfCheetah-v5"], help="Gymnasium MuJoCo ids")
    parser.add_argument(
        "--models", nargs="+", default=["ssm", "mlp", "sb3"], help="our model kinds, and sb3 (RL Zoo's PPO)"
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: only --merge")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    add_merge_arguments(parser, "ppo_mujoco")
    args = start_run(parser)

    if "sb3" in args.models:
        for env_id in args.envs:
            zoo_settings(env_id)  # fail before any training, not at the env's first sb3 run
    jobs = [(e, m, s, args.steps) for s in args.seeds for e in args.envs for m in args.models]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = list(pool.imap(run_one, jobs, chunksize=1))
    else:
        runs = [run_one(j) for j in jobs]
    minutes = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(
        runs, args.merge, key=lambda r: (r["env"], r["model"], r["seed"], r["steps"])
    )
    if not runs:
        raise SystemExit("nothing to summarise: give --seeds to run, or --merge earlier results files")
    envs = list(dict.fromkeys([*(r["env"] for r in runs)]))
    models = list(dict.fromkeys([*args.models, *(r["model"] for r in runs)]))
    rows = summarize(runs, envs, models)
    payload = {
        "headline": headline_of(rows, envs),
        "rows": rows,
        "runs": runs,
        "config": {
            "envs": envs,
            "steps": args.steps,
            "definition": f"mean of the last {WINDOW} training episodes",
            "sb3": "Stable-Baselines3 PPO MlpPolicy with RL Zoo's ppo.yml settings for the env (ZOO in the "
            "script), one env, VecNormalize",
        },
        "seeds": sorted({r["seed"] for r in runs}),
        "minutes_total": minutes,
        "merged_from": merged_from,
        **provenance(),
    }

    def cell(r: dict[str, Any], n: int) -> str:
        med = r.get(f"return_{n}_median")
        if med is None:
            return "-"
        return f"{med:.0f} ({', '.join(f'{v:.0f}' for v in r[f'return_{n}'])})"

    table_rows = [
        [
            r["env"],
            r["name"],
            cell(r, CHECKPOINTS[0]),
            cell(r, CHECKPOINTS[1]),
            f"{_median(r['eval_det']):.0f} / {_median(r['eval_stoch']):.0f}" if r["eval_det"] else "-",
            f"{r['sps_median']:.0f}",
        ]
        for r in rows
    ]
    table = markdown_table(
        [
            "env",
            "model",
            "median return @300k (per seed)",
            "median return @1M (per seed)",
            "final eval det / stoch (median)",
            "steps/s",
        ],
        table_rows,
    )
    md = (
        f"## PPO on MuJoCo (return = mean of the last {WINDOW} training episodes, raw reward)\n\n"
        f"{table}\n\nCommand: `{command_line()}` (this invocation: seeds {args.seeds}, {args.steps} env "
        f"steps, {minutes:.0f} minutes; {machine_info()['cpu']}). sb3: Stable-Baselines3 PPO with RL Zoo's settings "
        f"for the env." + merged_markdown(merged_from)
    )
    write_results(args.name, payload, md)
    _plot(rows, envs, args.name)
    print(md)


def _plot(rows: list[dict[str, Any]], envs: list[str], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    models = list(dict.fromkeys(r["name"] for r in rows))
    for ax, env_id in zip(axes[0], envs):
        for r in (r for r in rows if r["env"] == env_id):
            color = f"C{models.index(r['name'])}"
            for j, curve in enumerate(r["curves"]):
                pts = [(x, y) for x, y in curve if y is not None]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, color=color, alpha=0.8, label=r["name"] if j == 0 else None)
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"mean return, last {WINDOW} episodes")
        ax.set_title(f"PPO on {env_id}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
