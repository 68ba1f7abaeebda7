"""Checkpoints: a folder with ``model.safetensors`` + ``config.json``, written atomically, never pickled.

``config.json`` holds the format version, the package version, the policy description (model kind and
sizes, observation and action spaces, head options) and free-form ``metadata`` (training run, task
family, evaluation results, ...). :func:`load_policy` rebuilds the policy from the config with the builder
the model layer registered (:func:`register_builder`; this module never imports the models) and loads the
weights, checking every tensor's name, shape and dtype against what the config builds; any mismatch, a
missing file or a corrupt file raises :class:`CheckpointError` naming what is wrong.

A folder is written under a temporary name and renamed into place, so a crash (even ``kill -9``) leaves
either the old folder or the new one, never half of one. Resumable training checkpoints add
``optimizer.safetensors`` (the optimiser's tensors) and ``trainer.json`` / ``trainer.safetensors`` (loop
counters, RNG and environment state) beside the policy; see :mod:`ssm_metarl.rl.run`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssm_metarl._version import __version__
from ssm_metarl.errors import CheckpointError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"

_BUILDERS: dict[str, Callable[[dict[str, Any]], torch.nn.Module]] = {}


def register_builder(section: str, build: Callable[[dict[str, Any]], torch.nn.Module]) -> None:
    """Let :func:`load_policy` rebuild modules from the config section ``section`` (the model layer
    registers ``"policy"`` when it is imported)."""
    _BUILDERS[section] = build


def package_version() -> str:
    """The installed package's version (recorded in every checkpoint's config)."""
    return __version__


def atomic_folder_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a new temporary sibling folder, then rename it to ``path``.

    When ``path`` exists it is first renamed aside and removed after the new folder is in place; a reader
    that finds no ``path`` (the instant between the two renames) finds the aside copy with
    :func:`existing_folder`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():  # the data is on disk before the rename makes it visible
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
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
    return path


def discard_folder(path: str | Path) -> None:
    """Remove a checkpoint folder so that no reader ever sees part of it: renamed to a hidden sibling first
    (one atomic step), then deleted; a crash during the deletion leaves only the hidden name behind."""
    path = Path(path)
    gone = path.with_name(f".{path.name}.del-{os.getpid()}")
    os.replace(path, gone)
    shutil.rmtree(gone, ignore_errors=True)


def atomic_file_write(target: str | Path, write: Callable[[str], Any]) -> Path:
    """``write(tmp_name)`` to a temporary sibling of ``target``, then rename it over ``target``: a crash never
    leaves half a file."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def existing_folder(path: str | Path) -> Path:
    """``path`` itself, or the copy :func:`atomic_folder_write` set aside if a crash came between renames."""
    path = Path(path)
    if path.exists():
        return path
    aside = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    return aside[-1] if aside else path


