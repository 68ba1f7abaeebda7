"""The seeds' ``main.py`` flags (both spellings: ``--env``/``--env_name``, ``--episodes``/``--num_episodes``,
``--epochs``/``--num_epochs``), translated into ``ssm-metarl`` commands. Only parsing lives here.

Without ``--mode``, ``main.py`` meta-trains (``meta_rl``), as seed 003 documents
(``python main.py --env_name CartPole-v1 --num_epochs 20`` trains with MetaMAML) and as seed 004's bare
``python main.py`` does. A flag that the chosen mode would ignore, or a flag ``main.py`` does not know, is an
error (exit 2) naming the command that does what the user asked; nothing is silently dropped. Before it runs,
``main.py`` prints the ``ssm-metarl`` command it runs, so a seed user learns the new spelling.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from collections.abc import Callable

MODES = ("policy_gradient", "improved", "ppo", "meta_rl")
DEFAULT_MODE = "meta_rl"
"""What ``main.py`` does without ``--mode`` (seed 003: ``python main.py --env_name CartPole-v1 --num_epochs
20`` meta-trains)."""

COMMON = ("env", "model", "seed", "out")
MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "policy_gradient": (*COMMON, "episodes", "lr"),
    "improved": (*COMMON, "episodes", "lr"),
    "ppo": (*COMMON, "episodes", "lr"),
    "meta_rl": (*COMMON, "epochs", "tasks_per_epoch", "inner_lr", "outer_lr", "trajectories"),
}
"""The flags (argparse ``dest`` names) each mode uses; any other flag given is refused."""

DEFAULTS: dict[str, object] = {
    "env": "CartPole-v1",
    "episodes": 200,
    "epochs": 100,
    "tasks_per_epoch": 5,
    "inner_lr": 0.01,
    "outer_lr": 0.001,
    "trajectories": 10,
    "seed": 0,
}
"""Each flag's value when not given (``lr`` and ``model`` default per mode; ``out`` to a runs/ folder)."""


NOTES: dict[tuple[str, str], str] = {
    ("meta_rl", "lr"): "In --mode meta_rl the step sizes are --outer_lr (the meta-update) and --inner_lr",
    ("meta_rl", "episodes"): "In --mode meta_rl, --trajectories sets the episodes per task per step",
    **{
        (m, "epochs"): f"In --mode {m} the budget is --episodes"
        for m in ("policy_gradient", "improved", "ppo")
    },
}
"""What the user probably meant by a flag the mode does not use."""


class LegacyUsageError(ValueError):
    """A ``main.py`` command line that would not do what it says; the message names what to run instead."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description="The seed projects' command line, on ssm-metarl (prints the ssm-metarl command it runs).",
        allow_abbrev=False,
    )
    p.add_argument("--mode", choices=MODES, default=None, help=f"what to run (default: {DEFAULT_MODE})")
    p.add_argument("--env", "--env_name", dest="env", default=None, help="Gymnasium env id (CartPole-v1)")
    p.add_argument(
        "--episodes",
        "--num_episodes",
        dest="episodes",
        type=int,
        default=None,
        help="policy_gradient/improved/ppo: training episodes (improved/ppo: x the env's time limit = env "
        "steps); default 200",
    )
    p.add_argument("--lr", type=float, default=None, help="policy_gradient/improved/ppo: learning rate")
    p.add_argument(
        "--epochs",
        "--num_epochs",
        dest="epochs",
        type=int,
        default=None,
        help="meta_rl: meta-updates (default 100)",
    )
    p.add_argument("--tasks_per_epoch", type=int, default=None, help="meta_rl: tasks per meta-update (5)")
    p.add_argument("--inner_lr", type=float, default=None, help="meta_rl: inner-loop step size (0.01)")
    p.add_argument("--outer_lr", type=float, default=None, help="meta_rl: meta step size (0.001)")
    p.add_argument("--trajectories", type=int, default=None, help="meta_rl: episodes per task per step (10)")
    p.add_argument("--model", default=None, help="policy backbone (default: ssm; improved mode: improved)")
    p.add_argument("--seed", type=int, default=None, help="seed (0)")
    p.add_argument("--out", default=None, help="output folder (default: runs/main-<mode>-<env>-s<seed>)")
    return p


def main(argv: list[str] | None = None, announce: Callable[[str], None] | None = None) -> int:
    """Run the seeds' command line ``argv`` as the ``ssm-metarl`` command it maps to; ``announce`` (main.py
    passes ``print``) sees that command first. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            raise LegacyUsageError(_unknown_message(parser, unknown))
        cmd = to_command(args)
        if announce is not None:
            announce("main.py runs: ssm-metarl " + shlex.join(cmd))
        from ssm_metarl.cli import main as cli_main

        return cli_main(cmd)
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2


