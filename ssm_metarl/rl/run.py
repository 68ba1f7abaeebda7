"""What every training loop shares, so the loop shows only its algorithm: set-up, the update loop
(:meth:`Run.updates`: progress bar, evaluation cadence, best policy), metrics, resumable checkpoints, resume
and the divergence guard.

A run folder (``RunConfig.out_dir``) holds::

    run.json                  the algorithm and its whole config, as started
    metrics.jsonl             one JSON row per update (NaN written as NaN)
    checkpoints/<update>/     resumable checkpoints, every ``checkpoint_every`` updates, newest kept
    best/                     the policy with the best evaluation so far (loops that evaluate: PPO, RL²)
    final/                    the trained policy (a plain policy checkpoint)

A resumable checkpoint is a policy checkpoint (``model.safetensors`` + ``config.json``) plus
``optimizer.safetensors`` and ``trainer.json`` / ``trainer.safetensors``: the loop's counters, the torch,
NumPy and Python random states, and the state of the loop's :class:`Carry` (the rollout collector, or the
environments' state, :mod:`ssm_metarl.envs.snapshot`). Each is written under a temporary name and renamed,
so ``kill -9`` at any instant leaves only whole checkpoints; ``RunConfig.resume`` continues from the newest
one and gives the same parameters, bit for bit, as a run that was never interrupted.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

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
from ssm_metarl.envs.snapshot import check_snapshot, env_state, restore_env_state
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


class Carry(Protocol):
    """What a loop carries between updates beside the policy and the optimiser (a
    :class:`~ssm_metarl.rl.rollout.RolloutCollector`, an :class:`EnvCarry`): JSON values and tensors."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], reset_seed: int | None = None) -> None: ...


class EnvCarry:
    """A vector env's state as a :class:`Carry`, for loops that step envs without a collector."""

    def __init__(self, envs: Any) -> None:
        self.envs = envs

    def state_dict(self) -> dict[str, Any]:
        return {"env": env_state(self.envs, strict=not check_snapshot(self.envs))}

    def load_state_dict(self, state: dict[str, Any], reset_seed: int | None = None) -> None:
        restore_env_state(self.envs, state["env"])


@dataclass
class Evaluator:
    """Evaluation during a run: ``evaluate()`` gives the current policy's evaluation stats. :meth:`Run.updates`
    calls it each time another ``every`` env steps have passed (0: never during training), and
    :meth:`Run.evaluate` keeps the policy with the highest ``stats[score]`` so far in ``out_dir/best``, with
    ``metadata``."""

    evaluate: Callable[[], dict[str, float]]
    every: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    score: str = "eval_return_det"


