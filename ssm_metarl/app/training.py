"""The "Meta-training" tab: one MAML or RL² run in a background thread, streamed to the page, cancellable.

:func:`run_training` starts ``train_maml`` or ``train_rl2`` from the family's recipe (the same config the CLI
and the benchmarks start from, with the tab's controls as overrides) as the session's job
(:func:`~ssm_metarl.app.jobs.run_job`), whose per-iteration callback hands each metrics row to the page and
returns the session's stop flag (so Cancel ends the run after the current iteration). When the run ends,
finished or cancelled, the policy is measured zero-shot on a few held-out tasks and saved as a checkpoint
under the session's folder; it then appears in this session's model lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from ssm_metarl.adapt import evaluate_adaptation
from ssm_metarl.app.jobs import Done, run_job, stop_job
from ssm_metarl.app.session import AppSession, UserError
from ssm_metarl.checkpoint import save_policy
from ssm_metarl.config import MODEL_KINDS, MAMLConfig, ModelKind, PPOConfig
from ssm_metarl.envs.tasks import TASK_FAMILIES, get_family
from ssm_metarl.envs.trial import rl2_env_id
from ssm_metarl.errors import InputError
from ssm_metarl.meta.evaluate import random_policy_returns
from ssm_metarl.meta.maml import train_maml
from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.recipes import recipe

FAMILIES = sorted(TASK_FAMILIES)
"""Every registered task family can be meta-trained here."""
KINDS = list(MODEL_KINDS)
METHODS = ["MAML", "RL²"]
EVAL_TASKS = 3
JOB = "meta-training"
"""``AppSession.job`` while this tab's run goes."""


@dataclass(frozen=True)
class TrainRequest:
    """What the Meta-training tab's controls say."""

    family: str = "cartpole-physics"
    kind: str = "ssm"
    method: Literal["MAML", "RL²"] = "MAML"
    name: str = "my-model"
    iterations: int = 10
    """MAML: meta-updates (the budget)."""
    meta_batch: int = 6
    """MAML: tasks per meta-update."""
    trajectories: int = 8
    """MAML: episodes per task per inner step and for the query set; also the evaluation episodes."""
    inner_steps: int = 1
    inner_lr: float = 0.1
    outer_lr: float = 1e-3
    first_order: bool = False
    total_steps: int = 20_000
    """RL²: PPO env steps (the budget)."""
    episodes_per_trial: int = 2
    rl2_lr: float = 1e-3
    hidden_dim: int = 64
    seed: int = 0


def family_defaults(family: str, method: str) -> dict[str, float]:
    """The recipe's learning rates for ``family`` (the tab's controls start there)."""
    if method == "MAML":
        cfg = recipe("maml", family)
        return {"inner_lr": cfg.inner.lr, "outer_lr": cfg.outer_lr}
    return {"rl2_lr": recipe("rl2", family).lr}


def check_request(req: TrainRequest) -> None:
    """UserError for a combination that cannot run, saying what to change."""
    if req.family not in FAMILIES:
        raise UserError(f"Unknown task family {req.family!r}; pick one of {', '.join(FAMILIES)}.")
    if req.kind not in KINDS:
        raise UserError(f"Unknown model kind {req.kind!r}; pick one of {', '.join(KINDS)}.")
    if req.method not in METHODS:
        raise UserError(f"Unknown method {req.method!r}; pick MAML or RL².")
    if req.method == "MAML" and min(req.iterations, req.meta_batch, req.trajectories) < 1:
        raise UserError("MAML needs at least 1 meta-iteration, 1 task per batch and 1 trajectory per task.")
    if req.method == "RL²":
        batch = recipe("rl2", req.family).batch_size
        if req.total_steps < batch:
            raise UserError(
                f"RL² trains with PPO on batches of {batch:,} env steps on {req.family}: give it a budget "
                f"of at least {batch:,} env steps (you asked for {req.total_steps:,})."
            )


def _kind(kind: str) -> ModelKind:
    if kind not in MODEL_KINDS:
        raise UserError(f"Unknown model kind {kind!r}; pick one of {', '.join(MODEL_KINDS)}.")
    return kind  # type: ignore[return-value]


def _model(base: Any, req: TrainRequest) -> Any:
    return base.replace(kind=req.kind, hidden_dim=req.hidden_dim, state_dim=req.hidden_dim)


def _with_controls(base: Any, req: TrainRequest, out_dir: Path | None, **changes: Any) -> Any:
    """The recipe ``base`` with the tab's model size, seed and output folder, plus ``changes``."""
    run = base.run.replace(seed=req.seed, out_dir=None if out_dir is None else str(out_dir), progress=False)
    try:
        return base.replace(model=_model(base.model, req), run=run, **changes)
    except InputError as e:
        raise UserError(str(e)) from e


def maml_config(req: TrainRequest, out_dir: Path | None) -> MAMLConfig:
    """``recipe("maml", family, kind)`` with the tab's controls."""
    base = recipe("maml", req.family, _kind(req.kind))
    inner = {"steps": req.inner_steps, "lr": req.inner_lr, "episodes": req.trajectories}
    return _with_controls(
        base,
        req,
        out_dir,
        inner=base.inner.replace(**inner),
        meta_iterations=req.iterations,
        meta_batch_size=req.meta_batch,
        outer_lr=req.outer_lr,
        first_order=req.first_order,
    )


def rl2_config(req: TrainRequest, out_dir: Path | None) -> PPOConfig:
    """``recipe("rl2", family, kind)`` with the tab's controls."""
    return _with_controls(
        recipe("rl2", req.family, _kind(req.kind)),
        req,
        out_dir,
        env_id=rl2_env_id(req.family, req.episodes_per_trial),
        total_steps=req.total_steps,
        lr=req.rl2_lr,
    )