def _unknown_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    known = [s for a in parser._actions for s in a.option_strings]
    parts = []
    for arg in [a for a in unknown if a.startswith("-")] or unknown:
        flag = arg.split("=", 1)[0]
        close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("-") else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        parts.append(f"{arg!r}{hint}")
    return (
        f"main.py does not know {', '.join(parts)}. Its flags: {', '.join(sorted(set(known)))}. "
        "Every ssm-metarl setting is a flag of `ssm-metarl train --help` / `ssm-metarl meta-train --help`."
    )


def given(args: argparse.Namespace) -> set[str]:
    """The flags (``dest`` names) present on the command line."""
    return {k for k, v in vars(args).items() if v is not None and k != "mode"}


def to_command(args: argparse.Namespace) -> list[str]:
    """The ``ssm-metarl`` argument list that does what ``main.py`` ``args`` ask; refuses flags the mode
    would ignore."""
    mode = args.mode or DEFAULT_MODE
    ignored = sorted(given(args) - set(MODE_FLAGS[mode]))
    if ignored:
        raise LegacyUsageError(_ignored_message(args, mode, ignored))
    v = {**DEFAULTS, **{k: val for k, val in vars(args).items() if val is not None}}
    out = args.out or _default_out(mode, str(v["env"]), int(v["seed"]))
    if mode == "meta_rl":  # an env id maps to its physics family (CartPole-v1 -> cartpole-physics)
        from ssm_metarl.envs.tasks import family_for_env_id

        cmd = ["meta-train", "--method", "maml", "--tasks", family_for_env_id(str(v["env"]))]
        cmd += ["--model", args.model or "ssm"]
        cmd += ["--meta_iterations", str(v["epochs"]), "--meta_batch_size", str(v["tasks_per_epoch"])]
        cmd += ["--inner.lr", str(v["inner_lr"]), "--outer_lr", str(v["outer_lr"])]
        cmd += ["--inner.episodes", str(v["trajectories"]), "--seed", str(v["seed"])]
        return cmd + ["--out", out]
    if mode == "policy_gradient":
        cmd = ["train", "--algo", "pg", "--episodes", str(v["episodes"]), "--model", args.model or "ssm"]
    else:
        from ssm_metarl.envs.make import make_env

        env = make_env(str(v["env"]))
        horizon = env.spec.max_episode_steps if env.spec else None
        env.close()
        steps = int(v["episodes"]) * (horizon or 1000)
        model = args.model or ("improved" if mode == "improved" else "ssm")
        cmd = ["train", "--algo", "ppo", "--total_steps", str(steps), "--model", model]
    cmd += ["--env", str(v["env"]), "--seed", str(v["seed"])]
    if args.lr is not None:
        cmd += ["--lr", str(args.lr)]
    return cmd + ["--out", out]


def _ignored_message(args: argparse.Namespace, mode: str, ignored: list[str]) -> str:
    flags = ", ".join("--" + k for k in ignored)
    how = "" if args.mode else f" (without --mode, main.py runs --mode {DEFAULT_MODE}, as seed 003 documents)"
    msg = f"{flags} would be ignored by --mode {mode}{how}."
    msg += "".join(f" {NOTES[mode, k]}." for k in ignored if (mode, k) in NOTES)
    fits = [m for m in MODES if given(args) <= set(MODE_FLAGS[m])]
    if fits:
        pairs = [
            x for k, v in vars(args).items() if v is not None and k != "mode" for x in ("--" + k, str(v))
        ]
        suggestion = shlex.join(["python", "main.py", "--mode", fits[0], *pairs])
        return msg + f" To use {flags}, run `{suggestion}`; or drop {flags}."
    users = {k: [m for m in MODES if k in MODE_FLAGS[m]] for k in ignored}
    where = "; ".join(f"--{k} belongs to --mode {' / '.join(ms)}" for k, ms in users.items())
    return msg + f" No one mode uses all the flags given: {where}. Drop the flags of the other mode."


def _default_out(mode: str, env: str, seed: int) -> str:
    """``runs/main-<mode>-<env>-s<seed>``: the seeds' modes never write into an ``ssm-metarl`` run folder."""
    return f"runs/main-{mode}-{env.replace('/', '_')}-s{seed}"


if __name__ == "__main__":
    sys.exit(main())
