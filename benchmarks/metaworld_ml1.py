"""Meta-World ML1 through Meta-World's own evaluation: our meta-trained policies behind its agent protocol.

    make bench-metaworld                       # builds .venv-metaworld (metaworld pins its own MuJoCo), runs this
    .venv-metaworld/bin/python benchmarks/metaworld_ml1.py --steps 300000 --jobs 2
    .venv-metaworld/bin/python benchmarks/metaworld_ml1.py --envs reach-v3 --algos rl2 --seeds 0 --steps 20000 \
        --num-evals 1 --name metaworld_smoke

For each ML1 env (``reach-v3``, ``push-v3``; ``pick-place-v3`` where CPU allows), algorithm and backbone
and training seed:

1. meta-train on the benchmark's 50 *training* goals (``ssm_metarl.envs.metaworld.ml1_family``, benchmark
   seed 0) for ``--steps`` env steps: RL² (``recipe("rl2", family)``, trials of ``adaptation_episodes +
   evaluation_episodes`` episodes, backbones ``gated_ssm`` (the recipe's) and ``gru``) or MAML
   (``recipe("maml", family)`` with ``inner.episodes = adaptation_episodes``, backbones ``ssm`` and
   ``mlp``); ``random`` (uniform actions, no training) is the floor;
2. hand the policy to ``metaworld.evaluation.metalearning_evaluation`` on ``Meta-World/ML1-test`` (the 50
   held-out goals; ``meta_batch_size`` sub-envs, ``num_evals`` rounds of fresh goals), through
   :class:`ssm_metarl.adapt.agents.GradientAgent` (MAML: one inner step per sub-env on its adaptation
   episodes) or :class:`ssm_metarl.adapt.agents.InContextAgent` (RL²: the state carries over; the eval
   envs have ``recurrent_info_in_obs=True`` so the agent can read the previous reward);
3. the same agent through :func:`ssm_metarl.adapt.agents.run_protocol` on the same envs and rounds of goals,
   which scores every sub-env's evaluation episodes, before (no adaptation data) and after one adaptation
   step. Meta-World's ``evaluation()`` pools the episodes of all sub-envs with one task name (all of ML1's)
   and stops at the first ``evaluation_episodes`` to end; with termination on success those are mostly the
   successes, so its figure reads higher. Both are reported.

An episode succeeds when its last step reports ``info["success"]`` (evaluation episodes end on success).
Writes results/<name>.{json,md}. The headline names one configuration fixed before any run, RL² with the
recipe's backbone (``PRIMARY``): ``<env>_success_after_adaptation`` (Meta-World's figure) and
``<env>_success_after_adaptation_every_episode`` (every sub-env's episodes), means over training seeds
with 95% t-intervals; every row is in ``rows``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from _common import (
    add_merge_arguments,
    backbone_label,
    backbone_record,
    ci_cell,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

BENCHMARK_SEED = 0
BACKBONES = {"rl2": ("gated_ssm", "gru"), "maml": ("ssm", "mlp"), "random": ("none",)}
"""Backbones per algorithm; ``random`` is the floor: uniform actions, no training."""


class RandomAgent:
    """Uniformly random actions behind the protocol (nothing to adapt)."""

    def __init__(self, num_envs: int, act_dim: int, seed: int) -> None:
        self.num_envs, self.act_dim, self.rng = num_envs, act_dim, np.random.default_rng(seed)

    def init(self) -> None: ...

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.eval_action(observations), {}

    def step(self, timestep: Any) -> None: ...

    def adapt(self) -> None: ...

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (self.num_envs, self.act_dim))

    def reset(self, env_mask: np.ndarray) -> None: ...


def _ci(xs: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of a t-interval (95%) over seeds; None for a single seed."""
    from ssm_metarl.results import mean_ci

    iv = mean_ci(np.asarray(xs, dtype=float))
    return iv.mean, iv.half


def _config(algo: str, family: str, kind: str, seed: int, args: argparse.Namespace) -> Any:
    from ssm_metarl.recipes import maml_recipe, rl2_recipe

    if algo == "rl2":
        k = args.adaptation_episodes + args.evaluation_episodes
        return rl2_recipe(family, kind, trial_episodes=k).replace(
            total_steps=args.steps, run__seed=seed, run__progress=False, eval_episodes=1
        )
    return maml_recipe(family, kind).replace(
        inner__episodes=args.adaptation_episodes,
        meta_batch_size=args.meta_batch,
        meta_iterations=10**6,
        run__seed=seed,
        run__progress=False,
    )


