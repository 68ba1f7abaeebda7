"""Meta-RL on 2D navigation (the MAML paper's task): MAML vs multi-task PPO vs in-context RL².

    python benchmarks/meta_navigation.py                                 # the full protocol, 3 seeds
    python benchmarks/meta_navigation.py --maml-iterations 60 --rl2-steps 600000 --jobs 2
    python benchmarks/meta_navigation.py --rl2-models lstm --maml-models --no-multitask \
        --merge benchmarks/results/meta_navigation.json     # add rows to the committed results

MAML (mlp and ssm) and the multi-task baseline (same loop, no inner step) are trained with
``recipe("maml", "navigation-2d", model)`` and evaluated on the 20 held-out test goals with the paper's test
protocol: 40 trajectories per step, step size ``inner.lr`` then ``inner.later_lr`` (half of it), returns
after 0..3 steps. RL² agents (ssm, gru, lstm, transformer) are trained with ``recipe("rl2", ...)`` on
trials of 4 episodes and report the return of each episode of a trial on the same held-out goals, with no
gradient step. Intervals are 95% t-intervals over seeds (none, and ``null`` in the JSON, for a single
seed). A row is one (method, model, training budget, MAML recipe); the headline's MAML figures are the
best model under today's maml recipe for it (earlier recipes merged from older files are shown for
comparison) and, as ``maml_ssm_*``, the ssm's row under its recipe,
its in-context figures the row of the RL² recipe's SSM backbone (``recipes.RL2_BACKBONES``) with the most env
steps, its speed ratios the ratio of training minutes to the ssm's with the same env steps, taken within each
invocation that trained both (a grid run in pieces, one per seed, gives one ratio per piece; the headline is
their median, ``speed_ratios_per_invocation`` lists them). Writes results/<name>.{json,md,png} (``--name``, default
``meta_navigation``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    add_merge_arguments,
    backbone_label,
    backbone_record,
    ci_cell,
    command_line,
    is_backbone,
    machine_info,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)
from _common import backbone_of as common_backbone_of

FAMILY = "navigation-2d"
EPISODES_PER_TRIAL = 4
PAPER = {"after_1": -11.68, "after_3": -3.3}
SAMPLED_GOALS_SEED = 20_261_207
"""The rng of the goals an RL² selection run is also scored on (``job["sampled_goals"]``): fresh draws from the
training distribution, never the test split. The 20 validation goals happen to have no coordinate beyond
0.445 while a fifth of training goals do, and an RL² policy can fail exactly there (``rl2_recipe.md``)."""
LOST = -20.0
"""An episode-2 return below this on one goal (a distance of 0.2 on average over 100 steps) is a goal the
policy did not find: a good RL² policy scores about -2 there."""
# MAML runs recorded before the "variant" field (commit 9ba510c) used maml_defaults of their day:
LEGACY_VARIANT = {"action_bounds": "tanh", "baseline": "critic", "inner_lr": 1.0}


def lost(episode_2_per_goal: Any) -> np.ndarray:
    """Which goals a policy lost: episode-2 return below :data:`LOST`."""
    return np.asarray(episode_2_per_goal) < LOST


def found_in_episode_1(lengths: Any) -> np.ndarray:
    """Which goals episode 1 reached: its length (I,) below the horizon (an episode ends early only there)."""
    from ssm_metarl.envs.classic import NAV_HORIZON

    return np.asarray(lengths) < NAV_HORIZON


def sampled_goals(n: int) -> list[Any]:
    """The ``n`` draws of :data:`SAMPLED_GOALS_SEED` from the training distribution, less any test goal."""
    from ssm_metarl.envs.tasks import get_family

    dist = get_family(FAMILY)
    test = set(dist.test)
    return [g for g in dist.sample(np.random.default_rng(SAMPLED_GOALS_SEED), n) if g not in test]


def variant_of(r: dict[str, Any]) -> dict[str, Any] | None:
    """The MAML recipe of a gradient-based run (None for RL² runs)."""
    return None if r["kind"] == "rl2" else r.get("variant", LEGACY_VARIANT)


def backbone_of(r: dict[str, Any]) -> dict[str, Any] | None:
    """An RL² run's backbone (:func:`_common.backbone_of`); None for MAML runs."""
    return None if r["kind"] != "rl2" else common_backbone_of(r)


