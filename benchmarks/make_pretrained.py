"""Regenerate every shipped pre-trained model from scratch (``make pretrained``).

    python benchmarks/make_pretrained.py                 # all models
    python benchmarks/make_pretrained.py --only cartpole-ssm

Each model is meta-trained with MAML (``recipe("maml", family)`` plus the overrides in SPECS) or in context
with RL² (``recipe("rl2", family)``), evaluated with the adaptation protocol, and written to
``ssm_metarl/pretrained/<name>/``: the checkpoint (its metadata records the config as ``cfg.to_dict()``),
``results.json`` (every figure of the card) and a model card ``README.md`` that states the command and
seed. ``--cards-only`` rewrites the cards from the checkpoints' metadata and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from _common import FROM_MULTITASK_MAML, REPO_ROOT, ci_cell, git_commit, machine_info, now_iso, start_run

SPECS: dict[str, dict[str, Any]] = {
    "cartpole-ssm": {
        "family": "cartpole-physics",
        # MAML from scratch on CartPole is slow to reach 500 (about 250 after 20 iterations, 5 minutes): it
        # starts from multi-task PPO (150k steps) and is meta-trained from there
        "multitask_ppo_steps": 150_000,
        "overrides": {"model__kind": "ssm", "model__num_layers": 1, **FROM_MULTITASK_MAML},
        "eval_trajectories": 10,
    },
    # MAML with the ssm on navigation: the recipe for the ssm (inner lr 0.03 with learned per-tensor step
    # sizes, recipes.MAML_SSM; at the mlp's inner lr 1.0 it diverged: zero-shot -131 after 60 iterations)
    "navigation-maml-ssm": {
        "family": "navigation-2d",
        "model": "ssm",
        "overrides": {},
        "eval_trajectories": 40,
    },
    # in-context (RL²) on navigation: RL² reached -8.9 in the second episode after 800k steps
    "navigation-ssm": {
        "family": "navigation-2d",
        "method": "rl2",
        "episodes_per_trial": 4,
        "total_steps": 1_000_000,
    },
    # in context on Bernoulli bandits: a trial is one episode of 100 pulls of 5 unknown arms; the backbone of
    # meta_bandits.py and its default budget, 1M steps (there, k5-n100: 0.98 of Thompson sampling's total, 3
    # seeds, results/meta_bandits_1m.md; at 300k 0.92)
    "bandit-ssm": {
        "family": "bandit-k5-n100",
        "method": "rl2",
        "episodes_per_trial": 1,
        "total_steps": 1_000_000,
    },
}
SEED = 0
EVAL_TASKS = 10


def zero_shot_and_adapted(policy, family: str, tasks, inner, trajectories: int) -> dict[str, Any]:
    """Zero-shot return and the return after 1 and 3 standard adaptation steps (seeds 0, 1) with the MAML
    inner loop ``inner`` (an AdaptConfig), ``trajectories`` episodes per step."""
    from ssm_metarl.adapt import evaluate_adaptation

    curve = evaluate_adaptation(
        policy, family, list(tasks), inner.replace(steps=3, episodes=trajectories), seeds=(0, 1)
    )
    return {f"after_{k}": {"mean": iv.mean, "ci95": iv.half} for k, iv in enumerate(curve.summary())}


def _article(word: str) -> str:
    """'A' or 'An' before a model kind as read aloud (an ssm, an lstm, an mlp; a gru, a gated_ssm)."""
    return "An" if word.split("_")[0] in ("ssm", "lstm", "mlp", "improved") else "A"


def bandit_references(family: str, tasks) -> dict[str, float]:
    """On a bandit family, the mean total reward of Thompson sampling and of the oracle that knows the best
    arm on ``tasks`` (200 runs each); nothing for other families."""
    if not family.startswith("bandit"):
        return {}
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.bandits import oracle, task_means, thompson

    means, n = task_means(list(tasks)), get_family(family).n
    return {
        "thompson": float(thompson(means, n, runs=200, seed=0).mean()),
        "oracle": float(oracle(means, n).mean()),
    }


def make_one_rl2(name: str) -> dict[str, Any]:
    """An in-context (RL²) model: PPO over trials; 'adaptation' is the return of later episodes of a trial."""
    import torch

    from ssm_metarl.checkpoint import save_policy, update_metadata
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.envs.trial import rl2_env_id
    from ssm_metarl.meta.evaluate import baseline_returns
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
    from ssm_metarl.pretrained import PRETRAINED_DIR
    from ssm_metarl.recipes import recipe

    torch.set_num_threads(1)
    spec = SPECS[name]
    family, k = spec["family"], spec["episodes_per_trial"]
    out = PRETRAINED_DIR / name
    cfg = recipe("rl2", family).replace(
        env_id=rl2_env_id(family, k),
        total_steps=spec["total_steps"],
        run__seed=SEED,
        run__progress=False,
        run__out_dir=None,
    )
    t0 = time.perf_counter()
    policy = train_rl2(cfg).policy
    minutes = (time.perf_counter() - t0) / 60
    dist = get_family(family)
    results: dict[str, Any] = {
        "family": family,
        "method": "rl2",
        "episodes_per_trial": k,
        "eval_tasks_per_split": EVAL_TASKS,
        "eval_seeds": [0, 1],
    }
    for split in ("train", "test", "out_of_range"):
        tasks = dist.split(split)[:EVAL_TASKS]
        if not tasks:  # bandit families have no out-of-range tasks
            continue
        returns = evaluate_in_context(policy, family, tasks, k, seeds=(0, 1))
        results[split] = {
            "episodes": [{"mean": iv.mean, "ci95": iv.half} for iv in returns.summary()],
            "random": baseline_returns(family, tasks, "random", 20, (0,)).mean,
            "constant": baseline_returns(family, tasks, "constant", 20, (0,)).mean,
            **bandit_references(family, tasks),
        }
    results["zero_shot_train"] = results["train"]["episodes"][0]["mean"]
    results["training"] = {
        "minutes": minutes,
        "env_steps": cfg.total_steps,
        "seed": SEED,
        "date": now_iso(),
        "commit": git_commit(),
        "cpu": machine_info()["cpu"],
    }
    save_policy(
        out,
        policy,
        {
            "algo": "rl2",
            "family": family,
            "name": name,
            "episodes_per_trial": k,
            "env_steps": cfg.total_steps,
            "config": cfg.to_dict(),
        },
    )
    update_metadata(out, trial_env_id=cfg.env_id)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(model_card_rl2(name, cfg, results, policy))
    return results


def model_card_rl2(name: str, cfg, results: dict[str, Any], policy) -> str:
    params = sum(p.numel() for p in policy.parameters())
    t, k = results["training"], results["episodes_per_trial"]
    bandit = "thompson" in results.get("test", {})
    trial = "one episode" if k == 1 else f"{k} episodes"
    lines = [
        f"# {name}",
        "",
        f"{_article(cfg.model.kind)} `{cfg.model.kind}` actor-critic meta-trained in context (RL²) on the "
        f"`{results['family']}` task family "
        f"({params:,} parameters): it adapts without gradient steps, from what its recurrent state has seen in the "
        f'trial so far. Load it offline with `ssm_metarl.load_pretrained("{name}")`.',
        "",
        "## How it was made",
        "",
        f"`python benchmarks/make_pretrained.py --only {name}` (all models: `make pretrained`), seed {SEED}: PPO "
        f'(`recipe("rl2", "{results["family"]}")`) over trials of {trial} of one task, input [obs, previous '
        f"action, previous reward, done]; {t['env_steps']:,} env steps in {t['minutes']:.1f} minutes on "
        f"{t['cpu']} (one torch thread). Date {t['date']}, commit `{t['commit']}`.",
        "",
        "## Measured results",
        "",
        f"Mean return of {'a trial (the total reward of its pulls)' if k == 1 else 'episode i of a trial'} over "
        f"the first {EVAL_TASKS} tasks of each split, one trial per task and seed, seeds 0 and 1 (95% interval "
        "over seeds); no gradient step anywhere."
        + (" Thompson sampling and the oracle: 200 plays of the same tasks." if bandit else ""),
        "",
        "| split | random | constant action | "
        + " | ".join(f"episode {i + 1}" for i in range(k))
        + (" | Thompson sampling | oracle (knows the best arm)" if bandit else "")
        + " |",
        "|---|---|---|" + "---|" * (k + 2 * bandit),
    ]
    for split in ("train", "test", "out_of_range"):
        if split not in results:
            continue
        r = results[split]
        cells = " | ".join(ci_cell(e["mean"], e["ci95"]) for e in r["episodes"])
        refs = f" | {r['thompson']:.1f} | {r['oracle']:.1f}" if bandit else ""
        lines.append(f"| {split} | {r['random']:.1f} | {r['constant']:.1f} | {cells}{refs} |")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from ssm_metarl import load_pretrained",
        "from ssm_metarl.envs.tasks import get_family",
        "from ssm_metarl.meta.rl2 import evaluate_in_context",
        "",
        f'policy = load_pretrained("{name}")  # offline, from the installed package',
        f'tasks = get_family("{results["family"]}").test[:5]',
        f'returns = evaluate_in_context(policy, "{results["family"]}", tasks, episodes_per_trial={k})',
        "episodes = returns.values[0, 0, :, 0]  # seed 0, task 0: the return of each episode of the trial",
        'print(f"return on a held-out task: {episodes[-1]:.1f} (episode 1: {episodes[0]:.1f})")',
        "```",
        "",
    ]
    return "\n".join(lines)


def make_one(name: str) -> dict[str, Any]:
    if SPECS[name].get("method") == "rl2":
        return make_one_rl2(name)
    import torch

    from ssm_metarl.checkpoint import save_policy
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.evaluate import baseline_returns
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.pretrained import PRETRAINED_DIR
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rl.ppo import train_ppo

    torch.set_num_threads(1)
    spec = SPECS[name]
    family = spec["family"]
    cfg = recipe("maml", family, spec.get("model")).replace(
        run__seed=SEED, run__progress=False, **spec["overrides"]
    )
    t0 = time.perf_counter()
    start = None
    if spec.get("multitask_ppo_steps"):
        ppo_cfg = recipe("ppo", get_family(family).multitask_env_id()).replace(
            run__seed=SEED, run__progress=False, total_steps=spec["multitask_ppo_steps"]
        )
        start = train_ppo(ppo_cfg).policy
    result = train_maml(cfg, policy=start)
    minutes = (time.perf_counter() - t0) / 60
    dist = get_family(family)
    n = spec["eval_trajectories"]
    splits = {
        "train": dist.train[:EVAL_TASKS],
        "test": dist.test[:EVAL_TASKS],
        "out_of_range": dist.out_of_range[:EVAL_TASKS],
    }
    results: dict[str, Any] = {"family": family, "eval_tasks_per_split": EVAL_TASKS, "eval_trajectories": n}
    for split, tasks in splits.items():
        if not tasks:
            continue
        results[split] = {
            "maml": zero_shot_and_adapted(result.policy, family, tasks, cfg.inner, n),
            "random": baseline_returns(family, list(tasks), "random", n, (0,)).mean,
            "constant": baseline_returns(family, list(tasks), "constant", n, (0,)).mean,
        }
    results["zero_shot_train"] = results["train"]["maml"]["after_0"]["mean"]
    results["training"] = {
        "minutes": minutes,
        "env_steps": result.env_steps,
        "seed": SEED,
        "multitask_ppo_steps": spec.get("multitask_ppo_steps", 0),
        "date": now_iso(),
        "commit": git_commit(),
        "cpu": machine_info()["cpu"],
    }
    meta = {
        "algo": "maml",
        "family": family,
        "name": name,
        "env_steps": result.env_steps,
        "multitask_ppo_steps": spec.get("multitask_ppo_steps", 0),
        "config": cfg.to_dict(),
    }
    out = PRETRAINED_DIR / name
    save_policy(out, result.policy, meta)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(model_card(name, cfg, results, result.policy))
    return results


def model_card(name: str, cfg, results: dict[str, Any], policy) -> str:
    params = sum(p.numel() for p in policy.parameters())
    t = results["training"]
    lines = [
        f"# {name}",
        "",
        f"{_article(cfg.model.kind)} `{cfg.model.kind}` actor-critic meta-trained with MAML on the `{cfg.family}` task family "
        f'({params:,} parameters). Load it offline with `ssm_metarl.load_pretrained("{name}")`.',
        "",
        "## How it was made",
        "",
        f"`python benchmarks/make_pretrained.py --only {name}` (all models: `make pretrained`), seed {SEED}: "
        + (
            f"multi-task PPO for {results['training']['multitask_ppo_steps']:,} env steps, then "
            if results["training"]["multitask_ppo_steps"]
            else ""
        )
        + f"{cfg.meta_iterations} meta-iterations x {cfg.meta_batch_size} tasks x {cfg.inner.episodes} "
        f"trajectories, inner lr {cfg.inner.lr}"
        + (" with learned per-tensor step sizes" if cfg.model.learned_step_sizes else "")
        + f", {cfg.inner.baseline} baseline, outer Adam lr {cfg.outer_lr}, {cfg.outer_algo} outer loss; "
        f"{results['training']['env_steps']:,} MAML env steps; {results['training']['minutes']:.1f} minutes in all on "
        f"{t.get('cpu', machine_info()['cpu'])} (one torch thread). Date {t.get('date', now_iso())}, commit "
        f"`{t.get('commit', git_commit())}`.",
        "",
        "## Measured results",
        "",
        f"Mean return over the first {EVAL_TASKS} tasks of each split, {results['eval_trajectories']} "
        "stochastic episodes per task and step, seeds 0 and 1 (95% interval over seeds). Adaptation: "
        f"policy-gradient steps of lr {cfg.inner.lr}"
        + (f" (then {cfg.inner.later_lr})" if cfg.inner.later_lr else "")
        + (", times each tensor's learned step size," if cfg.model.learned_step_sizes else "")
        + " on the episodes just collected.",
        "",
        "| split | random | constant action | zero-shot | after 1 step | after 3 steps |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "test", "out_of_range"):
        if split in results:
            r = results[split]
            m = r["maml"]
            cells = " | ".join(ci_cell(m[f"after_{k}"]["mean"], m[f"after_{k}"]["ci95"]) for k in (0, 1, 3))
            lines.append(f"| {split} | {r['random']:.1f} | {r['constant']:.1f} | {cells} |")
    env_line = f'env = get_family("{cfg.family}").make_env(get_family("{cfg.family}").test[0])'
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from ssm_metarl import load_pretrained",
        "from ssm_metarl.envs.tasks import get_family",
        "",
        f'policy = load_pretrained("{name}")  # offline, from the installed package',
        env_line,
        "obs, _ = env.reset(seed=0)",
        "state, reset, total, done = policy.initial_state(1), [True], 0.0, False",
        "while not done:",
        "    action, state = policy.predict(obs[None], state, reset=reset)",
        "    obs, reward, terminated, truncated, _ = env.step(action[0])",
        "    total, reset, done = total + reward, [False], terminated or truncated",
        'print(f"return on a held-out task: {total:.1f}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def rewrite_card(name: str) -> None:
    """Rewrite ``README.md`` of a shipped model from its checkpoint metadata and ``results.json``."""
    from ssm_metarl.pretrained import pretrained_path

    (pretrained_path(name) / "README.md").write_text(card_of(name))


def card_of(name: str) -> str:
    """The model card of shipped model ``name``, from its checkpoint metadata (the config as
    ``cfg.to_dict()``) and ``results.json``."""
    from ssm_metarl.config import MAMLConfig, PPOConfig
    from ssm_metarl.pretrained import load_pretrained, pretrained_info

    info = pretrained_info(name)
    if info.get("algo") == "rl2":
        return model_card_rl2(
            name, PPOConfig.from_dict(info["config"]), info["results"], load_pretrained(name)
        )
    return model_card(name, MAMLConfig.from_dict(info["config"]), info["results"], load_pretrained(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--cards-only", action="store_true", help="rewrite the model cards from results.json")
    args = start_run(parser)
    if args.cards_only:
        for name in args.only:
            rewrite_card(name)
        return
    for name in args.only:
        results = make_one(name)
        print(name, json.dumps({k: results[k] for k in ("zero_shot_train", "training")}))
    print(f"wrote {', '.join(args.only)} under {REPO_ROOT / 'ssm_metarl' / 'pretrained'}")


if __name__ == "__main__":
    main()
