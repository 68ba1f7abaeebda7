"""The seeds' ``main.py`` flags (both spellings: ``--env``/``--env_name``, ``--episodes``/``--num_episodes``,
``--epochs``/``--num_epochs``), translated into ``ssm-metarl`` commands. Only parsing lives here."""

from __future__ import annotations

import argparse
import sys

MODES = ("policy_gradient", "improved", "ppo", "meta_rl")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="The seed projects' command line, on ssm-metarl.")
    p.add_argument("--mode", choices=MODES, default="policy_gradient", help="what to run")
    p.add_argument("--env", "--env_name", dest="env", default="CartPole-v1", help="Gymnasium env id")
    p.add_argument(
        "--episodes",
        "--num_episodes",
        dest="episodes",
        type=int,
        default=200,
        help="training episodes (improved/ppo: episodes x the env's time limit = env steps)",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: tuned per env family)")
    p.add_argument(
        "--epochs", "--num_epochs", dest="epochs", type=int, default=100, help="meta_rl: meta-updates"
    )
    p.add_argument("--tasks_per_epoch", type=int, default=5, help="meta_rl: tasks per meta-update")
    p.add_argument("--inner_lr", type=float, default=0.01, help="meta_rl: inner-loop step size")
    p.add_argument("--outer_lr", type=float, default=0.001, help="meta_rl: meta step size")
    p.add_argument("--trajectories", type=int, default=10, help="meta_rl: episodes per task per step")
    p.add_argument("--model", default=None, help="policy backbone (default: ssm; improved mode: improved)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: runs/main-<mode>-<env>-s<seed>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    from ssm_metarl.cli import main as cli_main

    if args.mode == "meta_rl":  # an env id maps to its physics family (CartPole-v1 -> cartpole-physics)
        from ssm_metarl.envs.tasks import family_for_env_id

        cmd = [
            "meta-train",
            "--method",
            "maml",
            "--tasks",
            family_for_env_id(args.env),
            "--model",
            args.model or "ssm",
        ]
        cmd += ["--meta_iterations", str(args.epochs), "--meta_batch_size", str(args.tasks_per_epoch)]
        cmd += ["--inner.lr", str(args.inner_lr), "--outer_lr", str(args.outer_lr)]
        cmd += ["--inner.episodes", str(args.trajectories), "--seed", str(args.seed)]
        return cli_main(cmd + ["--out", args.out or _default_out(args)])
    if args.mode == "policy_gradient":
        cmd = ["train", "--algo", "pg", "--episodes", str(args.episodes), "--model", args.model or "ssm"]
    else:
        from ssm_metarl.envs.make import make_env

        env = make_env(args.env) if args.mode in ("improved", "ppo") else None
        horizon = env.spec.max_episode_steps if env is not None and env.spec else None
        if env is not None:
            env.close()
        steps = args.episodes * (horizon or 1000)
        model = args.model or ("improved" if args.mode == "improved" else "ssm")
        cmd = ["train", "--algo", "ppo", "--total_steps", str(steps), "--model", model]
    cmd += ["--env", args.env, "--seed", str(args.seed)]
    if args.lr is not None:
        cmd += ["--lr", str(args.lr)]
    return cli_main(cmd + ["--out", args.out or _default_out(args)])


def _default_out(args: argparse.Namespace) -> str:
    """``runs/main-<mode>-<env>-s<seed>``: the seeds' modes never write into an ``ssm-metarl`` run folder."""
    return f"runs/main-{args.mode}-{args.env.replace('/', '_')}-s{args.seed}"


if __name__ == "__main__":
    sys.exit(main())