def variant_label(v: dict[str, Any] | None) -> str:
    if v is None:
        return ""
    learned = ", learned step sizes" if v.get("learned_step_sizes") else ""
    return f"; {v['action_bounds']}, {v['baseline']} baseline, inner lr {v['inner_lr']:g}{learned}"


def recipe_variant(cfg: Any) -> dict[str, Any]:
    """The MAML recipe fields a row is labelled by (``learned_step_sizes`` only when set, so rows from before
    the option keep their keys)."""
    v = {"action_bounds": cfg.model.action_bounds, "baseline": cfg.inner.baseline, "inner_lr": cfg.inner.lr}
    return {**v, "learned_step_sizes": True} if cfg.model.learned_step_sizes else v


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.adapt import evaluate_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.envs.trial import rl2_env_id
    from ssm_metarl.meta.maml import train_maml, train_multitask
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
    from ssm_metarl.recipes import recipe

    torch.set_num_threads(1)
    dist = get_family(FAMILY)
    kind, model, seed = job["kind"], job["model"], job["seed"]
    t0 = time.perf_counter()
    if kind in ("maml", "multitask"):
        # the recipe with this backbone (mlp: two layers, others one)
        cfg = recipe("maml", FAMILY, model).replace(
            run__seed=seed, run__progress=False, meta_iterations=job["iterations"]
        )
        cfg = cfg.replace(  # ssm_backbone.py's variants: ModelConfig and AdaptConfig overrides
            model=cfg.model.replace(**job.get("overrides", {})),
            inner=cfg.inner.replace(**job.get("inner", {})),
        )
        result = (train_maml if kind == "maml" else train_multitask)(cfg)
        train_s = time.perf_counter() - t0
        # the paper's test protocol: 40 trajectories per step, the recipe's step size then its later one
        test = cfg.inner.replace(steps=3, episodes=40)
        tasks = dist.validation if job.get("split") == "validation" else dist.test  # validation: to choose
        curve = evaluate_adaptation(result.policy, FAMILY, tasks, test, seeds=(seed,))
        returns = curve.seed_means()[0].tolist()  # after k = 0..3 steps, mean over tasks
        curve_rows = [[r["iteration"], r["return_before"], r["return_after"]] for r in result.metrics]
        variant = recipe_variant(cfg)
        return {
            **job,
            "returns": returns,
            "train_seconds": train_s,
            "env_steps": result.env_steps,
            "curve": curve_rows,
            "variant": variant,
        }
    cfg = recipe("rl2", FAMILY, model).replace(
        env_id=rl2_env_id(FAMILY, EPISODES_PER_TRIAL),
        run__seed=seed,
        run__progress=False,
        total_steps=job["steps"],
    )
    cfg = cfg.replace(model=cfg.model.replace(**job.get("overrides", {})), **job.get("ppo", {}))
    result = train_rl2(cfg)
    train_s = time.perf_counter() - t0
    tasks = dist.validation if job.get("split") == "validation" else dist.test
    per_episode = evaluate_in_context(
        result.policy, FAMILY, tasks, EPISODES_PER_TRIAL, seeds=(10_000 + seed,)
    )
    rows = [r for r in result.metrics if "sps" in r]
    sampled: dict[str, Any] = {}
    if job.get("sampled_goals"):  # selection only: goals drawn from the training distribution
        goals = sampled_goals(job["sampled_goals"])
        ep = evaluate_in_context(result.policy, FAMILY, goals, EPISODES_PER_TRIAL, seeds=(10_000 + seed,))
        per_goal = ep.values[0, :, :, 0]  # (goals, episodes)
        sampled = {
            "returns_sampled": per_goal.mean(axis=0).tolist(),
            "lost_sampled": float(np.mean(lost(per_goal[:, 1]))),  # share of goals lost in episode 2
            "episode_2_per_goal_sampled": per_goal[:, 1].round(3).tolist(),
            # whether episode 1 reached the goal (ended before the horizon): a lost goal never found is a
            # search failure, one found and then missed a memory failure
            "episode_1_found_sampled": found_in_episode_1(ep.env_steps[0, :, 0]).tolist(),
        }
    return {
        **job,
        **sampled,
        "backbone": backbone_record(cfg.model),
        "returns": per_episode.seed_means()[0].tolist(),  # episode 1..4 of a trial, mean over tasks
        "episode_2_per_goal": per_episode.values[0, :, 1, 0].round(3).tolist(),  # where a seed loses goals
        "episode_1_found": found_in_episode_1(per_episode.env_steps[0, :, 0]).tolist(),
        "train_seconds": train_s,
        "env_steps": cfg.total_steps,
        "sps": rows[-1]["sps"] if rows else None,
        "curve": [[r["global_step"], r["return_mean20"]] for r in rows[::2]],
    }


