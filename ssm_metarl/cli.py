"""The ``ssm-metarl`` command line: parses, calls one public function, renders. No algorithm logic here.

ssm-metarl train --algo ppo --env CartPole-v1 --model ssm
ssm-metarl evaluate runs/CartPole-v1-ssm-ppo-s0/final
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ssm_metarl.config import ModelKind
from ssm_metarl.defaults import pg_defaults, ppo_defaults
from ssm_metarl.seeding import set_training_threads


def train(
    algo: Literal["ppo", "pg"] = "ppo",
    env: str = "CartPole-v1",
    model: ModelKind = "ssm",
    total_steps: int | None = None,
    episodes: int | None = None,
    lr: float | None = None,
    num_envs: int | None = None,
    hidden_dim: int | None = None,
    num_layers: int | None = None,
    seed: int = 0,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    out: str | None = None,
    resume: str | None = None,
    device: str = "cpu",
    tensorboard: bool = False,
    progress: bool = True,
) -> None:
    """Train a policy on a Gymnasium env with PPO or REINFORCE; writes metrics.jsonl and checkpoints.

    Args:
        algo: ppo (recurrent PPO + GAE) or pg (REINFORCE with a baseline).
        env: Gymnasium environment id (e.g. CartPole-v1, Pendulum-v1, HalfCheetah-v5).
        model: policy backbone.
        total_steps: PPO env steps (default: tuned per env family).
        episodes: REINFORCE episodes (default 200).
        lr: learning rate (default: tuned per env family).
        num_envs: parallel envs (default: tuned per env family).
        hidden_dim: backbone width (default: tuned per env family).
        num_layers: backbone layers (default: tuned per env family).
        seed: seed for torch, NumPy and the envs.
        eval_every: PPO: evaluate (and keep the best checkpoint) every this many steps; 0 = only at the end.
        eval_episodes: episodes per evaluation.
        out: output folder (default runs/<env>-<model>-<algo>-s<seed>).
        resume: PPO: continue from this checkpoint folder (weights, optimizer, step count).
        device: cpu or cuda.
        tensorboard: also write TensorBoard events.
        progress: show a progress bar.
    """
    out = out or f"runs/{env}-{model}-{algo}-s{seed}"
    model_changes = {
        k: v
        for k, v in {"kind": model, "hidden_dim": hidden_dim, "num_layers": num_layers}.items()
        if v is not None
    }
    common = {
        "seed": seed,
        "out_dir": out,
        "device": device,
        "progress": progress,
        "eval_episodes": eval_episodes,
    }
    if algo == "ppo":
        base = ppo_defaults(env)
        changes = {"total_steps": total_steps, "lr": lr, "num_envs": num_envs, "eval_every": eval_every}
        cfg = dataclasses.replace(
            base,
            env_id=env,
            model=dataclasses.replace(base.model, **model_changes),
            resume=resume,
            tensorboard=tensorboard,
            **common,
            **{k: v for k, v in changes.items() if v is not None},
        )
        from ssm_metarl.rl.ppo import train_ppo

        result = train_ppo(cfg)
    else:
        base = pg_defaults(env)
        changes = {"episodes": episodes, "lr": lr, "num_envs": num_envs}
        cfg = dataclasses.replace(
            base,
            env_id=env,
            model=dataclasses.replace(base.model, **model_changes),
            **common,
            **{k: v for k, v in changes.items() if v is not None},
        )
        from ssm_metarl.rl.pg import train_pg

        result = train_pg(cfg)
    print(f"trained {algo} {model} on {env} in {result.seconds:.1f} s")
    if result.episode_returns:
        n = min(20, len(result.episode_returns))
        print(f"mean return of the last {n} training episodes: {sum(result.episode_returns[-n:]) / n:.1f}")
    for k, v in result.final_eval.items():
        print(f"{k}: {v:.2f}")
    print(f"checkpoint: {Path(out) / 'final'}   metrics: {Path(out) / 'metrics.jsonl'}")


def evaluate(
    checkpoint: Annotated[str, tyro.conf.Positional],
    env: str | None = None,
    episodes: int = 10,
    seed: int = 10_000,
    json_out: bool = False,
) -> None:
    """Evaluate a saved policy: mean return over seeded episodes, deterministic and stochastic apart.

    Args:
        checkpoint: checkpoint folder (model.safetensors + config.json).
        env: Gymnasium env id (default: the one the checkpoint was trained on).
        episodes: evaluation episodes for each mode.
        seed: seed of the first episode.
        json_out: print JSON instead of a table.
    """
    from ssm_metarl.checkpoint import load_metadata, load_policy
    from ssm_metarl.rl.evaluate import evaluate_policy

    policy = load_policy(checkpoint)
    env_id = env or load_metadata(checkpoint).get("env_id")
    if env_id is None:
        raise ValueError(f"{checkpoint} does not record its env; pass --env")
    rows = {}
    for mode, det in (("deterministic", True), ("stochastic", False)):
        r = evaluate_policy(policy, env_id, episodes, seed=seed, deterministic=det)
        rows[mode] = {"mean": r.mean, "std": r.std, "episodes": len(r.returns)}
    if json_out:
        print(json.dumps({"checkpoint": checkpoint, "env_id": env_id, **rows}))
        return
    print(f"{checkpoint} on {env_id}")
    print(f"{'mode':<14} {'mean return':>12} {'std':>8} {'episodes':>9}")
    for mode, r in rows.items():
        print(f"{mode:<14} {r['mean']:>12.2f} {r['std']:>8.2f} {r['episodes']:>9d}")


def meta_train(
    method: Literal["maml", "rl2"] = "maml",
    tasks: str = "navigation-2d",
    model: ModelKind = "mlp",
    iterations: int = 100,
    meta_batch: int = 20,
    trajectories: int = 20,
    inner_steps: int = 1,
    inner_lr: float = 0.1,
    outer_lr: float = 1e-3,
    first_order: bool = False,
    baseline: Literal["critic", "linear"] | None = None,
    action_bounds: Literal["tanh", "clip"] | None = None,
    hidden_dim: int = 64,
    episodes_per_trial: int = 2,
    total_steps: int = 200_000,
    eval_tasks: int = 10,
    eval_steps: int = 3,
    seed: int = 0,
    out: str | None = None,
    progress: bool = True,
) -> None:
    """Meta-train over a task family (MAML or in-context RL²), then evaluate on held-out tasks.

    Args:
        method: maml (gradient-based adaptation) or rl2 (in-context: the recurrent state adapts).
        tasks: task family (cartpole-physics, pendulum-physics, navigation-2d, bandit, tabular-mdp, ...).
        model: policy backbone.
        iterations: MAML meta-updates.
        meta_batch: MAML tasks per meta-update.
        trajectories: MAML episodes per task per inner step (and for the query set).
        inner_steps: MAML inner policy-gradient steps.
        inner_lr: MAML inner step size.
        outer_lr: MAML meta (Adam) step size.
        first_order: first-order MAML.
        baseline: MAML inner-loop baseline: critic or linear (the MAML code's); default: maml_defaults(tasks).
        action_bounds: continuous actions: tanh-squashed or clipped Gaussian; default: maml_defaults(tasks) for
            MAML, tanh for RL².
        hidden_dim: backbone width.
        episodes_per_trial: RL²: episodes of one task per trial.
        total_steps: RL²: PPO env steps.
        eval_tasks: held-out (test split) tasks to evaluate on.
        eval_steps: MAML: adaptation steps to evaluate.
        seed: seed for everything.
        out: output folder (default runs/meta-<method>-<tasks>-<model>-s<seed>).
        progress: show a progress bar.
    """
    from ssm_metarl.config import MAMLConfig, ModelConfig, PPOConfig
    from ssm_metarl.defaults import maml_defaults
    from ssm_metarl.envs.tasks import get_family

    out = out or f"runs/meta-{method}-{tasks}-{model}-s{seed}"
    dist = get_family(tasks)
    test = dist.test[:eval_tasks]
    recipe = maml_defaults(tasks) if method == "maml" else MAMLConfig()
    model_cfg = ModelConfig(kind=model, hidden_dim=hidden_dim, num_layers=2 if model == "mlp" else 1,
                            action_bounds=action_bounds or recipe.model.action_bounds)  # fmt: skip
    if method == "maml":
        from ssm_metarl.meta.evaluate import evaluate_adaptation, random_policy_returns
        from ssm_metarl.meta.maml import train_maml

        cfg = MAMLConfig(family=tasks, model=model_cfg, meta_iterations=iterations, meta_batch_size=meta_batch,
                         num_trajectories=trajectories, inner_steps=inner_steps, inner_lr=inner_lr,
                         outer_lr=outer_lr, first_order=first_order, baseline=baseline or recipe.baseline,
                         seed=seed, out_dir=out, progress=progress)  # fmt: skip
        result = train_maml(cfg)
        curve = evaluate_adaptation(
            result.policy,
            tasks,
            test,
            eval_steps,
            trajectories,
            inner_lr,
            seeds=(seed,),
            baseline=cfg.baseline,
        )
        print(
            f"MAML on {tasks}: {result.env_steps} env steps in {result.seconds:.0f} s; held-out tasks: {len(test)}"
        )
        print(f"{'policy':<28} {'mean return':>12} {'95% CI +-':>10}")
        print(f"{'random':<28} {random_policy_returns(tasks, test, trajectories, seed):>12.2f} {'':>10}")
        for k, (m, h) in enumerate(curve.summary()):
            print(f"{f'after {k} adaptation steps':<28} {m:>12.2f} {h:>10.2f}")
    else:
        from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2

        cfg = PPOConfig(model=model_cfg, total_steps=total_steps, seed=seed, out_dir=out, progress=progress,
                        eval_episodes=2)  # fmt: skip
        result = train_rl2(tasks, episodes_per_trial, cfg)
        returns = evaluate_in_context(result.policy, tasks, test, episodes_per_trial, seed=seed)
        print(
            f"RL² on {tasks}: {total_steps} env steps in {result.seconds:.0f} s; held-out tasks: {len(test)}"
        )
        for i, m in enumerate(returns.mean(0)):
            print(f"episode {i + 1} of the trial: mean return {m:.2f}")
    print(f"checkpoint: {Path(out) / 'final'}")


def demo(
    model: str = "cartpole-ssm",
    steps: int = 3,
    tasks: int = 5,
    seeds: int = 2,
    trajectories: int = 8,
    scratch: bool = True,
    out: str = "runs/demo",
) -> None:
    """The main job (``make demo``): the shipped meta-trained SSM policy on CartPole physics it has never
    seen, zero-shot and after standard and hybrid test-time adaptation, against a random policy, a constant
    action and PPO from scratch given the same env steps.

    Args:
        model: a shipped model (ssm_metarl.list_pretrained()).
        steps: adaptation steps.
        tasks: tasks per split (held-out and out-of-range).
        seeds: seeds per task (0..seeds-1).
        trajectories: episodes per evaluation and per adaptation step.
        scratch: also train PPO from scratch on every task (first seed) with the adaptation's env steps.
        out: where the adaptation-curve PNG goes.
    """
    from ssm_metarl.demo import run_demo

    result = run_demo(model, steps, tasks, tuple(range(seeds)), trajectories, scratch=scratch, out=out,
                      progress=lambda line: print(line, flush=True))  # fmt: skip
    print(f"\n{result.model} on {result.family}: mean return over {tasks} tasks per split x {seeds} seeds "
          f"x {trajectories} episodes (± 95% CI over task-seed pairs)\n")  # fmt: skip
    print(result.table())
    print(f"\nadaptation curves: {result.plot}  ({result.seconds:.0f} s in all)")


def adapt(
    checkpoint: Annotated[str, tyro.conf.Positional],
    mode: Literal["standard", "hybrid", "both"] = "both",
    tasks: Literal["train", "test", "out_of_range"] = "test",
    steps: int = 3,
    num_tasks: int = 10,
    seeds: int = 3,
    trajectories: int = 20,
    lr: float | None = None,
    experience_weight: float = 0.1,
    buffer: str | None = None,
    out: str | None = None,
) -> None:
    """Adapt a meta-trained checkpoint to tasks of its family (standard vs hybrid) and print the table.

    Args:
        checkpoint: checkpoint folder (or a shipped model's name, see ssm_metarl.list_pretrained()).
        mode: standard (current-task data), hybrid (plus experience replay) or both; hybrid also runs standard
            so the table carries the paired difference.
        tasks: which split of the checkpoint's task family to adapt to.
        steps: adaptation (gradient) steps.
        num_tasks: tasks from the split.
        seeds: seeds per task (0..seeds-1).
        trajectories: episodes per adaptation step.
        lr: adaptation step size (default: the checkpoint's inner_lr).
        experience_weight: weight of the replay loss (hybrid).
        buffer: a saved ExperienceBuffer folder (default: filled from training tasks).
        out: write <out>.json and <out>.md as well.
    """
    from ssm_metarl.adapt import adapt_checkpoint
    from ssm_metarl.pretrained import PRETRAINED_DIR, list_pretrained

    if not Path(checkpoint).exists() and checkpoint in list_pretrained():
        checkpoint = str(PRETRAINED_DIR / checkpoint)
    comparison = adapt_checkpoint(checkpoint, mode, tasks, steps, num_tasks, tuple(range(seeds)), trajectories,
                                  lr, experience_weight, buffer, out=out)  # fmt: skip
    print(comparison.table())


def app(
    host: str = "127.0.0.1",
    port: int = 7860,
    runs_dir: str = "runs/app",
    max_jobs: int = 1,
    open_browser: bool = False,
) -> None:
    """Start the web app on http://HOST:PORT: load a shipped model, meta-train one, watch it adapt.

    Args:
        host: address to bind; the default serves this machine only (the app never makes a public link).
        port: port to listen on.
        runs_dir: where models trained in the app are saved (<runs_dir>/<session>/<name>/final).
        max_jobs: long jobs (meta-training, adaptation) that run at once; the others wait in the queue.
        open_browser: also open the page in a browser.
    """
    from ssm_metarl.app import launch

    launch(host=host, port=port, runs_dir=runs_dir, max_jobs=max_jobs, open_browser=open_browser)


COMMANDS = {
    "train": train,
    "evaluate": evaluate,
    "meta-train": meta_train,
    "adapt": adapt,
    "demo": demo,
    "app": app,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssm-metarl`` console script; errors a user can fix exit with status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # one intra-op thread unless SSM_METARL_THREADS says otherwise: on a busy 2-core machine torch's default
    # of two threads made `ssm-metarl adapt` 20x slower (measured: 17 ms per acting step instead of 0.5)
    set_training_threads(int(os.environ.get("SSM_METARL_THREADS", "1")))
    try:
        tyro.extras.subcommand_cli_from_dict(
            COMMANDS,
            args=argv,
            prog="ssm-metarl",
            use_underscores=True,
            config=(tyro.conf.FlagConversionOff,),
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
