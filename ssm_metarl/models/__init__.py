"""The model zoo: every policy backbone behind one SequenceModel contract, in one registry."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
from torch import nn

from ssm_metarl import checkpoint
from ssm_metarl.config import ModelConfig, ModelKind
from ssm_metarl.errors import CheckpointError, ConfigError
from ssm_metarl.models.base import SequenceModel, State
from ssm_metarl.models.gated_ssm import GatedSSM
from ssm_metarl.models.heads import ActorCritic, RunningNorm
from ssm_metarl.models.improved import ImprovedSSMBackbone
from ssm_metarl.models.mlp import MLP
from ssm_metarl.models.neural_ssm import StateSpaceModel, neural_ssm
from ssm_metarl.models.rnn import GRU, LSTM
from ssm_metarl.models.ssm import SSM
from ssm_metarl.models.transformer import Transformer
from ssm_metarl.spaces import flat_dim, space_from_info

MODELS: dict[str, Any] = {
    "ssm": SSM,
    "gated_ssm": GatedSSM,
    "neural_ssm": neural_ssm,
    "improved": ImprovedSSMBackbone,
    "gru": GRU,
    "lstm": LSTM,
    "transformer": Transformer,
    "mlp": MLP,
}


def make_model(kind: ModelKind, input_dim: int, hidden_dim: int = 64, **kwargs: Any) -> nn.Module:
    """Build a SequenceModel by registry name; extra kwargs go to the model's constructor."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODELS)}")
    return MODELS[kind](input_dim=input_dim, hidden_dim=hidden_dim, **kwargs)


def make_policy(
    kind: ModelKind, observation_space: gym.Space, action_space: gym.Space, **options: Any
) -> ActorCritic:
    """An ActorCritic for the given spaces with a ``kind`` backbone; ``options`` are :func:`policy_parts`'s
    (hidden_dim, separate_critic, normalize_obs, init_log_std, action_bounds, learned_step_sizes, the backbone's
    own kwargs)."""
    return ActorCritic(**policy_parts(kind, observation_space, action_space, **options))


def policy_parts(
    kind: ModelKind,
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_dim: int = 64,
    separate_critic: bool = False,
    normalize_obs: bool = False,
    init_log_std: float = 0.0,
    action_bounds: str = "tanh",
    learned_step_sizes: bool = False,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """The keyword arguments of :class:`ActorCritic` that :func:`make_policy` passes (backbones built, spec
    written); the seed-named subclasses (``ImprovedSSM``, ``SSMMetaPolicy``) initialise themselves from it."""
    obs_dim = flat_dim(observation_space)
    backbone = make_model(kind, obs_dim, hidden_dim, **model_kwargs)
    critic = make_model(kind, obs_dim, hidden_dim, **model_kwargs) if separate_critic else None
    spec = {
        "kind": kind,
        "hidden_dim": hidden_dim,
        "model_kwargs": dict(model_kwargs),
        "separate_critic": separate_critic,
        "normalize_obs": normalize_obs,
        "init_log_std": init_log_std,
        "action_bounds": action_bounds,
        **({"learned_step_sizes": True} if learned_step_sizes else {}),
    }
    return {
        "backbone": backbone,
        "observation_space": observation_space,
        "action_space": action_space,
        "critic_backbone": critic,
        "init_log_std": init_log_std,
        "normalize_obs": normalize_obs,
        "spec": spec,
        "action_bounds": action_bounds,
        "learned_step_sizes": learned_step_sizes,
    }


def model_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The constructor kwargs of ``model.kind``'s backbone that a ModelConfig sets (beyond the sizes every
    backbone takes)."""
    accepted = inspect.signature(MODELS[model.kind]).parameters
    candidates: dict[str, Any] = {
        "state_dim": model.state_dim,
        "num_layers": model.num_layers,
        "complex": model.complex,
    }
    if model.ring_min is not None:  # the ssm calls it r_min, the gated ssm a_min
        if not {"r_min", "a_min"} & set(accepted):
            raise ConfigError(
                f"ring_min sets the ring initialisation of ssm and gated_ssm, not of {model.kind}"
            )
        candidates |= {"r_min": model.ring_min, "a_min": model.ring_min}
    if model.conv_width:  # only where set, so checkpoints without it describe the same policy
        if "conv_width" not in accepted:
            raise ConfigError(f"conv_width sets the gated ssm's convolution, not {model.kind}'s")
        candidates["conv_width"] = model.conv_width
    return {k: v for k, v in candidates.items() if k in accepted}


def policy_from_config(
    model: ModelConfig, observation_space: gym.Space, action_space: gym.Space, normalize_obs: bool = False
) -> ActorCritic:
    """The ActorCritic a :class:`~ssm_metarl.config.ModelConfig` describes, for the given spaces."""
    return make_policy(
        model.kind,
        observation_space,
        action_space,
        hidden_dim=model.hidden_dim,
        separate_critic=model.separate_critic,
        normalize_obs=normalize_obs,
        init_log_std=model.init_log_std,
        action_bounds=model.action_bounds,
        learned_step_sizes=model.learned_step_sizes,
        **model_kwargs(model),
    )


def policy_from_description(desc: dict[str, Any]) -> ActorCritic:
    """Rebuild an untrained policy from the ``policy`` section of a checkpoint's config (what
    :meth:`ActorCritic.describe` wrote)."""
    try:
        kind = desc["kind"]
        if kind not in MODELS:
            raise CheckpointError(
                f"policy config names the unknown model kind {kind!r}; known: {sorted(MODELS)}"
            )
        sizes = {"hidden_dim": desc["hidden_dim"], **desc.get("model_kwargs", {})}
        bad = {
            k: v for k, v in sizes.items() if k.endswith(("_dim", "layers")) and (type(v) is not int or v < 1)
        }
        if bad:
            raise CheckpointError(f"policy config has sizes that are not positive ints: {bad}")
        return make_policy(
            kind,
            space_from_info(desc["observation_space"]),
            space_from_info(desc["action_space"]),
            hidden_dim=int(desc["hidden_dim"]),
            separate_critic=bool(desc.get("separate_critic", False)),
            normalize_obs=bool(desc.get("normalize_obs", False)),
            init_log_std=float(desc.get("init_log_std", 0.0)),
            action_bounds=str(desc.get("action_bounds", "tanh")),
            learned_step_sizes=bool(desc.get("learned_step_sizes", False)),
            **desc.get("model_kwargs", {}),
        )
    except KeyError as e:
        raise CheckpointError(f"policy config lacks the field {e}") from e
    except (TypeError, ValueError, AttributeError, RuntimeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"policy config cannot be built: {e}") from e


checkpoint.register_builder("policy", policy_from_description)


__all__ = [
    "MODELS",
    "GRU",
    "GatedSSM",
    "LSTM",
    "MLP",
    "SSM",
    "ActorCritic",
    "ImprovedSSMBackbone",
    "ModelKind",
    "RunningNorm",
    "SequenceModel",
    "State",
    "StateSpaceModel",
    "Transformer",
    "make_model",
    "make_policy",
    "model_kwargs",
    "policy_from_config",
    "policy_from_description",
]
