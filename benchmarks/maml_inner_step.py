"""Why MAML's inner step size must follow the backbone: one inner step at initialisation, mlp vs ssm.

    python benchmarks/maml_inner_step.py          # about a minute

Part 1, at initialisation (``recipe("maml", "navigation-2d", model)``'s policy, torch seed 0, no meta-training),
on the first ``--tasks`` validation goals: 20 episodes per goal with the initial parameters, the norm of the
inner loss's gradient for the actor head's weight, then the mean return of 20 fresh episodes after one plain
inner step (every parameter, no learned step sizes) of each size in ``--lrs``.

Part 2, on the shipped ``navigation-maml-ssm`` (the ssm's recipe, seed 0), on the 20 validation goals: the
return after 0..3 standard adaptation steps of 40 episodes for each size of the later steps in
``--later-lrs`` (the first step always the recipe's 0.03).

Writes results/maml_inner_step.{json,md}.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import markdown_table, provenance, start_run, write_results

FAMILY = "navigation-2d"


def at_initialisation(kind: str, lrs: list[float], n_tasks: int) -> dict[str, Any]:
    import torch

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.functional import inner_update, params_of
    from ssm_metarl.meta.maml import build_meta_policy, inner_loss, sample_episodes
    from ssm_metarl.recipes import recipe

    cfg = recipe("maml", FAMILY, kind).replace(model__learned_step_sizes=False)
    dist = get_family(FAMILY)
    torch.manual_seed(0)
    policy = build_meta_policy(cfg, dist)
    envs = dist.make_vec_env(dist.train[:1] * 20, seed=0, fast=True)
    before, grad_norms = [], []
    after: dict[float, list[float]] = {lr: [] for lr in lrs}
    try:
        for i, task in enumerate(dist.validation[:n_tasks]):
            start = {k: v.detach() for k, v in params_of(policy).items()}
            ep = sample_episodes(envs, policy, start, [task] * 20, seed=i)
            before.append(ep.mean_return)
            leaf = {k: v.requires_grad_(True) for k, v in start.items()}
            loss = inner_loss(policy, leaf, ep, cfg.inner.gamma, cfg.inner.baseline)
            (g,) = torch.autograd.grad(loss, [leaf["actor.weight"]])
            grad_norms.append(float(g.norm()))
            for lr in lrs:
                loss = inner_loss(policy, leaf, ep, cfg.inner.gamma, cfg.inner.baseline)
                new = inner_update(leaf, loss, lr, first_order=True)
                q = sample_episodes(
                    envs, policy, {k: v.detach() for k, v in new.items()}, [task] * 20, 100 + i
                )
                after[lr].append(q.mean_return)
    finally:
        envs.close()
    return {
        "model": kind,
        "return_before": float(np.mean(before)),
        "actor_weight_grad_norm": float(np.mean(grad_norms)),
        "return_after_one_step": {str(lr): float(np.mean(v)) for lr, v in after.items()},
    }


def later_steps(later_lrs: list[float]) -> dict[str, list[float]]:
    from ssm_metarl import load_pretrained
    from ssm_metarl.adapt import evaluate_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.recipes import adapt_recipe

    policy = load_pretrained("navigation-maml-ssm")
    tasks = get_family(FAMILY).validation
    out = {}
    for later in later_lrs:
        cfg = adapt_recipe(FAMILY, "ssm").replace(steps=3, episodes=40, later_lr=later)
        curve = evaluate_adaptation(policy, FAMILY, tasks, cfg, seeds=(0,))
        out[str(later)] = [iv.mean for iv in curve.summary()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1.0, 0.3, 0.1, 0.03, 0.01])
    parser.add_argument("--tasks", type=int, default=6, help="validation goals of part 1")
    parser.add_argument("--later-lrs", type=float, nargs="+", default=[0.004, 0.0075, 0.015, 0.03, 0.06])
    args = start_run(parser)
    import torch

    torch.set_num_threads(1)
    init = [at_initialisation(kind, args.lrs, args.tasks) for kind in ("mlp", "ssm")]
    later = later_steps(args.later_lrs)
    ratio = init[1]["actor_weight_grad_norm"] / init[0]["actor_weight_grad_norm"]
    headline = {
        "ssm_over_mlp_actor_grad_norm": ratio,
        **{f"{r['model']}_return_before": r["return_before"] for r in init},
        **{f"{r['model']}_return_after_lr_1": r["return_after_one_step"].get("1.0") for r in init},
    }
    md = (
        f"## One MAML inner step at initialisation, navigation-2d, {args.tasks} validation goals\n\n"
        + markdown_table(
            ["model", "actor-weight grad norm", "before", *[f"after one step, lr {lr:g}" for lr in args.lrs]],
            [
                [
                    r["model"],
                    f"{r['actor_weight_grad_norm']:.3f}",
                    f"{r['return_before']:.1f}",
                    *[f"{r['return_after_one_step'][str(lr)]:.1f}" for lr in args.lrs],
                ]
                for r in init
            ],
        )
        + f"\n\nThe ssm's actor-head gradient is {ratio:.1f}x the mlp's.\n\n"
        "## The shipped navigation-maml-ssm on the 20 validation goals: size of the later steps\n\n"
        + markdown_table(
            ["later lr", "0 steps", "1 step", "2 steps", "3 steps"],
            [[lr, *[f"{x:.2f}" for x in v]] for lr, v in later.items()],
        )
        + f"\n\nCommand: `{provenance()['command']}`.\n"
    )
    write_results(
        "maml_inner_step",
        {
            "headline": headline,
            **provenance(),
            "args": vars(args),
            "at_initialisation": init,
            "later_lrs": later,
        },
        md,
    )
    print(md)


if __name__ == "__main__":
    main()
