"""What every training loop shares: set-up, metrics, resumable checkpoints, and the divergence guard.

A run folder (``RunConfig.out_dir``) holds::

    run.json                  the algorithm and its whole config, as started
    metrics.jsonl             one JSON row per update (NaN written as NaN)
    checkpoints/<update>/     resumable checkpoints, every ``checkpoint_every`` updates, newest kept
    final/                    the trained policy (a plain policy checkpoint)

A resumable checkpoint is a policy checkpoint (``model.safetensors`` + ``config.json``) plus
``optimizer.safetensors`` and ``trainer.json`` / ``trainer.safetensors``: the loop's counters, the torch,
NumPy and Python random states, the environments' state (:mod:`ssm_metarl.envs.snapshot`) and whatever
else the loop carries between updates. Each is written under a temporary name and renamed, so ``kill -9``
at any instant leaves only whole checkpoints; ``RunConfig.resume`` continues from the newest one and gives
the same parameters, bit for bit, as a run that was never interrupted.

:meth:`Run.guard` raises :class:`~ssm_metarl.errors.DivergenceError` on a non-finite loss, gradient norm or
parameter, naming the update and the last good checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from ssm_metarl.checkpoint import (
    OPTIMIZER,
    atomic_folder_write,
    check_and_load_state,
    discard_folder,
    load_optimizer_tensors,
    optimizer_tensors,
    policy_config,
    read_config,
    read_tensors,
    save_policy,
)
from ssm_metarl.config import Checked
from ssm_metarl.errors import CheckpointError, ConfigError, DivergenceError
from ssm_metarl.rl.metrics import MetricsLogger
from ssm_metarl.seeding import seed_everything, set_training_threads

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
TRAINER_JSON, TRAINER_TENSORS = "trainer.json", "trainer.safetensors"
RESUME_FREE = {"resume", "out_dir", "progress", "tensorboard", "threads", "keep_checkpoints"}
"""RunConfig fields that may differ between a run and its resumption."""


@dataclass
class Resumed:
    """What a resumable checkpoint gives back to the loop that wrote it."""

    path: Path
    update: int
    state: dict[str, Any]
    tensors: dict[str, Tensor]


def make_optimizer(params: Any, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused where the parameters allow it: on this CPU the fused step is several times faster than the
    ``foreach`` one (``benchmarks/optimizer_speed.py``, results/optimizer_speed.md); the model layer keeps its
    version-keyed acting caches correct under fused updates."""
    params = list(params)
    fused = all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params
    )
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=fused or None)


def _rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    py = random.getstate()
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors: dict[str, Tensor] = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_rng.{i}"] = s
    return state, tensors