def _ci(values: list[float]) -> tuple[float, float | None]:
    from ssm_metarl.results import mean_ci

    return mean_ci(np.asarray(values))


def run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two runs the same measurement: method, model, seed, training budget and MAML recipe."""
    v = variant_of(r) or backbone_of(r)
    recipe = None if v is None else tuple(sorted(v.items()))
    return r["kind"], r["model"], r["seed"], r.get("steps"), r.get("iterations"), recipe


def speed_ratios(
    runs: list[dict[str, Any]], is_chosen: Callable[[dict[str, Any]], bool]
) -> dict[str, list[float]]:
    """Per RL² model other than the chosen ssm: its median training minutes over the chosen ssm's at equal env
    steps, one figure per invocation that trained both (timings are compared within an invocation only; runs
    whose invocation is unknown are left out)."""
    ratios: dict[str, list[float]] = {}
    for inv in sorted({r.get("invocation") for r in runs if r["kind"] == "rl2"} - {None}):
        rows = summarize([r for r in runs if r["kind"] == "rl2" and r.get("invocation") == inv])
        for r in rows:
            for s in rows:
                if not is_chosen(r) and is_chosen(s) and s["env_steps"] == r["env_steps"]:
                    ratios.setdefault(r["model"], []).append(
                        r["train_minutes_median"] / s["train_minutes_median"]
                    )
    return ratios


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, model, training budget), seeds pooled."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in sorted(runs, key=lambda r: (r["kind"] != "rl2", r.get("steps") or 0, r["seed"])):
        groups.setdefault(run_key(r)[:2] + run_key(r)[3:], []).append(r)
    rows = []
    for (kind, model, *_), rs in groups.items():
        n = len(rs[0]["returns"])
        rows.append(
            {
                "method": kind,
                "model": model,
                "variant": variant_of(rs[0]),
                "backbone": backbone_of(rs[0]),
                "seeds": [r["seed"] for r in rs],
                "returns_mean": [_ci([r["returns"][k] for r in rs])[0] for k in range(n)],
                "returns_ci95": [_ci([r["returns"][k] for r in rs])[1] for k in range(n)],
                "returns_per_seed": [r["returns"] for r in rs],
                "train_minutes_median": statistics.median(r["train_seconds"] for r in rs) / 60,
                "env_steps": statistics.median(r["env_steps"] for r in rs),
                "lost_per_seed": (  # goals not found in episode 2, per seed (runs since they record it)
                    [int(np.sum(lost(r["episode_2_per_goal"]))) for r in rs]
                    if all("episode_2_per_goal" in r for r in rs)
                    else None
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--maml-models", nargs="*", default=["mlp", "ssm"])
    parser.add_argument("--rl2-models", nargs="*", default=["ssm", "gru", "lstm", "transformer"])
    parser.add_argument("--maml-iterations", type=int, default=150)
    parser.add_argument("--rl2-steps", type=int, default=1_500_000)
    parser.add_argument("--no-multitask", action="store_true", help="skip the multi-task baseline")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (one torch thread each)")
    add_merge_arguments(parser, "meta_navigation")
    args = start_run(parser)

    jobs = [
        {"kind": "rl2", "model": m, "seed": s, "steps": args.rl2_steps}
        for m in args.rl2_models
        for s in args.seeds
    ]
    jobs += [
        {"kind": "maml", "model": m, "seed": s, "iterations": args.maml_iterations}
        for m in args.maml_models
        for s in args.seeds
    ]
    if not args.no_multitask:
        jobs += [
            {"kind": "multitask", "model": "mlp", "seed": s, "iterations": args.maml_iterations}
            for s in args.seeds
        ]
    t0 = time.perf_counter()
    runs = []
    if jobs:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    minutes_total = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, run_key)
    seeds = sorted({r["seed"] for r in runs})

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.evaluate import random_policy_returns

    random_return = random_policy_returns(FAMILY, get_family(FAMILY).test, episodes=40, seed=0)
    rows = summarize(runs)
    from ssm_metarl.recipes import recipe

    def today(r: dict[str, Any]) -> bool:  # a MAML row of today's recipe for its model
        return r["method"] == "maml" and r["variant"] == recipe_variant(recipe("maml", FAMILY, r["model"]))

    maml = [r for r in rows if today(r)]
    best = max(maml, key=lambda r: r["returns_mean"][1]) if maml else None
    maml_ssm = next((r for r in maml if r["model"] == "ssm"), None)
    rl2 = [r for r in rows if r["method"] == "rl2"]
    chosen = recipe("rl2", FAMILY).model  # the RL² recipe's SSM backbone (recipes.RL2_BACKBONES)

    def is_chosen(r: dict[str, Any]) -> bool:
        return is_backbone(r["backbone"], chosen)

    ssm = max((r for r in rl2 if is_chosen(r)), key=lambda r: r["env_steps"], default=None)
    ratios = speed_ratios(runs, is_chosen)
    speedups = {m: statistics.median(xs) for m, xs in ratios.items()}
    transformer = next(
        (r for r in rl2 if r["model"] == "transformer" and ssm and r["env_steps"] == ssm["env_steps"]), None
    )
    headline = {
        "maml_model": best["model"] if best else None,
        "maml_variant": best["variant"] if best else None,
        "maml_return_after_1": best["returns_mean"][1] if best else None,
        "maml_return_after_3": best["returns_mean"][3] if best else None,
        "maml_ssm_variant": maml_ssm["variant"] if maml_ssm else None,
        "maml_ssm_return_after_1": maml_ssm["returns_mean"][1] if maml_ssm else None,
        "maml_ssm_return_after_3": maml_ssm["returns_mean"][3] if maml_ssm else None,
        "maml_ssm_minutes": maml_ssm["train_minutes_median"] if maml_ssm else None,
        "rl2_ssm_backbone": backbone_label(ssm["backbone"]) if ssm else None,
        "rl2_ssm_return_episode_2": ssm["returns_mean"][1] if ssm else None,
        "rl2_ssm_worst_seed_episode_2": min(x[1] for x in ssm["returns_per_seed"]) if ssm else None,
        "rl2_ssm_minus_transformer_episode_2": ssm["returns_mean"][1] - transformer["returns_mean"][1]
        if ssm and transformer
        else None,
        "rl2_ssm_seconds_over_transformer": 1 / speedups["transformer"]
        if "transformer" in speedups
        else None,
        "rl2_ssm_seconds_over_lstm": 1 / speedups["lstm"] if "lstm" in speedups else None,
        "rl2_ssm_return_episode_4": ssm["returns_mean"][3] if ssm else None,
        "rl2_ssm_env_steps": ssm["env_steps"] if ssm else None,
        "rl2_ssm_speedup_vs_gru": speedups.get("gru"),
        "rl2_ssm_speedup_vs_lstm": speedups.get("lstm"),
        "rl2_ssm_speedup_vs_transformer": speedups.get("transformer"),
        "minutes": best["train_minutes_median"] if best else None,
    }
    payload = {
        "headline": headline,
        "targets": {
            "maml_return_after_1": PAPER["after_1"],
            "maml_return_after_3": PAPER["after_3"],
            "maml_ssm_return_after_1": PAPER["after_1"],
            "maml_ssm_return_after_3": PAPER["after_3"],
            "maml_ssm_minutes": 30.0,
            "rl2_ssm_return_episode_2": -2.5,
            "rl2_ssm_worst_seed_episode_2": -5.0,
            "rl2_ssm_minus_transformer_episode_2": 0.0,
            "rl2_ssm_seconds_over_transformer": 0.5,  # issue 34
            "rl2_ssm_seconds_over_lstm": 1.0,  # issue 35: the recipe's ssm no slower than the lstm
            "rl2_ssm_return_episode_4": PAPER["after_3"],
            "rl2_ssm_speedup_vs_gru": 3.0,
            "rl2_ssm_speedup_vs_lstm": 3.0,
            "minutes": 30.0,
        },
        "speed_ratios_per_invocation": ratios,  # the headline's speedups are their medians
        "random_policy_return": random_return,
        "rows": rows,
        "runs": runs,
        "config": {
            "family": FAMILY,
            "held_out_tasks": 20,
            "eval_trajectories": 40,
            "episodes_per_trial": EPISODES_PER_TRIAL,
            "maml_iterations": sorted({r["iterations"] for r in runs if "iterations" in r}),
            "rl2_steps": sorted({r["steps"] for r in runs if "steps" in r}),
            "parallel_jobs": args.jobs,
        },
        "minutes_total": minutes_total,
        "merged_from": merged_from,
        "seeds": seeds,
        **provenance(),
    }

    def cells(r: dict[str, Any]) -> list[str]:
        return [ci_cell(m, h, 2) for m, h in zip(r["returns_mean"], r["returns_ci95"])]

    maml_rows = [
        [
            f"{r['method']} ({r['model']}{variant_label(r['variant'])})",
            *cells(r),
            f"{r['env_steps'] / 1e6:.1f}M",
            f"{r['train_minutes_median']:.1f}",
        ]
        for r in rows
        if r["method"] != "rl2"
    ]
    maml_rows.append(["random policy", f"{random_return:.2f}", "", "", "", "", ""])
    maml_rows.append(["MAML paper (TRPO), Table 4", "-40.41", "-11.68", "-3.33", "-3.23", "", ""])
    rl2_rows = [
        [
            f"RL² ({backbone_label(r['backbone'])})",
            *cells(r),
            f"{r['env_steps'] / 1e6:.1f}M",
            f"{r['train_minutes_median']:.1f}",
            "" if r["lost_per_seed"] is None else " / ".join(map(str, r["lost_per_seed"])),
        ]
        for r in rows
        if r["method"] == "rl2"
    ]
    md = (
        f"## Meta-RL on 2D navigation ({len(seeds)} seeds, 20 held-out goals, "
        f"{'mean ± 95% CI' if len(seeds) > 1 else 'one seed: no interval'})\n\n"
        "Gradient-based adaptation (return after k policy-gradient steps, 40 trajectories per step):\n\n"
        + markdown_table(
            ["method", "0 steps", "1 step", "2 steps", "3 steps", "env steps", "train min"], maml_rows
        )
        + "\n\nIn-context adaptation (return of episode i of a trial, no gradient step):\n\n"
        + markdown_table(
            [
                "method",
                "episode 1",
                "episode 2",
                "episode 3",
                "episode 4",
                "env steps",
                "train min",
                "goals lost in episode 2, per seed",
            ],
            rl2_rows,
        )
        + f"\n\nA goal is lost when its episode-2 return is below {LOST:g} (a good policy scores about -2); runs "
        "from before runs recorded per-goal returns leave the column empty."
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {args.jobs} parallel processes; "
        f"{machine_info()['cpu']}; {minutes_total:.0f} minutes for this invocation's runs."
        + merged_markdown(merged_from)
    )
    write_results(args.name, payload, md)
    _plot(rows, random_return, args.name)
    print(md)


def _plot(rows: list[dict[str, Any]], random_return: float, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, title, xlabel, pick in (
        (axes[0], "gradient steps (MAML)", "adaptation steps", lambda r: r["method"] != "rl2"),
        (axes[1], "in context (RL²)", "episode of the trial", lambda r: r["method"] == "rl2"),
    ):
        for i, r in enumerate(x for x in rows if pick(x)):
            xs = np.arange(len(r["returns_mean"])) + (1 if r["method"] == "rl2" else 0)
            m, h = np.asarray(r["returns_mean"]), np.array([h or 0.0 for h in r["returns_ci95"]])
            label = f"{r['method']} ({r['model']}{variant_label(r['variant'])}, {r['env_steps'] / 1e6:.1f}M steps)"
            ax.plot(xs, m, marker="o", color=f"C{i}", label=label)
            ax.fill_between(xs, m - h, m + h, color=f"C{i}", alpha=0.2)
        ax.axhline(random_return, color="grey", ls=":", label="random")
        ax.axhline(PAPER["after_1"], color="k", ls="--", lw=0.8, label="MAML paper, 1 step")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("return on held-out goals")
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
