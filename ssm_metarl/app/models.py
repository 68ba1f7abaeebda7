"""The "Load pre-trained model" tab: what a model is, in numbers a newcomer can read.

For a shipped model the card and the measured returns come from its folder (``README.md`` and
``results.json``, written by ``benchmarks/make_pretrained.py``); for a model trained in the app they come
from the checkpoint's metadata, measured right after training on held-out tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssm_metarl.app.session import AppSession, UserError
from ssm_metarl.checkpoint import CheckpointError, load_metadata, load_policy
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.pretrained import model_card, pretrained_info

ZERO_SHOT_HEADERS = [
    "tasks",
    "zero-shot return (RL²: episode 1)",
    "after 1 step (RL²: episode 2)",
    "after 3 steps (RL²: last episode)",
    "random policy",
]
"""Gradient-adapted models fill the columns with the return after 0, 1 and 3 steps; in-context (RL²) models
with the return of the first, second and last episode of a trial ("—" for the second where a trial is one
episode, as on bandits)."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything the app shows about one model."""

    label: str
    path: Path
    shipped: bool
    family: str | None
    algo: str
    kind: str
    parameters: int
    card: str
    """Markdown model card."""
    zero_shot: list[list[str]]
    """Rows under :data:`ZERO_SHOT_HEADERS`: measured returns per task split."""
    inner_lr: float | None
    """The inner-loop step size it was meta-trained with (the natural adaptation lr), if known."""
    episodes_per_trial: int | None
    """RL² models: episodes per trial (they adapt in context, not by gradient steps)."""

    @property
    def in_context(self) -> bool:
        return self.algo == "rl2"


def _cell(x: Any) -> str:
    if isinstance(x, dict) and "mean" in x:
        half = x.get("ci95", 0.0)
        return f"{x['mean']:.1f} ± {half:.1f}" if half else f"{x['mean']:.1f}"
    if isinstance(x, int | float):
        return f"{x:.1f}"
    return ""


def zero_shot_rows(meta: dict[str, Any]) -> list[list[str]]:
    """The measured returns in a checkpoint's metadata (plus ``results`` for shipped models) as rows."""
    rows = []
    results = meta.get("results", {})
    n = results.get("eval_tasks_per_split")
    for split in ("train", "test", "out_of_range"):
        r = results.get(split)
        if not isinstance(r, dict):
            continue
        name = {"train": "training tasks", "test": "held-out tasks", "out_of_range": "out-of-range tasks"}[
            split
        ]
        if "episodes" in r:  # in context (RL²): the return of each episode of a trial
            eps = r["episodes"]
            # a one-episode trial (bandits: one episode of N pulls) has no second episode
            cells = [_cell(eps[0]), _cell(eps[1]) if len(eps) > 1 else "—", _cell(eps[-1])]
        else:  # gradient steps (MAML): after 0, 1 and 3 steps
            curve = r.get("maml", {})
            cells = [_cell(curve.get(f"after_{k}")) for k in (0, 1, 3)]
        rows.append([f"{name} ({n})" if n else name, *cells, _cell(r.get("random"))])
    ev = meta.get("app_evaluation")
    if ev:
        rows.append(
            [
                f"held-out tasks ({ev['tasks']})",
                _cell(ev["zero_shot"]),
                _cell(ev.get("after_1")),
                "",
                _cell(ev["random"]),
            ]
        )
    return rows or [["not measured", "", "", "", ""]]


def _trained_card(label: str, meta: dict[str, Any], policy: ActorCritic) -> str:
    cfg = meta.get("config", {})
    algo = {"maml": "MAML", "rl2": "RL² (in-context)"}.get(meta.get("algo", ""), meta.get("algo", "?"))
    lines = [
        f"# {label}",
        "",
        f"A `{policy.describe().get('kind', '?')}` policy meta-trained in this app session with {algo} on "
        f"the `{meta.get('family')}` task family.",
        "",
        f"- env steps: {meta.get('env_steps', 0):,}"
        + (" (cancelled early)" if meta.get("cancelled") else ""),
        f"- seed: {cfg.get('run', {}).get('seed', '?')}",
    ]
    if meta.get("algo") == "maml":
        inner = cfg.get("inner", {})
        lines.append(
            f"- {meta.get('iterations_done', '?')} meta-iterations x {cfg.get('meta_batch_size')} tasks x "
            f"{inner.get('episodes')} trajectories, {inner.get('steps')} inner step(s) of lr "
            f"{inner.get('lr')}, outer Adam lr {cfg.get('outer_lr')}"
        )
    else:
        lines.append(f"- {meta.get('episodes_per_trial')} episodes per trial, PPO lr {cfg.get('lr')}")
    lines.append(f"- checkpoint: `{meta.get('checkpoint', '')}`")
    return "\n".join(lines) + "\n"


def model_info(session: AppSession, label: str | None) -> ModelInfo:
    """Describe model ``label`` of ``session`` (shipped or trained here); UserError if it cannot be read."""
    path = session.path_of(label)
    assert label is not None
    shipped = session.is_shipped(label)
    try:
        meta = pretrained_info(label) if shipped else load_metadata(path)
        policy = load_policy(path)
    except CheckpointError as e:
        raise UserError(f"Model {label!r} cannot be loaded: {e}") from e
    card = (
        model_card(label)
        if shipped and (path / "README.md").is_file()
        else _trained_card(label, meta, policy)
    )
    cfg = meta.get("config", {})
    inner_lr = cfg.get("inner", {}).get("lr") if meta.get("algo") == "maml" else None
    return ModelInfo(
        label=label,
        path=path,
        shipped=shipped,
        family=meta.get("family"),
        algo=str(meta.get("algo", "unknown")),
        kind=str(policy.describe().get("kind", "?")),
        parameters=sum(p.numel() for p in policy.parameters()),
        card=card,
        zero_shot=zero_shot_rows(meta),
        inner_lr=float(inner_lr) if inner_lr is not None else None,
        episodes_per_trial=meta.get("episodes_per_trial"),
    )


def facts_markdown(info: ModelInfo) -> str:
    """The one-glance summary above the card."""
    algo = {"maml": "MAML (adapts by gradient steps)", "rl2": "RL² (adapts in context)"}.get(
        info.algo, info.algo
    )
    origin = "shipped with the package" if info.shipped else "trained in this session"
    return (
        f"**{info.label}** ({origin})\n\n"
        f"| model | parameters | task family | meta-learning |\n|---|---|---|---|\n"
        f"| `{info.kind}` | {info.parameters:,} | `{info.family}` | {algo} |\n"
    )


__all__ = ["ZERO_SHOT_HEADERS", "ModelInfo", "facts_markdown", "model_info", "zero_shot_rows"]