def save_tensors_and_config(
    path: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Atomically write a checkpoint folder from raw tensors and a JSON config."""
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(flat, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))

    return atomic_folder_write(path, write)


def policy_config(policy: Any, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` content for ``policy`` (anything with ``describe()``)."""
    return {
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "policy": policy.describe(),
        "metadata": metadata or {},
    }


def save_policy(path: str | Path, policy: torch.nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``policy`` (weights, normalisation statistics) and its description to the folder ``path``."""
    return save_tensors_and_config(path, policy.state_dict(), policy_config(policy, metadata))


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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object, not {type(config).__name__}")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format_version {config.get('format_version')!r}, this version reads {FORMAT_VERSION}"
        )
    if not isinstance(config.get("metadata", {}), dict):
        raise CheckpointError(f"{cfg_path}: 'metadata' must be a JSON object")
    return config


def read_tensors(path: str | Path, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint folder's ``name`` safetensors file (no pickle), with clear errors."""
    w_path = Path(path) / name
    if not w_path.exists():
        raise CheckpointError(f"checkpoint {path} has no {name}")
    try:
        return load_file(str(w_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{w_path} is corrupt or truncated: {e}") from e


def check_and_load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load ``tensors`` into ``module`` strictly, listing every missing, unexpected, mis-shaped or mis-typed
    tensor and refusing non-finite values. Values are never converted: where a floating-point tensor was
    saved in another floating-point precision (a policy moved to float64 before saving), the module's
    tensor takes the file's dtype."""
    expected = module.state_dict()
    problems = []
    for name in sorted(set(expected) & set(tensors)):
        want, got = expected[name], tensors[name]
        if want.dtype != got.dtype and want.is_floating_point() and got.is_floating_point():
            _set_dtype(module, name, got.dtype)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for name in sorted(set(expected) & set(tensors)):
        want, got = expected[name], tensors[name]
        if tuple(want.shape) != tuple(got.shape):
            problems.append(f"{name}: config builds shape {tuple(want.shape)}, file has {tuple(got.shape)}")
        elif want.dtype != got.dtype:
            problems.append(f"{name}: config builds dtype {want.dtype}, file has {got.dtype}")
        elif got.is_floating_point() and not bool(torch.isfinite(got).all()):
            problems.append(f"{name} holds non-finite values")
    if problems:
        raise CheckpointError(f"{where} does not match its config: " + "; ".join(problems))
    module.load_state_dict(tensors, strict=True)


def _set_dtype(module: torch.nn.Module, name: str, dtype: torch.dtype) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    with torch.no_grad():
        p = owner._parameters.get(attr)
        b = owner._buffers.get(attr)
        if p is not None:
            owner._parameters[attr] = torch.nn.Parameter(p.to(dtype), requires_grad=p.requires_grad)
        elif b is not None:
            owner._buffers[attr] = b.to(dtype)


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild the policy saved at ``path`` and load its weights (an :class:`~ssm_metarl.models.ActorCritic`)."""
    config = read_config(path)
    desc = config.get("policy")
    if not isinstance(desc, dict):
        raise CheckpointError(f"{Path(path) / CONFIG} has no 'policy' section")
    if "policy" not in _BUILDERS:
        raise RuntimeError("no policy builder registered: import ssm_metarl (or ssm_metarl.models) first")
    policy = _BUILDERS["policy"](desc)
    check_and_load_state(policy, read_tensors(path), str(path))
    return policy.to(device)


def update_metadata(path: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into a checkpoint's metadata, rewriting only ``config.json`` (atomically), so files
    beside it stay. Returns the new metadata."""
    config = read_config(path)
    config["metadata"] = {**config.get("metadata", {}), **changes}
    target = Path(path) / CONFIG
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    tmp.replace(target)
    return config["metadata"]


def load_metadata(path: str | Path) -> dict[str, Any]:
    return read_config(path).get("metadata", {})


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as flat tensors, keyed ``<param index>.<name>``."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    out = {}
    for i, p in enumerate(params):
        for k, v in optimizer.state.get(p, {}).items():
            out[f"{i}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
    return out


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], where: str
) -> None:
    """Inverse of :func:`optimizer_tensors`: the same parameters, in the same order, the same shapes."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        index, _, name = key.partition(".")
        if not index.isdigit() or not name or int(index) >= len(params):
            raise CheckpointError(f"{where}: unexpected optimizer tensor {key!r} ({len(params)} parameters)")
        by_index.setdefault(int(index), {})[name] = v
    for i, state in by_index.items():
        p = params[i]
        for name, v in state.items():
            if v.dim() > 0 and tuple(v.shape) != tuple(p.shape):
                raise CheckpointError(
                    f"{where}: optimizer tensor {i}.{name} has shape {tuple(v.shape)}, parameter {tuple(p.shape)}"
                )
        optimizer.state[p] = {k: v.to(p.device) for k, v in state.items()}


__all__ = [
    "CONFIG",
    "FORMAT_VERSION",
    "OPTIMIZER",
    "WEIGHTS",
    "CheckpointError",
    "atomic_file_write",
    "atomic_folder_write",
    "discard_folder",
    "check_and_load_state",
    "existing_folder",
    "load_metadata",
    "load_optimizer_tensors",
    "load_policy",
    "optimizer_tensors",
    "policy_config",
    "read_config",
    "read_tensors",
    "register_builder",
    "save_policy",
    "save_tensors_and_config",
    "update_metadata",
]
