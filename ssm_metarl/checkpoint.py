"""Checkpoints: a folder with ``model.safetensors`` + ``config.json``, written atomically, never pickled.

``config.json`` holds the format version, the package version, the policy description (model kind and
sizes, observation and action spaces, head options) and free-form ``metadata`` (training run, task
family, evaluation results, ...). :func:`load_policy` rebuilds the policy from the config and loads the
weights, checking every tensor's shape against what the config builds; any mismatch, a missing file or a
corrupt file raises :class:`CheckpointError` naming what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssm_metarl.models import ActorCritic, make_policy
from ssm_metarl.spaces import space_from_info

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says why."""


def package_version() -> str:
    from ssm_metarl import __version__

    return __version__


def _atomic_folder_write(path: Path, write: Any) -> None:
    """Write into a temporary sibling folder, then rename over ``path`` (a crash leaves no half folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tensors_and_config(
    path: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Atomically write a checkpoint folder from raw tensors and a JSON config."""
    path = Path(path)
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(flat, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))

    _atomic_folder_write(path, write)
    return path


def save_policy(path: str | Path, policy: ActorCritic, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``policy`` (weights, normalisation statistics) and its description to the folder ``path``."""
    config = {
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "policy": policy.describe(),
        "metadata": metadata or {},
    }
    return save_tensors_and_config(path, policy.state_dict(), config)


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a folder (expected {WEIGHTS} + {CONFIG} inside)")
    cfg_path = path / CONFIG
    if not cfg_path.exists():
        raise CheckpointError(f"checkpoint {path} has no {CONFIG}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format_version {config.get('format_version')!r}, this version reads {FORMAT_VERSION}"
        )
    return config


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint folder's ``model.safetensors`` (no pickle), with clear errors."""
    w_path = Path(path) / WEIGHTS
    if not w_path.exists():
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS}")
    try:
        return load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path} is corrupt or truncated: {e}") from e


def check_and_load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load ``tensors`` into ``module`` strictly, listing every missing, unexpected or mis-shaped tensor."""
    expected = module.state_dict()
    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for name in sorted(set(expected) & set(tensors)):
        if tuple(expected[name].shape) != tuple(tensors[name].shape):
            problems.append(
                f"{name}: config builds shape {tuple(expected[name].shape)}, file has {tuple(tensors[name].shape)}"
            )
    if problems:
        raise CheckpointError(f"{where} does not match its config: " + "; ".join(problems))
    module.load_state_dict(tensors, strict=True)


def policy_from_description(desc: dict[str, Any]) -> ActorCritic:
    """Rebuild an untrained policy from the ``policy`` section of a config."""
    try:
        return make_policy(
            desc["kind"],
            space_from_info(desc["observation_space"]),
            space_from_info(desc["action_space"]),
            hidden_dim=int(desc["hidden_dim"]),
            separate_critic=bool(desc.get("separate_critic", False)),
            normalize_obs=bool(desc.get("normalize_obs", False)),
            init_log_std=float(desc.get("init_log_std", 0.0)),
            action_bounds=str(desc.get("action_bounds", "tanh")),
            **desc.get("model_kwargs", {}),
        )
    except KeyError as e:
        raise CheckpointError(f"policy config lacks the field {e}") from e


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> ActorCritic:
    """Rebuild the policy saved at ``path`` and load its weights."""
    config = read_config(path)
    if "policy" not in config:
        raise CheckpointError(f"{Path(path) / CONFIG} has no 'policy' section")
    policy = policy_from_description(config["policy"])
    check_and_load_state(policy, read_tensors(path), str(path))
    return policy.to(device)


def update_metadata(path: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into a checkpoint's metadata, rewriting only ``config.json`` (atomically), so files
    beside it (e.g. the optimizer state) stay. Returns the new metadata."""
    config = read_config(path)
    config["metadata"] = {**config.get("metadata", {}), **changes}
    target = Path(path) / CONFIG
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    tmp.replace(target)
    return config["metadata"]


def load_metadata(path: str | Path) -> dict[str, Any]:
    return read_config(path).get("metadata", {})