def _train(algo: str, cfg: Any, steps: int) -> tuple[Any, int, float]:
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.meta.rl2 import train_rl2

    t0 = time.perf_counter()
    if algo == "rl2":
        result = train_rl2(cfg)
        return result.policy, int(cfg.total_steps), time.perf_counter() - t0
    result = train_maml(cfg, callback=lambda row: row["env_steps"] >= steps)
    return result.policy, int(result.env_steps), time.perf_counter() - t0


def _agent(algo: str, policy: Any, cfg: Any, num_envs: int) -> Any:
    from ssm_metarl.adapt.agents import GradientAgent, InContextAgent
    from ssm_metarl.adapt.standard import StandardAdapter
    from ssm_metarl.envs.metaworld import split_recurrent_obs

    if algo == "rl2":  # the trial observation is [obs, action, reward, done]
        act_dim = policy.action_shape[0]
        split = split_recurrent_obs(policy.obs_dim - act_dim - 2, act_dim)
        return InContextAgent(policy, num_envs, split_obs=split)
    return GradientAgent(StandardAdapter(policy, cfg.inner.replace(steps=1)), num_envs)


def _eval_envs(env_name: str, algo: str, meta_batch: int) -> Any:
    import gymnasium as gym

    return gym.make_vec(
        "Meta-World/ML1-test",
        env_name=env_name,
        seed=BENCHMARK_SEED,
        meta_batch_size=meta_batch,
        recurrent_info_in_obs=algo == "rl2",
    )


def run_one(job: tuple[Any, ...]) -> dict[str, Any]:
    env_name, algo, kind, seed, args = job
    import torch
    from metaworld.evaluation import metalearning_evaluation

    from ssm_metarl.adapt.agents import run_protocol
    from ssm_metarl.envs.metaworld import ml1_family
    from ssm_metarl.seeding import seed_everything

    torch.set_num_threads(1)
    seed_everything(seed)
    family = ml1_family(env_name, BENCHMARK_SEED).name
    if algo == "random":
        cfg, policy, env_steps, train_s = None, None, 0, None
    else:
        cfg = _config(algo, family, kind, seed, args)
        policy, env_steps, train_s = _train(algo, cfg, args.steps)
        policy.eval()

    t0 = time.perf_counter()
    envs = _eval_envs(env_name, algo, args.meta_batch)
    envs.action_space.seed(seed)
    agent = (
        RandomAgent(envs.num_envs, envs.single_action_space.shape[0], seed)
        if algo == "random"
        else _agent(algo, policy, cfg, envs.num_envs)
    )
    # Meta-World's own figure: metalearning_evaluation (its evaluation() pools the sub-envs' episodes)
    after, mean_return, _ = metalearning_evaluation(
        agent,
        envs,
        num_evals=args.num_evals,
        adaptation_steps=1,
        adaptation_episodes=args.adaptation_episodes,
        evaluation_episodes=args.evaluation_episodes,
    )
    mw_seconds = time.perf_counter() - t0
    # every sub-env's evaluation episodes, before (no adaptation data) and after one adaptation step,
    # on the same held-out goals per round
    envs.call("toggle_sample_tasks_on_reset", False)

    def phase(name: str) -> None:
        envs.call("toggle_terminate_on_success", name == "evaluation")

    per_env: dict[str, list[Any]] = {"before": [], "after": [], "return_before": [], "return_after": []}
    for i in range(args.num_evals):
        envs.call("sample_tasks")
        for key, steps in (("before", 0), ("after", 1)):
            res = run_protocol(
                agent, envs, args.adaptation_episodes, args.evaluation_episodes, steps, seed + 1000 * i, phase
            )
            per_env[key].append(float(np.mean(res.success)))
            per_env[f"return_{key}"].append(float(np.mean(res.returns)))
    envs.close()
    row = {
        "env": env_name,
        "algo": algo,
        "backbone": kind,
        "model": None if cfg is None else backbone_record(cfg.model),
        "seed": seed,
        "env_steps": env_steps,
        "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - t0,
        "metaworld_eval_seconds": mw_seconds,
        "steps_per_second": env_steps / train_s if env_steps else None,
        "metaworld_success_after": float(after),
        "metaworld_return_after": float(mean_return),
        "success_before": float(np.mean(per_env["before"])),
        "success_after": float(np.mean(per_env["after"])),
        "return_before": float(np.mean(per_env["return_before"])),
        "return_after": float(np.mean(per_env["return_after"])),
    }
    print(
        f"{env_name} {algo} {kind} seed {seed}: success {row['success_before']:.2f} -> {row['success_after']:.2f} "
        f"(Meta-World's evaluation: {row['metaworld_success_after']:.2f}) "
        f"({env_steps} steps, {(train_s or 0.0) / 60:.1f} min)",
        flush=True,
    )
    return row