def _set_rng_state(state: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["torch_rng"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda_rng."))]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy Generator's state as JSON."""
    return dict(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if prefix.endswith("run.") and k in RESUME_FREE:
                continue
            out += _config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: saved {a!r}, now {b!r}"]


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """The run's resumable checkpoints, oldest first (only whole ones: temporary folders start with '.')."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def latest_checkpoint(path: str | Path) -> Path:
    """The newest resumable checkpoint of a run folder, or ``path`` itself when it is one."""
    path = Path(path)
    if (path / TRAINER_JSON).is_file():
        return path
    found = checkpoint_folders(path)
    if not found:
        raise CheckpointError(
            f"{path} holds no resumable checkpoint (expected {path / CHECKPOINTS}/<update>/ with {TRAINER_JSON}); "
            "a run writes one every RunConfig.checkpoint_every updates when out_dir is set"
        )
    return found[-1]


class Run:
    """The plumbing of one training run of ``algo`` with ``cfg`` (any config with a ``run`` section).

    Set-up (threads, seeds), ``run.json``, the metrics log, resumable checkpoints, resume and the divergence
    guard. A loop calls :meth:`resume` once, :meth:`log` per update, :meth:`maybe_checkpoint` after each
    update, :meth:`guard` on what it computes, and :meth:`finish` at the end.
    """

    def __init__(self, algo: str, cfg: Checked) -> None:
        self.algo, self.cfg = algo, cfg
        run = cfg.run  # type: ignore[attr-defined]
        self.run = run
        set_training_threads(run.threads)
        seed_everything(run.seed)
        self.out = Path(run.out_dir) if run.out_dir is not None else None
        self.last_checkpoint: Path | None = None
        self._resumed: Resumed | None = None
        if run.resume is not None:
            self._resumed = self._load(latest_checkpoint(run.resume))
            self.last_checkpoint = self._resumed.path
        elif self.out is not None and (self.out / RUN_FILE).is_file():
            raise ConfigError(
                f"{self.out} already holds a run ({RUN_FILE}): continue it with resume={str(self.out)!r} "
                "(--resume), or start this one in another out_dir"
            )
        keep = int(self._resumed.state["metrics_rows"]) if self._resumed else 0
        source = self._resumed.path.parents[1] / "metrics.jsonl" if self._resumed else None
        self.metrics = MetricsLogger(self.out, run.tensorboard, keep_rows=keep, source=source)
        if self.out is not None and self._resumed is None:
            self._write_run_file()

    # ----- set-up -------------------------------------------------------------------------------------
    def _description(self) -> dict[str, Any]:
        return {"algo": self.algo, "config": self.cfg.to_dict(), "command": sys.argv}

    def _write_run_file(self) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / RUN_FILE).write_text(json.dumps(self._description(), indent=2, sort_keys=True))

    def _load(self, path: Path) -> Resumed:
        meta = read_config(path).get("metadata", {})
        saved = meta.get("run", {})
        if saved.get("algo") != self.algo:
            raise CheckpointError(f"{path} was written by a {saved.get('algo')!r} run, not {self.algo!r}")
        diff = _config_diff(saved.get("config", {}), self.cfg.to_dict())
        if diff:
            raise ConfigError(
                f"cannot resume {path}: the config differs from the one the run started with ("
                + "; ".join(diff)
                + "). Resume with the same settings, or start a new run in another out_dir."
            )
        try:
            state = json.loads((path / TRAINER_JSON).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path / TRAINER_JSON} is unreadable: {e}") from e
        return Resumed(path, int(state["update"]), state, read_tensors(path, TRAINER_TENSORS))

    # ----- resume -------------------------------------------------------------------------------------
    @property
    def resuming(self) -> bool:
        return self._resumed is not None

    def resume(self, policy: nn.Module, optimizer: torch.optim.Optimizer | None) -> Resumed | None:
        """Load the checkpoint being resumed into ``policy`` and ``optimizer`` and restore the random
        generators; None for a fresh run. The loop restores the rest from ``Resumed.state``/``tensors``."""
        r = self._resumed
        if r is None:
            return None
        check_and_load_state(policy, read_tensors(r.path), str(r.path))
        if optimizer is not None:
            load_optimizer_tensors(optimizer, read_tensors(r.path, OPTIMIZER), str(r.path))
        _set_rng_state(r.state["rng"], r.tensors)
        logger.info("resuming %s from %s (update %d)", self.algo, r.path, r.update)
        return r

    # ----- during the run -----------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        self.metrics.log(row)

    def guard(self, where: str, **values: float | Tensor) -> None:
        """Raise DivergenceError if any value (a loss, a gradient norm) is not finite."""
        for name, v in values.items():
            x = float(v.detach()) if isinstance(v, Tensor) else float(v)
            if not math.isfinite(x):
                raise DivergenceError(
                    f"{self.algo}: {name} is {x} at {where}",
                    None if self.last_checkpoint is None else str(self.last_checkpoint),
                )

    def guard_parameters(self, module: nn.Module, where: str) -> None:
        """Raise DivergenceError naming the first parameter that holds a NaN or an infinity."""
        params = [p for p in module.parameters()]
        if not params:
            return
        norms = torch._foreach_norm([p.detach() for p in params])
        if bool(torch.isfinite(torch.stack(norms)).all()):
            return
        names = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        raise DivergenceError(
            f"{self.algo}: parameter {names[0] if names else '?'} is not finite at {where}",
            None if self.last_checkpoint is None else str(self.last_checkpoint),
        )

    def maybe_checkpoint(
        self,
        update: int,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        tensors: dict[str, Tensor] | None = None,
        force: bool = False,
    ) -> Path | None:
        """Write a resumable checkpoint after ``update`` updates when one is due (or ``force``)."""
        every = self.run.checkpoint_every
        if self.out is None or not (force or (every and update % every == 0)):
            return None
        rng, rng_tensors = _rng_state()
        full_state = {**state, "update": update, "rng": rng, "metrics_rows": len(self.metrics.rows)}
        all_tensors = {**(tensors or {}), **rng_tensors}
        metadata = {"run": self._description(), "update": update}
        opt = optimizer_tensors(optimizer)

        def write(tmp: Path) -> None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
                str(tmp / "model.safetensors"),
            )
            (tmp / "config.json").write_text(
                json.dumps(policy_config(policy, metadata), indent=2, sort_keys=True)
            )
            save_file(opt, str(tmp / OPTIMIZER))
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in all_tensors.items()}, str(tmp / TRAINER_TENSORS)
            )
            (tmp / TRAINER_JSON).write_text(json.dumps(full_state))

        folder = self.out / CHECKPOINTS
        path = atomic_folder_write(folder / f"{update:09d}", write)
        self.last_checkpoint = path
        for old in checkpoint_folders(self.out)[: -self.run.keep_checkpoints]:
            discard_folder(old)  # never a half-deleted folder under a checkpoint's name
        for tmp in [*folder.glob(".*.tmp-*"), *folder.glob(".*.del-*")]:  # left by an earlier crash
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def finish(self, policy: nn.Module, metadata: dict[str, Any]) -> Path | None:
        """Save the final policy (``out_dir/final``) with ``metadata`` and close the metrics log."""
        path = None
        if self.out is not None:
            path = save_policy(
                self.out / "final", policy, {"algo": self.algo, **metadata, "config": self.cfg.to_dict()}
            )
        self.metrics.close()
        return path


__all__ = [
    "Resumed",
    "Run",
    "checkpoint_folders",
    "generator_state",
    "latest_checkpoint",
    "make_optimizer",
    "set_generator_state",
]
