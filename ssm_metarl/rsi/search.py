"""What the self-improvement loop may propose: the search space around the incumbent and the sampler.

The space is relative and fixed (:data:`SPACE`: multipliers of the incumbent's hidden and state sizes, a
change of layer count, multipliers of its outer and inner step sizes, and the backbone kind when
``RSIConfig.kinds`` allows it), so the sampler learns across cycles which changes help, whatever the
incumbent is now. :func:`propose` turns a point of the space into the candidate's config; :func:`same_shapes`
says whether the candidate can start from the incumbent's weights.
"""

from __future__ import annotations

from typing import Any

import optuna

from ssm_metarl.config import MAMLConfig, ModelConfig, RSIConfig
from ssm_metarl.errors import ConfigError

SIZE_CHOICES = (0.8, 1.0, 1.2)
LAYER_CHOICES = (-1, 0, 1)
SPACE: dict[str, optuna.distributions.BaseDistribution] = {
    "hidden_scale": optuna.distributions.CategoricalDistribution(SIZE_CHOICES),
    "state_scale": optuna.distributions.CategoricalDistribution(SIZE_CHOICES),
    "layers_delta": optuna.distributions.CategoricalDistribution(LAYER_CHOICES),
    "outer_lr_scale": optuna.distributions.FloatDistribution(1 / 3, 3.0, log=True),
    "inner_lr_scale": optuna.distributions.FloatDistribution(0.5, 2.0, log=True),
}
"""The proposal space, relative to the incumbent (architecture +-20%, layers +-1, step sizes)."""

NEUTRAL = {
    "hidden_scale": 1.0,
    "state_scale": 1.0,
    "layers_delta": 0,
    "outer_lr_scale": 1.0,
    "inner_lr_scale": 1.0,
}
"""The point of :data:`SPACE` that changes nothing: what a parameter ``RSIConfig.search`` leaves out takes."""


def search_space(cfg: RSIConfig, incumbent: MAMLConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    """The part of :data:`SPACE` that ``cfg.search`` names, plus the backbone kind when ``cfg.kinds`` allows
    switching (the choices: the incumbent's kind and ``cfg.kinds``, in a fixed order)."""
    space: dict[str, optuna.distributions.BaseDistribution] = {k: SPACE[k] for k in cfg.search}
    if cfg.kinds:
        kinds = tuple(sorted({incumbent.model.kind, *cfg.kinds}))
        space["kind"] = optuna.distributions.CategoricalDistribution(kinds)
    return space


def propose(incumbent: MAMLConfig, params: dict[str, Any], cfg: RSIConfig, seed: int) -> MAMLConfig:
    """The candidate config ``params`` (a point of :func:`search_space`; what ``cfg.search`` leaves out stays
    as the incumbent has it) describes, around ``incumbent``."""
    params = {**NEUTRAL, "kind": incumbent.model.kind, **params}
    model = incumbent.model.replace(kind=params["kind"])
    new_model = model.replace(
        hidden_dim=max(4, round(model.hidden_dim * params["hidden_scale"])),
        state_dim=max(2, round(model.state_dim * params["state_scale"])),
        num_layers=min(8, max(1, model.num_layers + params["layers_delta"])),
    )
    return incumbent.replace(
        model=new_model,
        outer_lr=min(100.0, incumbent.outer_lr * params["outer_lr_scale"]),
        inner__lr=min(100.0, incumbent.inner.lr * params["inner_lr_scale"]),
        meta_iterations=cfg.candidate_iterations,
        run__seed=seed,
        run__out_dir=None,
        run__resume=None,
        run__progress=False,
    )


def make_sampler(name: str, seed: int, candidates: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` (RSIConfig.sampler) seeded with ``seed``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(candidates, 2))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"RSIConfig.sampler must be tpe, random or nsga2, got {name!r}")


def same_shapes(a: ModelConfig, b: ModelConfig) -> bool:
    """Policies of configs ``a`` and ``b`` have the same parameter shapes (so one warm-starts from the other);
    the state size counts only for the kinds that have one, the convolution's taps always (0 where none)."""
    uses_state = a.kind not in ("mlp", "gru", "lstm", "transformer")
    return (a.kind, a.hidden_dim, a.num_layers, a.separate_critic, a.conv_width) == (
        b.kind,
        b.hidden_dim,
        b.num_layers,
        b.separate_critic,
        b.conv_width,
    ) and (not uses_state or a.state_dim == b.state_dim)


__all__ = [
    "LAYER_CHOICES",
    "NEUTRAL",
    "SIZE_CHOICES",
    "SPACE",
    "make_sampler",
    "propose",
    "same_shapes",
    "search_space",
]
