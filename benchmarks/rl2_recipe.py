"""Choosing the RL² recipe of the ssm backbones: variants of the model and of PPO, on selection seeds.

    python benchmarks/rl2_recipe.py --variants base mb4 --seeds 100 101 --name rl2_recipe_p1
    python benchmarks/rl2_recipe.py --variants --merge results/rl2_recipe_p1.json results/rl2_recipe_p2.json

Each variant is the RL² recipe (``recipe("rl2", "navigation-2d", model)``) with a few ``ModelConfig`` and
``PPOConfig`` fields changed (:data:`VARIANTS`). A run trains on navigation-2d trials of 4 episodes for
``--steps`` env steps and is scored on the family's ``validation`` goals (never ``test``): the return of
each episode of a trial, mean over the goals. Seeds are selection seeds (100+), disjoint from the reporting
seeds 0-4 of ``meta_navigation.py``. A variant is judged by the mean over seeds of episode 2 and by its worst
seed together (``docs/concepts/evaluation.md``): the table sorts by the worst seed. Writes
results/<name>.{json,md}; runs of several invocations merge with ``--merge``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import meta_navigation
import numpy as np
from _common import (
    add_merge_arguments,
    backbone_label,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

_SCREEN = {"ring_min": None}  # the recipe as the screen ran it (before c6061db): the ring from 0.9
VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {"model": "gated_ssm"},
    "base": {"model": "gated_ssm", "overrides": _SCREEN},
    "mb4": {"model": "gated_ssm", "overrides": _SCREEN, "ppo": {"num_minibatches": 4}},
    "trial400": {
        "model": "gated_ssm",
        "overrides": _SCREEN,
        "ppo": {"rollout_steps": 400, "num_minibatches": 4},
    },
    "gamma995": {"model": "gated_ssm", "overrides": _SCREEN, "ppo": {"gamma": 0.995}},
    "wide128": {"model": "gated_ssm", "overrides": {**_SCREEN, "hidden_dim": 128, "state_dim": 128}},
    "rec10": {"model": "gated_ssm", "overrides": _SCREEN, "ppo": {"recurrence_lr_scale": 10.0}},
    "frozen": {"model": "gated_ssm", "overrides": _SCREEN, "ppo": {"recurrence_lr_scale": 0.0}},
    "acclip": {"model": "gated_ssm", "overrides": _SCREEN, "ppo": {"clip_grad": "actor_critic"}},
    "ring03": {"model": "gated_ssm", "overrides": {"ring_min": 0.3}},
    "ring01": {"model": "gated_ssm", "overrides": {"ring_min": 0.1}},
    "ring01-rec10": {
        "model": "gated_ssm",
        "overrides": {"ring_min": 0.1},
        "ppo": {"recurrence_lr_scale": 10.0},
    },
    "ring01-1layer": {"model": "gated_ssm", "overrides": {"ring_min": 0.1, "num_layers": 1}},
    "ring01-shared": {"model": "gated_ssm", "overrides": {"ring_min": 0.1, "separate_critic": False}},
    "ring01-n32": {"model": "gated_ssm", "overrides": {"ring_min": 0.1, "state_dim": 32}},
    "recipe-python": {"model": "gated_ssm", "env": {"SSM_METARL_NATIVE": "0"}},
    "normrew": {"model": "gated_ssm", "ppo": {"normalize_reward": True}},
    "grad2": {"model": "gated_ssm", "ppo": {"max_grad_norm": 2.0}},
    "ent001": {"model": "gated_ssm", "ppo": {"ent_coef": 0.001}},
    # screened against the recipe of 32 channels without a convolution; since then the recipe has conv_width 4
    "conv4": {"model": "gated_ssm", "overrides": {"conv_width": 4}},
    "conv4-ring09": {"model": "gated_ssm", "overrides": {"conv_width": 4, "ring_min": None}},
    "gru": {"model": "gru"},
    "transformer": {"model": "transformer"},
}
"""Each variant: the backbone ``model``, its ``ModelConfig`` ``overrides`` on top of the recipe's and the
``PPOConfig`` fields ``ppo`` changes. ``mb4``: 4 envs per minibatch instead of 2 (less noisy gradients);
``trial400``: a rollout of one whole trial (4 x 100 steps), so no trial starts from a state an older
policy computed; ``gamma995``: a horizon that reaches from episode 1 of a trial to episode 4; ``wide128``:
width and state 128; ``rec10``: lambda at 10x the learning rate (``PPOConfig.recurrence_lr_scale``; the
diagnostics, ``rl2_diagnostics.md``, find it barely moves); ``frozen``: lambda not trained (the ablation);
``acclip``: the actor's and the critic's gradients clipped apart (``PPOConfig.clip_grad``; the critic's
gradient is 3-7x the actor's); ``ring03`` / ``ring01``: the ring initialisation's fastest decay
sigmoid(lambda)^c at 0.3 / 0.1 instead of 0.9 (``ModelConfig.ring_min``): channels that forget within a few
steps, as the gru's gates learn to (its update gate reaches 0.002); ``ring01-rec10``: both;
``ring01-1layer``: ring01 with one layer instead of two (about half the backbone's cost, if fast channels
make the second layer unnecessary); ``ring01-shared``: ring01 with the critic's value head on the actor's
backbone instead of a backbone of its own (half the cost of acting and of the update); ``ring01-n32``: ring01
with 32 state channels per layer instead of 64. ``recipe`` is the RL² recipe of the day; ``base`` and the screen's other
variants keep the ring from 0.9 they ran with (``ring_min=None``), so their names mean what their recorded
runs did after the recipe moved to ring01. ``recipe-python`` is the recipe with every native kernel off
(``SSM_METARL_NATIVE=0``: the Python scan, the gate and the acting step in torch operations): the same
computation with other rounding, to see how much a seed's outcome depends on it. gru and transformer are the
references. A variant with ``env`` runs in a process of its own, with those environment variables set.
``normrew``: rewards scaled by the running std of the discounted return (``PPOConfig.normalize_reward``), so
the value loss, whose gradient is most of every clipped step (``rl2_diagnostics.md``), shrinks against the
policy's; ``grad2``: ``max_grad_norm`` 2 instead of 0.5 (every minibatch of the recipe is clipped);
``ent001``: an entropy bonus of 0.001, for episode 1's search to keep reaching the edges of the goal square."""


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One RL² run of one variant and seed, through ``meta_navigation.run_one`` on validation goals."""
    v = VARIANTS[job["variant"]]
    os.environ.update(v.get("env", {}))  # a fresh process (see main): nothing native was loaded yet
    r = meta_navigation.run_one(
        {
            "kind": "rl2",
            "model": v["model"],
            "seed": job["seed"],
            "steps": job["steps"],
            "overrides": v.get("overrides", {}),
            "ppo": v.get("ppo", {}),
            "split": "validation",
            "sampled_goals": job.get("sampled_goals", 0),
        }
    )
    return {
        **job,
        "spec": v,
        "returns": r["returns"],
        "seconds": r["train_seconds"],
        "backbone": r["backbone"],
        "curve": r["curve"],
        **{
            k: r[k]
            for k in (
                "returns_sampled",
                "lost_sampled",
                "episode_2_per_goal_sampled",
                "episode_1_found_sampled",
            )
            if k in r
        },
    }


def _backbone(r: dict[str, Any]) -> str:
    """The backbone a run trained, as it recorded it (runs from before the record: "unrecorded")."""
    return backbone_label(r["backbone"]) if "backbone" in r else "unrecorded"


def _run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["variant"], _backbone(r), r["seed"], r["steps"]


def row_names(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's row: its variant, with the backbone it trained in brackets where runs of one variant name
    trained different ones (``recipe`` is the recipe of its day: 64 state channels before f86cd31, 32 since),
    so a merge never pools two recipes in one row."""
    kinds: dict[str, set[str]] = {}
    for r in runs:
        kinds.setdefault(r["variant"], set()).add(_backbone(r))
    return [
        r["variant"] if len(kinds[r["variant"]]) == 1 else f"{r['variant']} [{_backbone(r)}]" for r in runs
    ]


EDGE = 0.44
"""A sampled goal with a coordinate of at least this is an edge goal (the validation goals have none)."""


def _goal_reach(drawn: int) -> np.ndarray:
    """max(|goal_x|, |goal_y|) of each sampled goal a run scored (it drew ``drawn``, less the test goals)."""
    return np.asarray([max(abs(v) for _, v in g.params) for g in meta_navigation.sampled_goals(drawn)])


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: mean and worst seed of episode 2 and of episodes 2-4, seconds per run, seeds."""
    table: dict[str, dict[str, Any]] = {}
    names = row_names(runs)
    for name in dict.fromkeys(names):
        mine = sorted((r for r, n in zip(runs, names) if n == name), key=lambda r: r["seed"])
        ep2 = [r["returns"][1] for r in mine]
        later = [statistics.fmean(r["returns"][1:]) for r in mine]
        table[name] = {
            "episode_2_mean": statistics.fmean(ep2),
            "episode_2_worst": min(ep2),
            "episodes_2_4_mean": statistics.fmean(later),
            "episodes_2_4_worst": min(later),
            "episode_1_mean": statistics.fmean(r["returns"][0] for r in mine),
            "seconds_per_run": statistics.fmean(r["seconds"] for r in mine),
            "seeds": [r["seed"] for r in mine],
            "episode_2_per_seed": ep2,
        }
        scored = [r for r in mine if "returns_sampled" in r]
        if len(scored) == len(mine):  # every seed also scored on the sampled training-distribution goals
            at = [  # how far out each lost goal lies
                reach
                for r in mine
                for reach, lost in zip(
                    _goal_reach(r["sampled_goals"]), meta_navigation.lost(r["episode_2_per_goal_sampled"])
                )
                if lost
            ]
            reach = _goal_reach(mine[0]["sampled_goals"])
            if all("episode_1_found_sampled" in r for r in mine):  # runs since they record it
                lost_found = [
                    bool(found)
                    for r in mine
                    for found, lost in zip(
                        r["episode_1_found_sampled"], meta_navigation.lost(r["episode_2_per_goal_sampled"])
                    )
                    if lost
                ]
                table[name].update(
                    sampled_episode_1_found_mean=statistics.fmean(
                        float(np.mean(r["episode_1_found_sampled"])) for r in mine
                    ),
                    sampled_lost_found_in_episode_1=sum(lost_found),
                    sampled_lost_count=len(lost_found),
                )
            table[name].update(
                sampled_lost_nearest_edge=min(at, default=None),  # the lost goal nearest the centre
                sampled_goals_at_edge=float(np.mean(reach >= EDGE)),
                sampled_episode_2_mean=statistics.fmean(r["returns_sampled"][1] for r in mine),
                sampled_episode_2_worst=min(r["returns_sampled"][1] for r in mine),
                sampled_lost_mean=statistics.fmean(r["lost_sampled"] for r in mine),
                sampled_lost_worst=max(r["lost_sampled"] for r in mine),
                sampled_episode_2_per_seed=[r["returns_sampled"][1] for r in mine],
            )
    return table


def _sampled_table(table: dict[str, dict[str, Any]], order: list[str]) -> str:
    """The variants whose every run was also scored on the sampled training-distribution goals."""
    names = [n for n in order if "sampled_episode_2_mean" in table[n]]
    if not names:
        return ""
    rows = [
        [
            n,
            f"{table[n]['sampled_episode_2_mean']:.2f}",
            f"{table[n]['sampled_episode_2_worst']:.2f}",
            f"{table[n]['sampled_lost_mean']:.3f}",
            f"{table[n]['sampled_lost_worst']:.3f}",
            " / ".join(f"{x:.2f}" for x in table[n]["sampled_episode_2_per_seed"]),
        ]
        for n in sorted(names, key=lambda n: -table[n]["sampled_episode_2_worst"])
    ]
    searched = [n for n in names if "sampled_lost_count" in table[n]]
    search = "".join(
        f" `{n}`: episode 1 reached {table[n]['sampled_episode_1_found_mean']:.0%} of the goals, and "
        f"{table[n]['sampled_lost_found_in_episode_1']} of its {table[n]['sampled_lost_count']} lost goals "
        "(a lost goal episode 1 never reached is a failed search, one it reached a failed memory)."
        for n in searched
    )
    nearest = [table[n]["sampled_lost_nearest_edge"] for n in names]
    nearest = [x for x in nearest if x is not None]
    edge = table[names[0]]["sampled_goals_at_edge"]
    where = (
        f" Every lost goal has a coordinate of at least {min(nearest):.2f}; {edge:.0%} of the sampled goals "
        f"have one of at least {EDGE:g}."
        if nearest
        else ""
    )
    return (
        "\n\nThe same runs on goals drawn fresh from the training distribution "
        "(`meta_navigation.SAMPLED_GOALS_SEED`, never the test split; the validation goals have no coordinate "
        f"beyond 0.445): episode 2, mean over goals; 'lost': the share of goals with an episode-2 return below "
        f"{meta_navigation.LOST:g}, the goals the policy does not find.{where}{search}\n\n"
        + markdown_table(
            ["variant", "ep 2 mean", "ep 2 worst", "lost mean", "lost worst", "ep 2 per seed"], rows
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="*", default=["base", "mb4"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    parser.add_argument("--steps", type=int, default=600_000)
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (one torch thread each)")
    parser.add_argument(
        "--sampled-goals", type=int, default=200, help="also score on this many training-distribution goals"
    )
    parser.add_argument("--notes", default=None, help="a markdown file appended to the .md (the findings)")
    add_merge_arguments(parser, "rl2_recipe")
    args = start_run(parser)
    jobs = [
        {"variant": v, "seed": s, "steps": args.steps, "sampled_goals": args.sampled_goals}
        for s in args.seeds
        for v in args.variants
    ]
    t0 = time.perf_counter()
    if jobs and (args.jobs > 1 or any("env" in VARIANTS[j["variant"]] for j in jobs)):
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:  # a process per run
            runs = pool.map(run_job, jobs, chunksize=1)
    else:
        runs = [run_job(j) for j in jobs]
    minutes_total = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, _run_key)
    table = summarize(runs)
    specs = dict(zip(row_names(runs), (r["spec"] for r in runs)))  # as the runs had them
    order = sorted(table, key=lambda v: (-table[v]["episode_2_worst"], -table[v]["episode_2_mean"]))
    rows = [
        [
            name,
            f"{c['episode_2_mean']:.1f}",
            f"{c['episode_2_worst']:.1f}",
            f"{c['episodes_2_4_mean']:.1f}",
            f"{c['episode_1_mean']:.1f}",
            " / ".join(f"{x:.1f}" for x in c["episode_2_per_seed"]),
            ", ".join(map(str, c["seeds"])),
            f"{c['seconds_per_run']:.0f}",
        ]
        for name, c in ((n, table[n]) for n in order)
    ]
    steps = ", ".join(f"{s:,}" for s in sorted({r["steps"] for r in runs}))
    md = (
        f"## Choosing the RL² recipe (navigation-2d, {steps} env steps, validation goals, selection seeds; "
        "nothing here is a test figure)\n\n"
        "Episode returns of a 4-episode trial, mean over the validation goals; per variant the mean over "
        "seeds and the worst seed (sorted by the worst seed of episode 2).\n\n"
        + markdown_table(
            [
                "variant",
                "ep 2 mean",
                "ep 2 worst",
                "ep 2-4 mean",
                "ep 1 mean",
                "ep 2 per seed",
                "seeds",
                "s/run",
            ],
            rows,
        )
        + _sampled_table(table, order)
        + "\n\nVariants (changes to the recipe):\n\n"
        + "".join(f"- `{n}`: {specs[n]}\n" for n in order)
        + f"\nCommand: `{provenance()['command']}`; {minutes_total:.0f} minutes for this invocation's runs."
        + merged_markdown(merged_from)
        + "\n"
    )
    if args.notes:
        with open(args.notes) as f:
            md += "\n" + f.read()
    most = max((len(c["seeds"]) for c in table.values()), default=0)
    full = [n for n in order if len(table[n]["seeds"]) == most]  # the variants on every selection seed
    headline = {
        "best_by_worst_seed": full[0] if full else None,
        "best_by_mean": max(full, key=lambda n: table[n]["episode_2_mean"]) if full else None,
        **{f"{n}_episode_2_mean": c["episode_2_mean"] for n, c in table.items()},
        **{f"{n}_episode_2_worst": c["episode_2_worst"] for n, c in table.items()},
        **{
            f"{n}_sampled_episode_2_mean": c["sampled_episode_2_mean"]
            for n, c in table.items()
            if "sampled_episode_2_mean" in c
        },
        **{
            f"{n}_sampled_lost_worst": c["sampled_lost_worst"]
            for n, c in table.items()
            if "sampled_lost_worst" in c
        },
    }
    payload = {
        "headline": headline,
        **provenance(),
        "minutes_total": minutes_total,
        "merged_from": merged_from,
        "args": vars(args),
        "table": table,
        "runs": runs,
    }
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