PRIMARY = ("rl2", "gated_ssm")
"""The configuration the headline names, fixed before any run: RL² with the recipe's backbone."""

_RECORDED = {
    "4f928a6feff63d5a17b80366ece294a604aae5fd": {
        "rl2": {
            "gated_ssm": {"kind": "gated_ssm", "layers": 2, "complex": False, "ring_min": 0.1},
            "gru": {"kind": "gru", "layers": 1, "complex": False},
        }
    }
}
"""The ``model`` records of runs from before rows recorded it, where their commit tells it: at 4f928a6 the RL²
gated ssm had two layers, ``ring_min=0.1`` and 64 state channels, the gru no settings of its own
(``ssm_metarl/recipes.py`` of that commit)."""
EARLIER = "earlier recipe"


def model_label(r: dict[str, Any]) -> str:
    """The backbone a run trained, as recorded (``_common.backbone_label``); a run from before the record
    whose commit is not in :data:`_RECORDED` is ``"<kind>, earlier recipe"``: its settings may differ from
    today's (the RL² gated ssm had no ``ring_min`` at 645da0f), so it is never pooled with recorded runs."""
    if r["algo"] == "random":
        return "none"
    if r.get("model") is not None:
        return backbone_label(r["model"])
    known = _RECORDED.get(r.get("commit") or "", {}).get(r["algo"], {}).get(r["backbone"])
    return f"{r['backbone']}, {EARLIER}" if known is None else backbone_label(known)


def primary_label() -> str:
    """Today's RL² recipe backbone for :data:`PRIMARY` (``recipes.RL2_BACKBONES``), as rows label it."""
    from ssm_metarl.config import ModelConfig
    from ssm_metarl.recipes import RL2_BACKBONES

    model = ModelConfig(kind=PRIMARY[1]).replace(**RL2_BACKBONES.get(PRIMARY[1], {}))
    return backbone_label(backbone_record(model))


