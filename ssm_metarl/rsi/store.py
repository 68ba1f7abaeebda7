"""What the self-improvement loop keeps on disk, written atomically, read with checks.

::

    <out_dir>/manifest.json       the loop's state: config, reference, cycle, failures, incumbent, history
    <out_dir>/incumbent/          the installed policy (a checkpoint: safetensors + config.json)
    <out_dir>/history/cycle-NNNN/ every policy ever installed (cycle 0: the starting incumbent)
    <out_dir>/baseline/           the multi-task baseline the efficiency metric is measured against
    <out_dir>/candidates/...      every trained candidate, as evaluated
    <out_dir>/decisions.jsonl     one JSON line per decision, with its evidence
    <out_dir>/study.db            the Optuna study (unless RSIConfig.storage names another)

A policy's identity is :func:`weights_hash` (SHA-256 over its tensors' names, dtypes, shapes and bytes), so
"install exactly the weights that were evaluated" and "roll back bit for bit" are checked, not assumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from ssm_metarl.checkpoint import atomic_file_write, load_policy, save_policy
from ssm_metarl.errors import CheckpointError

MANIFEST = "manifest.json"
DECISIONS = "decisions.jsonl"


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor of ``module``'s state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checked(path: Path, policy: torch.nn.Module, metadata: dict[str, Any]) -> str:
    """Save ``policy`` at ``path`` and return its hash (recorded in the checkpoint's metadata too)."""
    digest = weights_hash(policy)
    save_policy(path, policy, {**metadata, "weights_sha256": digest})
    return digest


def load_checked(path: Path, expected: str) -> Any:
    """Load the policy at ``path``; its weights must hash to ``expected`` (else :class:`CheckpointError`)."""
    policy = load_policy(path)
    got = weights_hash(policy)
    if got != expected:
        raise CheckpointError(
            f"{path} holds weights with hash {got[:12]}..., the manifest records {expected[:12]}...: the "
            "checkpoint was changed after it was written; restore it or start a new loop in another out_dir"
        )
    return policy


def read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the loop's state is damaged") from None
    if not isinstance(data, dict) or data.get("kind") != "ssm-metarl-rsi":
        raise CheckpointError(f"{path} is not a self-improvement manifest")
    return data


def write_manifest(out: Path, data: dict[str, Any]) -> None:
    text = json.dumps({"kind": "ssm-metarl-rsi", **data}, indent=2, sort_keys=True)
    atomic_file_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def log_decision(out: Path, kind: str, cycle: int, **evidence: Any) -> dict[str, Any]:
    """Append one decision (``kind``: trial, accepted, rejected, installed, rolled-back, failed, stopped)."""
    row = {"time": time.time(), "cycle": cycle, "kind": kind, **evidence}
    with (out / DECISIONS).open("a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
    return row


def read_decisions(out: Path) -> list[dict[str, Any]]:
    path = out / DECISIONS
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the last line, cut by kill -9 while it was written: it never happened
                break
            raise CheckpointError(f"{path} line {i + 1} is not JSON: the decisions log is damaged") from None
    return rows


__all__ = [
    "DECISIONS",
    "MANIFEST",
    "load_checked",
    "log_decision",
    "read_decisions",
    "read_manifest",
    "save_checked",
    "weights_hash",
    "write_manifest",
]
