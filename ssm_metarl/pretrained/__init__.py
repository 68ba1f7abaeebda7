"""Shipped pre-trained policies: checkpoint folders inside the installed package, usable offline.

Each ``ssm_metarl/pretrained/<name>/`` holds ``model.safetensors`` and ``config.json`` (a normal
checkpoint, see :mod:`ssm_metarl.checkpoint`) and a model card ``README.md`` with the command and seed
that produced it and its measured results. ``make pretrained`` regenerates every one of them from
scratch (``benchmarks/make_pretrained.py``).

    >>> from ssm_metarl import load_pretrained
    >>> policy = load_pretrained("cartpole-ssm")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssm_metarl.checkpoint import load_metadata, load_policy
from ssm_metarl.models.heads import ActorCritic

PRETRAINED_DIR = Path(__file__).resolve().parent


def list_pretrained() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file())


def pretrained_path(name: str) -> Path:
    """The checkpoint folder of shipped model ``name``; raises ValueError naming the available ones."""
    path = PRETRAINED_DIR / name
    if name not in list_pretrained():
        raise ValueError(
            f"no shipped pre-trained model named {name!r}; available: {', '.join(list_pretrained())}"
        )
    return path


def load_pretrained(name: str, device: str = "cpu") -> ActorCritic:
    """The shipped policy ``name`` (e.g. ``"cartpole-ssm"``), in eval mode."""
    return load_policy(pretrained_path(name), device=device).eval()


def model_card(name: str) -> str:
    """The model card (markdown) of shipped model ``name``."""
    return (pretrained_path(name) / "README.md").read_text()


def pretrained_info(name: str) -> dict[str, Any]:
    """The checkpoint's metadata: task family, algorithm, training config and measured results."""
    meta = load_metadata(pretrained_path(name))
    results = pretrained_path(name) / "results.json"
    if results.is_file():
        meta = {**meta, "results": json.loads(results.read_text())}
    return meta