def run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two runs the same measurement (``--merge`` keeps the later one)."""
    return r["env"], r["algo"], model_label(r), r["seed"], r["env_steps"] // 10_000


def summarise(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["env"], r["algo"], r["backbone"], model_label(r)), []).append(r)
    rows = []
    for (env, algo, kind, label), rs in sorted(groups.items()):
        row: dict[str, Any] = {
            "env": env,
            "algo": algo,
            "backbone": kind,
            "model": label,
            "seeds": sorted(r["seed"] for r in rs),
        }
        for key in ("success_before", "success_after", "metaworld_success_after"):
            row[key], row[f"{key}_ci"] = _ci([r[key] for r in rs])
        row["env_steps"] = int(np.mean([r["env_steps"] for r in rs]))
        trained = [r for r in rs if r["env_steps"]]
        row["train_minutes"] = float(np.mean([r["train_seconds"] for r in trained]) / 60) if trained else None
        row["steps_per_second"] = (
            float(np.mean([r["steps_per_second"] for r in trained])) if trained else None
        )
        rows.append(row)
    headline: dict[str, Any] = {"primary": f"{PRIMARY[0]} {primary_label()}"}
    for r in rows:
        key = r["env"].removesuffix("-v3").replace("-", "_")
        if r["model"].endswith(EARLIER):  # kept in the table, apart; the headline names today's recipes
            headline[f"{key}_{r['algo']}_{r['backbone']}_earlier_recipe_success_after"] = r["success_after"]
            continue
        if (r["algo"], r["backbone"]) == PRIMARY and r["model"] != primary_label():
            continue  # a recorded earlier RL² recipe: in the table only
        if (r["algo"], r["backbone"]) == PRIMARY:
            headline[f"{key}_success_after_adaptation"] = r["metaworld_success_after"]
            headline[f"{key}_success_after_adaptation_ci"] = r["metaworld_success_after_ci"]
            headline[f"{key}_success_after_adaptation_every_episode"] = r["success_after"]
            headline[f"{key}_success_after_adaptation_every_episode_ci"] = r["success_after_ci"]
            headline[f"{key}_success_before_adaptation_every_episode"] = r["success_before"]
        headline[f"{key}_{r['algo']}_{r['backbone']}_success_after"] = r["success_after"]
    return rows, headline


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, minutes: float) -> str:
    table = markdown_table(
        [
            "env",
            "algorithm",
            "backbone",
            "seeds",
            "success before",
            "success after",
            "Meta-World's figure after",
            "env steps",
            "train min",
            "steps/s",
        ],
        [
            [
                r["env"],
                r["algo"],
                r["model"],
                len(r["seeds"]),
                ci_cell(r["success_before"], r["success_before_ci"], 2),
                ci_cell(r["success_after"], r["success_after_ci"], 2),
                ci_cell(r["metaworld_success_after"], r["metaworld_success_after_ci"], 2),
                r["env_steps"],
                "" if r["train_minutes"] is None else f"{r['train_minutes']:.1f}",
                "" if r["steps_per_second"] is None else f"{r['steps_per_second']:.0f}",
            ]
            for r in rows
        ],
    )
    return (
        "# Meta-World ML1 (held-out goals)\n\n"
        f"Meta-trained on the 50 training goals (benchmark seed {BENCHMARK_SEED}) for about "
        f"{args.steps:,} env steps per run, then evaluated on `Meta-World/ML1-test` ({args.meta_batch} "
        f"sub-envs, {args.num_evals} rounds of fresh held-out goals, {args.adaptation_episodes} adaptation "
        f"episodes, one adaptation step, {args.evaluation_episodes} evaluation episodes that end on success). "
        "'Success before / after' scores every sub-env's evaluation episodes (`ssm_metarl.adapt.agents."
        "run_protocol`; before: no adaptation data, so for RL² the evaluation episodes are a trial's first, "
        "within which it still adapts in context). 'Meta-World's figure' is what "
        "`metaworld.evaluation.metalearning_evaluation` returns for the same agent: its `evaluation()` pools "
        "the sub-envs of one task name (all of them in ML1) and stops at the first episodes to end, which "
        "with termination on success are the successful ones, so it reads higher. 95% t-intervals over "
        "training seeds. 'Backbone' is the model a run trained as its row records it; runs from before rows "
        "recorded it, whose recipe may differ from today's, are the '<kind>, earlier recipe' rows.\n\n"
        f"{table}\n\n"
        f"{minutes:.0f} minutes for this invocation's runs. The published ML1 figures come from millions of env steps per run "
        "(Meta-World+ code: 2M; the original paper's ProMP runs: more); see the README."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["reach-v3", "push-v3"])
    parser.add_argument("--algos", nargs="+", choices=sorted(BACKBONES), default=["rl2", "maml", "random"])
    parser.add_argument("--backbones", nargs="+", default=None, help="default: per algorithm, see BACKBONES")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: only --merge")
    parser.add_argument("--steps", type=int, default=300_000, help="meta-training env steps per run")
    parser.add_argument(
        "--meta-batch", type=int, default=10, help="eval sub-envs (divides 50); MAML tasks/it"
    )
    parser.add_argument("--num-evals", type=int, default=3)
    parser.add_argument("--adaptation-episodes", type=int, default=2)
    parser.add_argument("--evaluation-episodes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    add_merge_arguments(parser, "metaworld_ml1")
    args = start_run(parser)
    if 50 % args.meta_batch:
        parser.error("--meta-batch must divide ML1's 50 test goals (Meta-World's vector env asserts it)")

    jobs = [
        (env, algo, kind, seed, args)
        for seed in args.seeds
        for env in args.envs
        for algo in args.algos
        for kind in (args.backbones or BACKBONES[algo])
    ]
    t0 = time.perf_counter()
    if args.jobs > 1 and jobs:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    else:
        runs = [run_one(j) for j in jobs]
    minutes = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(
        runs,
        args.merge,
        key=run_key,
    )
    rows, headline = summarise(runs)
    headline["minutes"] = minutes + sum(m["minutes_total"] or 0.0 for m in merged_from)
    protocol = {
        "benchmark_seed": BENCHMARK_SEED,
        "meta_batch_size": args.meta_batch,
        "num_evals": args.num_evals,
        "adaptation_steps": 1,
        "adaptation_episodes": args.adaptation_episodes,
        "evaluation_episodes": args.evaluation_episodes,
        "steps": args.steps,
    }
    payload = {
        **provenance(),
        "headline": headline,
        "protocol": protocol,
        "seeds": args.seeds,
        "rows": rows,
        "runs": runs,
        "minutes_total": minutes,
        "merged_from": merged_from,
    }
    md = markdown(rows, args, minutes) + merged_markdown(merged_from)
    json_path, _ = write_results(args.name, payload, md)
    print(md)
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
