"""Explicit randomness: seeds are set at entry points, everything else takes a Generator."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_rng(seed: int | None) -> np.random.Generator:
    """A NumPy Generator for task sampling and env seeding."""
    return np.random.default_rng(seed)


def set_training_threads(num_threads: int = 1) -> None:
    """Training processes default to one intra-op thread: at these small sizes a second thread adds
    synchronisation without work to split, and on a busy 2-core machine it contends with the env and with
    other processes, which can make each step many times slower."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
