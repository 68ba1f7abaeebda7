"""The ``ssm-metarl`` command line: parses, calls one public function, renders. No algorithm logic here.

Every subcommand is a dataclass parsed by tyro, so ``--help`` is generated from the field docstrings. The
training subcommands start from the named recipe (:mod:`ssm_metarl.recipes`) that their selecting flags
name, and every other flag overrides one field of it::

    ssm-metarl train [--algo ppo|pg] [--env ENV_ID] [--model KIND] [config flags]
    ssm-metarl meta-train [--method maml|rl2] [--tasks FAMILY] [--model KIND] [--episodes_per_trial K] [...]
    ssm-metarl adapt CHECKPOINT [--tasks SPLIT] [adaptation flags]
    ssm-metarl evaluate CHECKPOINT | demo | app

``SSM_METARL_BUDGET=0.01`` scales every budget by 0.01 (training env steps, episodes and meta-iterations; the
tasks measured after meta-training; the tasks, seeds and episodes of ``adapt``), each to at least its
smallest useful value, for smoke runs of a documented command as written. Exit status: 0 done, 2 bad input (``error: ...``, no
traceback), 3 the run diverged (``error: ...`` naming the last good checkpoint); anything else is a bug
and shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from ssm_metarl.config import (
    BUDGET_ENV,
    MODEL_KINDS,
    AdaptConfig,
    Checked,
    MAMLConfig,
    PGConfig,
    PPOConfig,
    Range,
    budget_from_env,
    scale_budget,
)
from ssm_metarl.errors import ConfigError, DivergenceError, InputError
from ssm_metarl.seeding import set_training_threads

SPLITS = ("train", "validation", "test", "out_of_range")
logger = logging.getLogger("ssm_metarl.cli")


# ----- the command dataclasses ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig(Checked):
    """How a meta-trained policy is measured right after training (``docs/concepts/evaluation.md``)."""

    split: Literal["validation", "test", "out_of_range"] = "test"
    """which fixed task list to measure on"""
    num_tasks: Annotated[int, Range(ge=1, le=10_000)] = 20
    """the first this many tasks of the split"""
    seeds: tuple[int, ...] = (0,)
    """evaluation seeds"""
    steps: Annotated[int, Range(ge=0, le=1000)] = 3
    """MAML: adaptation steps to measure (in-context agents: every episode of a trial)"""


@dataclass(frozen=True)
class MAMLCommand(MAMLConfig):
    """Meta-train with MAML, then measure adaptation on held-out tasks."""

    eval: EvalConfig = EvalConfig()
    """how the policy is measured after meta-training"""


@dataclass(frozen=True)
class RL2Command(PPOConfig):
    """Meta-train in context (RL²: PPO over trials), then measure each episode of a trial on held-out tasks."""

    eval: EvalConfig = EvalConfig()
    """how the policy is measured after meta-training"""


def _base(cmd: Any, cls: type) -> Any:
    """The training config inside a command (the command's fields minus ``eval``)."""
    return cls(**{f.name: getattr(cmd, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class AdaptCommand(Checked):
    """Adapt a meta-trained checkpoint to tasks of its family (standard vs hybrid) and print the table."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder, or a shipped model's name (ssm_metarl.list_pretrained())"""
    adapt: tyro.conf.OmitArgPrefixes[AdaptConfig] = AdaptConfig()
    mode: Literal["standard", "hybrid", "both"] = "both"
    """standard (current-task data), hybrid (plus experience replay) or both; hybrid also runs standard, so
    the table carries the paired difference"""
    tasks: Literal["train", "validation", "test", "out_of_range"] = "test"
    """which split of the checkpoint's task family to adapt to"""
    num_tasks: Annotated[int, Range(ge=1, le=10_000)] = 10
    """the first this many tasks of the split"""
    seeds: Annotated[int, Range(ge=1, le=1000)] = 3
    """evaluation seeds 0..seeds-1"""
    buffer: str | None = None
    """a saved ExperienceBuffer folder for hybrid (default: filled from training tasks)"""
    out: str | None = None
    """also write <out>.json and <out>.md"""


@dataclass(frozen=True)
class EvaluateCommand(Checked):
    """Evaluate a saved policy: mean return over seeded episodes, deterministic and stochastic apart."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder (model.safetensors + config.json)"""
    env: str | None = None
    """Gymnasium env id (default: the one the checkpoint was trained on)"""
    episodes: Annotated[int, Range(ge=1, le=100_000)] = 10
    """evaluation episodes for each mode"""
    seed: Annotated[int, Range(ge=0, le=2**31 - 1)] = 10_000
    """seed of the first episode"""
    json_out: bool = False
    """print JSON instead of a table"""


@dataclass(frozen=True)
class DemoCommand(Checked):
    """The main job (make demo): the shipped MAML-trained SSM policy on navigation goals it has never seen,
    zero-shot and after standard and hybrid adaptation, against random, constant and PPO from scratch, with its
    paths before and after; and the shipped in-context SSM policy on the same goals, episode by episode."""

    model: str = "navigation-maml-ssm"
    """a shipped MAML model (ssm_metarl.list_pretrained(); cartpole-ssm is the other)"""
    steps: Annotated[int, Range(ge=1, le=100)] = 3
    """adaptation steps"""
    tasks: Annotated[int, Range(ge=1, le=20)] = 5
    """tasks per split (held-out and out-of-range)"""
    seeds: Annotated[int, Range(ge=1, le=100)] = 2
    """seeds per task (0..seeds-1)"""
    episodes: Annotated[int, Range(ge=1, le=1000)] = 8
    """episodes per evaluation and per adaptation step"""
    scratch: bool = True
    """also train PPO from scratch on every task (first seed) with the adaptation's env steps"""
    out: str = "runs/demo"
    """where the adaptation-curve PNG goes"""
    in_context: str | None = "navigation-ssm"
    """a shipped in-context (RL²) model shown adapting across the episodes of a trial (None: skip)"""


@dataclass(frozen=True)
class AppCommand(Checked):
    """Start the web app on http://HOST:PORT: load a shipped model, meta-train one, watch it adapt."""

    host: str = "127.0.0.1"
    """address to bind; the default serves this machine only (the app never makes a public link)"""
    port: Annotated[int, Range(ge=1, le=65535)] = 7860
    """port to listen on"""
    runs_dir: str = "runs/app"
    """where models trained in the app are saved (<runs_dir>/<session>/<name>/final)"""
    max_jobs: Annotated[int, Range(ge=1, le=64)] = 1
    """long jobs (meta-training, adaptation) that run at once; the others wait in the queue"""
    open_browser: bool = False
    """also open the page in a browser"""


# ----- parsing ----------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """A parsed command line: the subcommand, its config, and what the budget scale did."""

    command: str
    config: Any
    budget_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _tyro(cls: type, default: Any, args: list[str], prog: str, description: str | None = None) -> Any:
    return tyro.cli(
        cls,
        default=default,
        args=args,
        prog=prog,
        description=description,
        use_underscores=True,
        config=(tyro.conf.FlagConversionOff,),
    )


def _preparse(
    args: list[str], *specs: tuple[tuple[str, ...], dict[str, Any]]
) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False, prog="ssm-metarl")
    for names, kwargs in specs:
        p.add_argument(*names, **kwargs)
    try:
        return p.parse_known_args(args)
    except SystemExit as e:  # argparse printed the problem; keep the exit status of bad input
        raise SystemExit(2) from e


def _out_dir(cfg: Any, **names: Any) -> Any:
    """Fill the {env}/{model}/{algo}/{seed}/{family} fields of the run's out_dir template."""
    out = cfg.run.out_dir
    if out is None or "{" not in out:
        return cfg
    try:
        return cfg.replace(run__out_dir=out.format(seed=cfg.run.seed, model=cfg.model.kind, **names))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"out_dir template {out!r} has an unknown field {e}") from e


def _scaled(cfg: Any) -> tuple[Any, float | None]:
    scale = budget_from_env()
    return (cfg, None) if scale is None else (scale_budget(cfg, scale), scale)


def _shrink(n: int, scale: float | None, least: int) -> int:
    return n if scale is None else max(least, round(n * scale))


MODEL_FLAG = (("--model",), {"choices": MODEL_KINDS, "default": None, "help": "policy backbone"})


def parse_train(args: list[str]) -> Parsed:
    from ssm_metarl.recipes import recipe

    known, rest = _preparse(
        args,
        (("--algo",), {"choices": ("ppo", "pg"), "default": "ppo"}),
        (("--env", "--env_id"), {"default": "CartPole-v1", "dest": "env"}),
        MODEL_FLAG,
    )
    base = recipe(known.algo, known.env, known.model)
    base = base.replace(run__out_dir="runs/{env}-{model}-{algo}-s{seed}")
    cls = PPOConfig if known.algo == "ppo" else PGConfig
    desc = (
        f"Train a policy with {'recurrent PPO + GAE' if known.algo == 'ppo' else 'REINFORCE with a baseline'} "
        f"on {known.env}, starting from recipe({known.algo!r}, {known.env!r}). Selecting flags: --algo ppo|pg, "
        "--env ENV_ID, --model KIND. out_dir may use {env} {model} {algo} {seed}."
    )
    cfg = _tyro(cls, base, rest, f"ssm-metarl train --algo {known.algo} --env {known.env}", desc)
    cfg = _out_dir(cfg, env=known.env.replace("/", "_"), algo=known.algo)
    cfg, scale = _scaled(cfg)
    return Parsed("train", cfg, scale, {"algo": known.algo})


def parse_meta_train(args: list[str]) -> Parsed:
    from ssm_metarl.envs.trial import rl2_env_id
    from ssm_metarl.recipes import recipe

    known, rest = _preparse(
        args,
        (("--method",), {"choices": ("maml", "rl2"), "default": "maml"}),
        (("--tasks", "--family"), {"default": "navigation-2d", "dest": "tasks"}),
        MODEL_FLAG,
        (("--episodes_per_trial", "--episodes-per-trial"), {"type": int, "default": None}),
    )
    template = "runs/meta-{algo}-{family}-{model}-s{seed}"
    if known.method == "maml":
        if known.episodes_per_trial is not None:
            raise ConfigError("--episodes_per_trial is an RL² setting; MAML adapts by gradient steps")
        cfg: Any = recipe("maml", known.tasks, known.model).replace(run__out_dir=template)
        command: Any = MAMLCommand(**vars(cfg), eval=EvalConfig(steps=cfg.inner.steps + 2))
        cls: type = MAMLCommand
        base_cls: type = MAMLConfig
    else:
        cfg = recipe("rl2", known.tasks, known.model).replace(run__out_dir=template)
        if known.episodes_per_trial is not None:
            cfg = cfg.replace(env_id=rl2_env_id(known.tasks, known.episodes_per_trial))
        command, cls, base_cls = RL2Command(**vars(cfg)), RL2Command, PPOConfig
    desc = (
        f"Meta-train on {known.tasks} with {known.method}, starting from recipe({known.method!r}, "
        f"{known.tasks!r}). Selecting flags: --method maml|rl2, --tasks FAMILY, --model KIND, "
        "--episodes_per_trial K (rl2). out_dir may use {algo} {family} {model} {seed}."
    )
    parsed = _tyro(
        cls, command, rest, f"ssm-metarl meta-train --method {known.method} --tasks {known.tasks}", desc
    )
    cfg = _out_dir(_base(parsed, base_cls), algo=known.method, family=known.tasks)
    cfg, scale = _scaled(cfg)
    ev = parsed.eval.replace(num_tasks=_shrink(parsed.eval.num_tasks, scale, 2))
    return Parsed("meta-train", cfg, scale, {"method": known.method, "family": known.tasks, "eval": ev})


def _checkpoint_path(name: str) -> str:
    from ssm_metarl.pretrained import PRETRAINED_DIR, list_pretrained

    if not Path(name).exists() and name in list_pretrained():
        return str(PRETRAINED_DIR / name)
    return name


def parse_adapt(args: list[str]) -> Parsed:
    from ssm_metarl.checkpoint import load_metadata, read_config
    from ssm_metarl.recipes import adapt_recipe

    if not args or args[0].startswith(
        "-"
    ):  # the checkpoint comes first; without it, tyro says what is missing
        return Parsed("adapt", _tyro(AdaptCommand, None, args, "ssm-metarl adapt", AdaptCommand.__doc__))
    path = _checkpoint_path(args[0])
    family = load_metadata(path).get("family")
    if family is None:
        raise InputError(f"{path} records no task family in its metadata, so there is nothing to adapt it to")
    kind = read_config(path).get("policy", {}).get("kind")  # the recipe for its backbone
    default = AdaptCommand(args[0], adapt_recipe(family, kind))
    cmd = _tyro(AdaptCommand, default, args, "ssm-metarl adapt", AdaptCommand.__doc__)
    scale = budget_from_env()
    if scale is not None:
        cmd = cmd.replace(
            num_tasks=_shrink(cmd.num_tasks, scale, 1),
            seeds=_shrink(cmd.seeds, scale, 1),
            adapt=cmd.adapt.replace(episodes=_shrink(cmd.adapt.episodes, scale, 2)),
        )
    return Parsed("adapt", cmd, scale, {"family": family, "path": path})


def _simple(name: str, cls: type) -> Callable[[list[str]], Parsed]:
    def parse(args: list[str]) -> Parsed:
        return Parsed(name, _tyro(cls, None, args, f"ssm-metarl {name}", cls.__doc__))

    return parse


PARSERS: dict[str, Callable[[list[str]], Parsed]] = {
    "train": parse_train,
    "meta-train": parse_meta_train,
    "adapt": parse_adapt,
    "evaluate": _simple("evaluate", EvaluateCommand),
    "demo": _simple("demo", DemoCommand),
    "app": _simple("app", AppCommand),
    "rsi": lambda args: parse_rsi(args),  # defined with its runner below
}

SUMMARY = {
    "train": "train a policy on a Gymnasium env (PPO or REINFORCE)",
    "meta-train": "meta-train over a task family (MAML or in-context RL²), then measure it",
    "adapt": "adapt a meta-trained checkpoint to held-out tasks (standard vs hybrid)",
    "evaluate": "evaluate a saved policy (deterministic and stochastic)",
    "demo": "the main job: a shipped policy adapts to physics it has never seen",
    "app": "start the web app",
    "rsi": "the self-improvement loop: rsi run | start | status | logs | stop | worker",
}


def parse(argv: list[str]) -> Parsed:
    """Parse a whole command line (without the program name) into the config it would run."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    name = argv[0].replace("_", "-")
    if name not in PARSERS:
        close = difflib.get_close_matches(name, list(PARSERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown command {argv[0]!r}.{hint} Commands: {', '.join(PARSERS)}")
    return PARSERS[name](argv[1:])


def usage() -> str:
    lines = ["usage: ssm-metarl COMMAND [flags]   (ssm-metarl COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name:<12} {text}" for name, text in SUMMARY.items()]
    return "\n".join(lines)


# ----- running ----------------------------------------------------------------------------------------------
def _note_budget(p: Parsed) -> None:
    if p.budget_scale is not None:
        print(f"{BUDGET_ENV}={p.budget_scale:g}: training budgets scaled by {p.budget_scale:g}", flush=True)


def run_train(p: Parsed) -> None:
    from ssm_metarl.rl.pg import train_pg
    from ssm_metarl.rl.ppo import train_ppo

    cfg = p.config
    _note_budget(p)
    result = (train_ppo if isinstance(cfg, PPOConfig) else train_pg)(cfg)
    print(f"trained {p.extra['algo']} {cfg.model.kind} on {cfg.env_id} in {result.seconds:.1f} s")
    if result.episode_returns:
        n = min(20, len(result.episode_returns))
        print(f"mean return of the last {n} training episodes: {sum(result.episode_returns[-n:]) / n:.1f}")
    for k, v in result.final_eval.items():
        print(f"{k}: {v:.2f}")
    if cfg.run.out_dir is not None:
        out = Path(cfg.run.out_dir)
        print(f"checkpoint: {out / 'final'}   metrics: {out / 'metrics.jsonl'}   config: {out / 'run.json'}")


def run_meta_train(p: Parsed) -> None:
    from ssm_metarl.adapt import compare_adaptation
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.envs.trial import parse_rl2_env_id
    from ssm_metarl.meta.evaluate import baseline_returns
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
    from ssm_metarl.results import describe, format_table

    cfg, ev, family = p.config, p.extra["eval"], p.extra["family"]
    _note_budget(p)
    tasks = get_family(family).split(ev.split)[: ev.num_tasks]
    if isinstance(cfg, MAMLConfig):
        maml = train_maml(cfg)
        print(f"MAML on {family}: {maml.env_steps} env steps in {maml.seconds:.0f} s")
        measure = cfg.inner.replace(steps=ev.steps)
        rows = compare_adaptation(maml.policy, family, tasks, measure, ev.seeds, modes=("standard",))
    else:
        result = train_rl2(cfg)
        _, k = parse_rl2_env_id(cfg.env_id) or (family, 1)
        print(f"RL² on {family}: {cfg.num_updates * cfg.batch_size} env steps in {result.seconds:.0f} s")
        rows = {
            "random policy": baseline_returns(family, tasks, "random", 10, ev.seeds),
            "in-context": evaluate_in_context(result.policy, family, tasks, k, ev.seeds),
        }
    main = rows["standard"] if "standard" in rows else rows["in-context"]
    print(f"{ev.split} tasks of {family}: {describe(main)}")
    print(format_table(rows), end="")
    if cfg.run.out_dir is not None:
        print(f"checkpoint: {Path(cfg.run.out_dir) / 'final'}   config: {Path(cfg.run.out_dir) / 'run.json'}")


def run_adapt(p: Parsed) -> None:
    from ssm_metarl.adapt import Mode, adapt_checkpoint, comparison_header
    from ssm_metarl.results import format_table

    cmd: AdaptCommand = p.config
    _note_budget(p)
    modes: tuple[Mode, ...] = ("standard",) if cmd.mode == "standard" else ("standard", "hybrid")
    results = adapt_checkpoint(
        p.extra["path"],
        cmd.adapt,
        cmd.tasks,
        cmd.num_tasks,
        tuple(range(cmd.seeds)),
        modes,
        cmd.buffer,
        p.extra["family"],
        cmd.out,
    )
    print(comparison_header(results))
    print(format_table(results), end="")


def run_evaluate(p: Parsed) -> None:
    from ssm_metarl.checkpoint import load_metadata, load_policy
    from ssm_metarl.rl.evaluate import evaluate_policy

    cmd: EvaluateCommand = p.config
    policy = load_policy(cmd.checkpoint)
    env_id = cmd.env or load_metadata(cmd.checkpoint).get("env_id")
    if env_id is None:
        raise InputError(f"{cmd.checkpoint} does not record its env; pass --env")
    rows = {}
    for mode, det in (("deterministic", True), ("stochastic", False)):
        ev = evaluate_policy(policy, env_id, cmd.episodes, seed=cmd.seed, deterministic=det)
        rows[mode] = {"mean": ev.mean, "std": ev.std, "episodes": ev.num_episodes}
    if cmd.json_out:
        print(json.dumps({"checkpoint": cmd.checkpoint, "env_id": env_id, **rows}))
        return
    print(f"{cmd.checkpoint} on {env_id}")
    print(f"{'mode':<14} {'mean return':>12} {'std':>8} {'episodes':>9}")
    for mode, r in rows.items():
        print(f"{mode:<14} {r['mean']:>12.2f} {r['std']:>8.2f} {r['episodes']:>9d}")


def run_demo(p: Parsed) -> None:
    from ssm_metarl.demo import run_demo as demo

    c: DemoCommand = p.config
    result = demo(
        c.model,
        c.steps,
        c.tasks,
        tuple(range(c.seeds)),
        c.episodes,
        scratch=c.scratch,
        out=c.out,
        progress=lambda line: print(line, flush=True),
        in_context=c.in_context,
    )
    print(
        f"\n{result.model} on {result.family}: mean return over {c.tasks} tasks per split x {c.seeds} seeds "
        f"x {c.episodes} episodes (± 95% CI over task-seed pairs)\n"
    )
    print(result.table())
    if result.in_context:
        print(
            f"\n{result.in_context_model} on {result.in_context_family}, in context (no gradient step): the "
            f"return of each episode of one trial per goal, {c.tasks} goals per split x {c.seeds} seeds\n"
        )
        print(result.in_context_table())
    print(f"\nadaptation curves: {result.plot}  ({result.seconds:.0f} s in all)")


RSI_ACTIONS = ("run", "start", "status", "logs", "stop", "worker")


def parse_rsi(args: list[str]) -> Parsed:
    from ssm_metarl.config import RSIConfig
    from ssm_metarl.recipes import recipe
    from ssm_metarl.rsi.daemon import folder_config

    if not args or args[0] not in RSI_ACTIONS:
        raise InputError(f"ssm-metarl rsi needs an action: {' | '.join(RSI_ACTIONS)} (got {args[:1]})")
    action, rest = args[0], args[1:]
    if action in ("status", "logs", "stop"):
        p = argparse.ArgumentParser(prog=f"ssm-metarl rsi {action}", allow_abbrev=False)
        p.add_argument("--out", "--out_dir", dest="out", default="runs/rsi", help="the loop's folder")
        if action == "logs":
            p.add_argument("-f", "--follow", action="store_true", help="keep printing while the daemon runs")
            p.add_argument("--lines", type=int, default=40)
        if action == "stop":
            p.add_argument(
                "--timeout", type=float, default=600.0, help="seconds to wait for the cycle in flight"
            )
            p.add_argument("--force", action="store_true", help="SIGKILL after --timeout")
        try:
            ns = p.parse_args(rest)
        except SystemExit as e:
            raise SystemExit(2 if e.code else 0) from e
        return Parsed("rsi", ns, None, {"action": action})
    family = None
    if "--family" in rest:
        i = rest.index("--family")
        family, rest = rest[i + 1], rest[:i] + rest[i + 2 :]
    out = _preparse(rest, (("--out", "--out_dir"), {"dest": "out", "default": "runs/rsi"}))[0].out
    saved = folder_config(out)
    if saved is not None:  # resume the folder's loop: flags not given keep its values
        more = ["--start.family", family] if family is not None else []
        desc = f"Resume the self-improvement loop in {out}: flags not given keep the values it was made with."
        cfg = _tyro(RSIConfig, saved, rest + more, f"ssm-metarl rsi {action}", desc)
        return Parsed("rsi", cfg, None, {"action": action})
    family = family or "navigation-2d"
    default = RSIConfig(start=recipe("maml", family).replace(meta_iterations=20, run__out_dir="runs/rsi"))
    desc = (
        "The self-improvement loop on Optuna (docs/concepts/self-improvement.md): "
        + {
            "run": "run in this process",
            "start": "start it as a background daemon",
            "worker": "a worker training candidates of the loop on the same --out_dir and --storage",
        }[action]
        + f", starting from recipe('maml', {family!r}) trained for 20 meta-iterations. --family FAMILY selects the task family."
    )
    cfg = _tyro(RSIConfig, default, rest, f"ssm-metarl rsi {action}", desc)
    scale = budget_from_env()
    if scale is not None:  # training budgets, and the measuring: tasks, seeds, episodes
        start = scale_budget(cfg.start, scale)
        cfg = scale_budget(cfg, scale).replace(
            start=start.replace(inner__episodes=_shrink(start.inner.episodes, scale, 2)),
            eval_tasks=_shrink(cfg.eval_tasks, scale, 2),
            eval_seeds=_shrink(cfg.eval_seeds, scale, 2),
            recheck_seeds=_shrink(cfg.recheck_seeds, scale, 2),
            oor_tasks=_shrink(cfg.oor_tasks, scale, 1),
        )
    return Parsed("rsi", cfg, scale, {"action": action})


def run_rsi(p: Parsed) -> None:
    try:
        import optuna  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("the self-improvement loop needs Optuna: pip install 'ssm-metarl[rsi]'") from None
    from ssm_metarl.rsi import daemon

    action = p.extra["action"]
    if action == "run":
        from ssm_metarl.rsi.loop import SelfImprovement

        _note_budget(p)
        loop = SelfImprovement(p.config)
        reason = loop.run(
            on_cycle=lambda r: print(
                f"cycle {r.cycle}: {r.outcome} (incumbent score {r.incumbent_score:.4f})", flush=True
            )
        )
        print(f"ended: {reason}")
        print(json.dumps(loop.status(), indent=2))
    elif action == "worker":
        import signal

        from ssm_metarl.rsi.loop import work

        stop = {"asked": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))
        done = work(p.config, should_stop=lambda: stop["asked"])
        print(f"worker ended after {done} trials")
    elif action == "start":
        _note_budget(p)
        st = daemon.start(p.config)
        print(f"self-improvement daemon {st.state} on {p.config.out_dir} (pid {st.pid})")
    elif action == "status":
        st = daemon.daemon_state(p.config.out)
        note = " (a stale pid file was removed)" if st.state == "stale" else ""
        print(
            f"{p.config.out}: {st.state}{note}"
            + (f", pid {st.pid}" if st.state in ("running", "initialising") else "")
        )
        if st.summary is not None:
            print(json.dumps(st.summary, indent=2))
        for d in st.last_decisions:
            print(
                f"cycle {d['cycle']}: {d['kind']} "
                + json.dumps({k: v for k, v in d.items() if k in ("reason", "trial", "hash")})
            )
    elif action == "logs":
        for line in daemon.log_lines(p.config.out, p.config.lines, p.config.follow):
            print(line, flush=True)
    else:
        print(daemon.stop(p.config.out, p.config.timeout, p.config.force))


def run_app(p: Parsed) -> None:
    from ssm_metarl.app import launch

    c: AppCommand = p.config
    launch(host=c.host, port=c.port, runs_dir=c.runs_dir, max_jobs=c.max_jobs, open_browser=c.open_browser)


RUNNERS: dict[str, Callable[[Parsed], None]] = {
    "train": run_train,
    "meta-train": run_meta_train,
    "adapt": run_adapt,
    "evaluate": run_evaluate,
    "demo": run_demo,
    "app": run_app,
    "rsi": run_rsi,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssm-metarl`` console script (exit status: see the module docstring)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # one intra-op thread unless SSM_METARL_THREADS says otherwise: on a busy 2-core machine torch's default
    # of two threads contends with the env and other processes and makes each acting step many times slower
    set_training_threads(int(os.environ.get("SSM_METARL_THREADS", "1")))
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = parse(args)
        RUNNERS[parsed.command](parsed)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"error: the run diverged: {e}", file=sys.stderr)
        return 3
    except SystemExit as e:  # tyro and argparse exit after printing help (0) or a parse error (2)
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