@dataclass
class Progress:
    """What the page shows while a run goes and when it ends."""

    method: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    label: str | None = None
    """The new model's name, once it is saved."""
    message: str = ""


def _evaluate(policy: ActorCritic, req: TrainRequest) -> dict[str, Any]:
    """Zero-shot return on the first EVAL_TASKS held-out tasks (RL²: first and last episode of a trial)."""
    tasks = get_family(req.family).test[:EVAL_TASKS]
    random = random_policy_returns(req.family, tasks, req.trajectories, req.seed)
    if req.method == "RL²":
        r = evaluate_in_context(policy, req.family, tasks, req.episodes_per_trial, (req.seed,)).summary()
        return {"tasks": len(tasks), "zero_shot": r[0].mean, "after_1": r[-1].mean, "random": random}
    cfg = recipe("adapt", req.family).replace(steps=0, episodes=req.trajectories)
    zero_shot = evaluate_adaptation(policy, req.family, tasks, cfg, (req.seed,)).at(0).mean
    return {"tasks": len(tasks), "zero_shot": zero_shot, "random": random}


def _train(
    session: AppSession, req: TrainRequest, label: str, report: Callable[[dict[str, Any]], None]
) -> tuple[str, Path, dict]:
    """The job's body: train (each metrics row to ``report``), measure, save, register. Returns (label,
    checkpoint, metadata)."""
    out = session.run_dir / label

    def callback(row: dict[str, Any]) -> bool:
        report(row)
        return session.stop.is_set()

    if req.method == "MAML":
        cfg: Any = maml_config(req, out)
        result: Any = train_maml(cfg, callback=callback)
        meta = {"algo": "maml", "env_steps": result.env_steps, "iterations_done": len(result.metrics)}
    else:
        cfg = rl2_config(req, out)
        result = train_rl2(cfg, callback=callback)
        steps = [r["global_step"] for r in result.metrics if "update" in r]
        meta = {
            "algo": "rl2",
            "env_steps": steps[-1] if steps else 0,
            "episodes_per_trial": req.episodes_per_trial,
        }
    path = out / "final"
    meta.update(
        {
            "family": req.family,
            "name": label,
            "config": cfg.to_dict(),
            "source": "ssm-metarl app",
            "cancelled": session.stop.is_set(),
            "checkpoint": str(path),
        }
    )
    meta["app_evaluation"] = _evaluate(result.policy, req)
    save_policy(path, result.policy, meta)
    session.trained[label] = path
    return label, path, meta


def _refusal(running: str | None) -> str:
    if running == "self-improvement":
        return (
            "This session is running the self-improvement loop: wait for it or press Stop in the "
            "Self-improvement tab."
        )
    return "This session is already meta-training a model: wait for it or press Cancel."


def run_training(session: AppSession, req: TrainRequest, poll_seconds: float = 0.25) -> Iterator[Progress]:
    """Meta-train as ``req`` says, as the session's job; yields a Progress after each iteration and a final
    one (``done``).

    Raises UserError before starting for a request that cannot run, or when this session already runs a job.
    """
    check_request(req)
    label = session.unique_name(req.name)
    job = run_job(
        session,
        JOB,
        partial(_train, session, req, label),
        refusal=_refusal,
        failed="Meta-training failed",
        poll_seconds=poll_seconds,
    )
    progress = Progress(req.method)
    with closing(job):
        for event in job:
            if isinstance(event, Done):
                label, path, meta = event.result
                progress.done, progress.label = True, label
                progress.message = final_message(label, path, meta)
                yield progress
            elif event.updates:
                progress.rows.extend(event.updates)
                yield replace(progress, rows=list(progress.rows))  # a snapshot: the page may lag


def status_line(p: Progress, req: TrainRequest) -> str:
    """One line about the latest iteration."""
    if not p.rows:
        return "Starting ..."
    r = p.rows[-1]
    if p.method == "MAML":
        return (
            f"Meta-iteration {r['iteration']}/{req.iterations} · {r['env_steps']:,} env steps · "
            f"{r['seconds']:.0f} s · return before the inner step {r['return_before']:.1f}, after it "
            f"{r['return_after']:.1f}"
        )
    return (
        f"PPO update {r['update']} · {r['global_step']:,}/{req.total_steps:,} env steps · "
        f"{r['seconds']:.0f} s · trial return (last 20) {r['return_mean20']:.1f}"
    )


def final_message(label: str, path: Path, meta: dict[str, Any]) -> str:
    ev = meta["app_evaluation"]
    how = "Cancelled; the policy as it was is" if meta["cancelled"] else "Done. The policy is"
    zs = f"zero-shot return {ev['zero_shot']:.1f}"
    if meta["algo"] == "rl2":
        zs = f"return in episode 1 of a trial {ev['zero_shot']:.1f}, in the last {ev['after_1']:.1f}"
    return (
        f"{how} saved as **{label}** (`{path}`) and can now be picked in the other tabs. On "
        f"{ev['tasks']} held-out tasks: {zs} (random policy {ev['random']:.1f})."
    )


def request_stop(session: AppSession | None) -> str:
    """The Cancel button: the running job stops after its current iteration."""
    if not stop_job(session, JOB):
        return "Nothing to cancel: no meta-training is running in this session."
    return "Cancelling after the current iteration ..."


__all__ = [
    "FAMILIES",
    "KINDS",
    "METHODS",
    "Progress",
    "TrainRequest",
    "check_request",
    "family_defaults",
    "final_message",
    "maml_config",
    "request_stop",
    "rl2_config",
    "run_training",
    "status_line",
]