def make_optimizer(params: Any, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused where the parameters allow it: on this CPU the fused step is several times faster than the
    ``foreach`` one (``benchmarks/optimizer_speed.py``, results/optimizer_speed.md); the ssm's acting plan compares the parameters it was built from, so
    it sees fused in-place steps too."""
    params = list(params)
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    fused = all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in tensors
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

    Set-up (threads, seeds), ``run.json``, the metrics log, resumable checkpoints, resume, the evaluation
    cadence and best policy, the progress bar and the divergence guard. A loop reads::

        run = Run("ppo", cfg)                      # seeds everything: before the policy is built
        resumed = run.resume(policy, optimizer, collector)
        for update in run.updates(cfg.num_updates, steps_per_update=cfg.batch_size, evaluator=...):
            ...                                    # collect, advantages, update (run.guard on the losses)
            row = run.row(update=update + 1) | stats
            run.end_update(row, state={...})       # evaluate, log, checkpoint, progress, callback
        run.finish(policy, metadata)
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
        self.policy: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.carry: Carry | None = None
        self.evaluator: Evaluator | None = None
        self.best_eval = float("-inf")
        self._eval_due: int | None = None
        self.update = 0  # the index of the update under way (0-based)
        self._start, self._steps_per_update, self._t0 = 0, 0, time.perf_counter()
        self._callback: Callable[[dict[str, Any]], bool | None] | None = None
        self._bar: Any = None
        self._show: str | None = None
        self._stop = False
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

    def resume(
        self, policy: nn.Module, optimizer: torch.optim.Optimizer | None, carry: Carry | None = None
    ) -> Resumed | None:
        """Take the run's ``policy``, ``optimizer`` and ``carry`` (checkpointed with them), and when resuming
        load the checkpoint into them and restore the random generators; None for a fresh run (with a warning
        when checkpoints are due and the carry's ``envs`` cannot be snapshot exactly). The loop restores its
        own counters from ``Resumed.state``."""
        self.policy, self.optimizer, self.carry = policy, optimizer, carry
        r = self._resumed
        if r is None:
            envs = getattr(carry, "envs", None)
            if (
                self.out is not None
                and self.run.checkpoint_every
                and envs is not None
                and check_snapshot(envs)
            ):
                logger.warning(
                    "%s cannot be snapshot exactly (%s): a resumed run will start new episodes",
                    getattr(self.cfg, "env_id", self.algo),
                    "; ".join(check_snapshot(envs)),
                )
            return None
        check_and_load_state(policy, read_tensors(r.path), str(r.path))
        if optimizer is not None:
            load_optimizer_tensors(optimizer, read_tensors(r.path, OPTIMIZER), str(r.path))
        _set_rng_state(r.state["rng"], r.tensors)
        if carry is not None:
            carry.load_state_dict({**r.state, **r.tensors}, reset_seed=self.run.seed + 7919 * r.update)
        logger.info("resuming %s from %s (update %d)", self.algo, r.path, r.update)
        return r

    # ----- the loop -----------------------------------------------------------------------------------
    def updates(
        self,
        total: int,
        steps_per_update: int = 0,
        *,
        evaluator: Evaluator | None = None,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
        unit: str = "update",
        show: str | None = None,
    ) -> Iterator[int]:
        """The indices of the updates still to run, from the resumed one up to ``total``, with a progress bar
        (in env steps when each update takes ``steps_per_update`` of them, showing the row's ``show`` field).
        ``evaluator`` runs every ``evaluator.every`` env steps (so it needs ``steps_per_update``);
        ``callback(row)`` sees each metrics row and ends the run by returning True. Call :meth:`end_update`
        at the end of each update."""
        r = self._resumed
        self._start = r.update if r is not None else 0
        self._steps_per_update, self.evaluator = steps_per_update, evaluator
        self._callback, self._show = callback, show
        if evaluator is not None:
            self._eval_due = evaluator.every or None
            if r is not None:
                self.best_eval, self._eval_due = float(r.state["best_eval"]), r.state["eval_due"]
        per = steps_per_update or 1
        self._bar = tqdm(
            total=total * per,
            initial=self._start * per,
            disable=not self.run.progress,
            unit="step" if steps_per_update else unit,
            leave=False,
        )
        self._t0 = time.perf_counter()
        return self._loop(total)

    def _loop(self, total: int) -> Iterator[int]:
        try:
            for update in range(self._start, total):
                self.update = update
                yield update
                if self._stop:
                    return
        finally:
            self._bar.close()

    @property
    def seconds(self) -> float:
        """Seconds since :meth:`updates` started the loop."""
        return time.perf_counter() - self._t0

    def row(self, **counters: Any) -> dict[str, Any]:
        """A metrics row: ``counters``, then ``seconds`` since the loop (re)started and, when updates take a
        fixed number of env steps, ``sps`` (env steps per second since then)."""
        elapsed = self.seconds
        row = {**counters, "seconds": elapsed}
        if self._steps_per_update:
            row["sps"] = (self.update + 1 - self._start) * self._steps_per_update / max(elapsed, 1e-9)
        return row

    def end_update(self, row: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """End the update under way: evaluate when due (the stats join ``row``), log ``row``, write a
        resumable checkpoint when due (``state``: the loop's own counters, as JSON, beside the carry's),
        advance the progress bar, and end the loop if the callback says so."""
        update = self.update + 1
        ev = self.evaluator
        if (
            ev is not None
            and self._eval_due is not None
            and update * self._steps_per_update >= self._eval_due
        ):
            self._eval_due += ev.every
            row.update(self.evaluate(update))
        self.log(row)
        if self._checkpoint_due(update):
            assert self.policy is not None and self.optimizer is not None
            carried = self.carry.state_dict() if self.carry is not None else {}
            full = {k: v for k, v in carried.items() if not isinstance(v, Tensor)} | (state or {})
            if ev is not None:
                full |= {"best_eval": self.best_eval, "eval_due": self._eval_due}
            tensors = {k: v for k, v in carried.items() if isinstance(v, Tensor)}
            self.maybe_checkpoint(update, self.policy, self.optimizer, full, tensors)
        self._bar.update(self._steps_per_update or 1)
        if self._show is not None:
            sps = {"sps": f"{row['sps']:.0f}"} if "sps" in row else {}
            self._bar.set_postfix(ret=f"{row[self._show]:.1f}", **sps)
        if self._callback is not None and self._callback(row):
            self._stop = True

    def evaluate(self, update: int) -> dict[str, float]:
        """The evaluator's stats of the policy now; a policy better than any before is saved to
        ``out_dir/best`` (after ``update`` updates)."""
        ev = self.evaluator
        assert ev is not None and self.policy is not None, "evaluate() needs updates(evaluator=...) first"
        stats = ev.evaluate()
        if stats[ev.score] > self.best_eval:
            self.best_eval = stats[ev.score]
            if self.out is not None:
                metadata = {
                    **ev.metadata,
                    "update": update,
                    "evaluation": stats,
                    "config": self.cfg.to_dict(),
                }
                save_policy(self.out / "best", self.policy, metadata)
        return stats

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
        if self.out is None or not (force or self._checkpoint_due(update)):
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

    def _checkpoint_due(self, update: int) -> bool:
        every = self.run.checkpoint_every
        return self.out is not None and bool(every) and update % every == 0

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
    "Carry",
    "EnvCarry",
    "Evaluator",
    "Resumed",
    "Run",
    "checkpoint_folders",
    "generator_state",
    "latest_checkpoint",
    "make_optimizer",
    "set_generator_state",
]
