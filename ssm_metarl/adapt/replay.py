"""ExperienceBuffer: bounded storage of whole trajectories (what the replay loss needs), or of the seeds'
(input, target) pairs for the supervised adapter.

Shape letters (see :mod:`ssm_metarl.types`): T time, B batch (trajectories in a sample), D observation
features, A action dims; L the length of one stored trajectory, S the steps stored in all of them.

**Trajectories** (``add_trajectory`` / ``add_episodes``, read back with ``sample``). Each one is a whole
episode, or the beginning of one, from its first step: the observations as the policy saw them (after its
observation normalisation, which adaptation never updates), the actions exactly as the log-prob was computed
on them (index, or raw pre-squash Gaussian sample), the behaviour policy's log-prob, the reward, the
terminated / truncated flags and the task id. Because every trajectory starts an episode, a replay runs the
policy over it from the policy's initial state with ``reset[0] = True``, exactly as acting did: the
recurrent state is recomputed over the whole sequence and is never a zero state in the middle of an
episode, where it would not be the state the policy acted with. ``capacity`` counts **steps**
(transitions): adding a trajectory evicts the oldest whole trajectories until the total fits, so
``num_steps <= capacity`` always.

**Pairs** (the seeds' ``add(x, y)`` / ``get_batch(n)``): rows of (input, target) for sequence-prediction
adaptation (:class:`~ssm_metarl.adapt.supervised.Adapter`), each with the hidden state the model had before
the input when one is given (the context of a step taken mid-sequence); ``capacity`` counts pairs.

A buffer holds one kind or the other; mixing them raises. Sampling is uniform **with replacement**, O(1) per
draw. ``save`` / ``load`` use safetensors + JSON (never pickle), in a folder of its own (e.g. beside a
checkpoint folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ssm_metarl.checkpoint import atomic_file_write
from ssm_metarl.envs.tasks import Task
from ssm_metarl.rl.rollout import Episodes
from ssm_metarl.types import Rollout, State

_FORMAT = "ssm_metarl.ExperienceBuffer/1"
_TENSORS, _META = "buffer.safetensors", "buffer.json"
_TRAJ_FIELDS = ("obs", "action", "log_prob", "reward", "terminated", "truncated")


class Trajectory(NamedTuple):
    """One stored trajectory of length L; it starts an episode."""

    obs: Tensor
    """(L, D) float: what the policy acted on."""
    action: Tensor
    """(L,) int64 index, or (L, A) float raw pre-squash sample."""
    log_prob: Tensor
    """(L,) float: behaviour log-prob of ``action``."""
    reward: Tensor
    """(L,) float."""
    terminated: Tensor
    """(L,) bool."""
    truncated: Tensor
    """(L,) bool."""
    task_id: int
    """Index into :attr:`ExperienceBuffer.tasks`, or -1 when the task is unknown."""


class ReplayBatch(NamedTuple):
    """B sampled trajectories padded to the longest, T steps, time-major like a :class:`Rollout`."""

    obs: Tensor
    """(T, B, D)."""
    action: Tensor
    """(T, B) int64 or (T, B, A) float."""
    log_prob: Tensor
    """(T, B): behaviour log-prob."""
    reward: Tensor
    """(T, B), zero on padding."""
    terminated: Tensor
    """(T, B) bool."""
    truncated: Tensor
    """(T, B) bool."""
    reset: Tensor
    """(T, B) bool: True at t = 0 (every trajectory starts an episode) and on padding."""
    valid: Tensor
    """(T, B) bool: True on real steps."""
    task_id: Tensor
    """(B,) int64, -1 where unknown."""

    def to_episodes(self, state0: State) -> Episodes:
        """As :class:`~ssm_metarl.meta.maml.Episodes` for the losses, with ``state0`` (each tensor (B, ...)),
        normally ``policy.initial_state(B)``. ``value``, ``final_value`` and ``last_value`` are zeros: the
        losses recompute values and use no bootstrap on whole trajectories."""
        zeros = torch.zeros_like(self.reward)
        rollout = Rollout(
            obs=self.obs,
            action=self.action,
            log_prob=self.log_prob,
            value=zeros,
            reward=self.reward,
            terminated=self.terminated,
            truncated=self.truncated,
            reset=self.reset,
            final_value=zeros,
            last_value=zeros[0],
            state0=state0,
        )
        return Episodes(rollout, self.valid)


class ExperienceBuffer:
    """Bounded FIFO of trajectories or of (input, target) pairs; see the module docstring.

    Args:
        capacity: the most steps (trajectories) or pairs held; the oldest go first.
        device: where stored tensors live (and what ``sample`` / ``get_batch`` return on).
        max_size: the seeds' name for ``capacity``; overrides it when given.
        seed: seed of the buffer's own sampling generator (used when ``sample`` gets no ``rng``).
    """

    def __init__(
        self,
        capacity: int = 10_000,
        device: str | torch.device = "cpu",
        *,
        max_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        capacity = int(max_size if max_size is not None else capacity)
        if capacity < 1:
            raise ValueError(f"ExperienceBuffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.tasks: list[Task] = []
        self._task_ids: dict[Task, int] = {}
        self._items: list[Any] = []  # live items are self._items[self._head:]
        self._head = 0
        self._steps = 0
        self.kind: str | None = None
        """None while empty of both, then "trajectories" or "pairs"."""

    # ----- bookkeeping ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of stored trajectories or pairs."""
        return len(self._items) - self._head

    @property
    def num_steps(self) -> int:
        """S: steps held in all trajectories (pairs count one each)."""
        return self._steps

    def _size(self, item: Any) -> int:
        return int(item.obs.shape[0]) if isinstance(item, Trajectory) else 1

    def _set_kind(self, kind: str) -> None:
        if self.kind not in (None, kind):
            raise ValueError(f"this ExperienceBuffer holds {self.kind}; it cannot also hold {kind}")
        self.kind = kind

    def _push(self, item: Any) -> None:
        size = self._size(item)
        if size > self.capacity:
            raise ValueError(
                f"a trajectory of {size} steps does not fit a buffer of capacity {self.capacity}"
            )
        while self._steps + size > self.capacity:  # evict the oldest
            self._steps -= self._size(self._items[self._head])
            self._items[self._head] = None
            self._head += 1
        if self._head > 64 and self._head * 2 > len(self._items):  # compact: amortised O(1)
            self._items, self._head = self._items[self._head :], 0
        self._items.append(item)
        self._steps += size

    def items(self) -> list[Any]:
        """The stored trajectories (or pairs), oldest first."""
        return self._items[self._head :]

    def task_id(self, task: Task | None) -> int:
        """The id of ``task`` in :attr:`tasks` (added if new); -1 for None."""
        if task is None:
            return -1
        if task not in self._task_ids:
            self._task_ids[task] = len(self.tasks)
            self.tasks.append(task)
        return self._task_ids[task]

    def copy(self, capacity: int | None = None) -> ExperienceBuffer:
        """A new buffer with the same items (tensors shared, never modified) and a copied generator;
        ``capacity`` (default: the same) must hold what is stored."""
        capacity = self.capacity if capacity is None else int(capacity)
        if capacity < self._steps:
            raise ValueError(f"a copy of capacity {capacity} cannot hold the {self._steps} stored steps")
        new = ExperienceBuffer(capacity, self.device)
        new.rng.bit_generator.state = self.rng.bit_generator.state
        new.tasks, new._task_ids = list(self.tasks), dict(self._task_ids)
        new._items, new._steps, new.kind = self.items(), self._steps, self.kind
        return new

    # ----- trajectories -----------------------------------------------------------------------------
    def add_trajectory(
        self,
        obs: Tensor,
        action: Tensor,
        log_prob: Tensor,
        reward: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        task: Task | None = None,
    ) -> None:
        """Store one trajectory of L steps that **starts an episode**: obs (L, D), action (L,) or (L, A),
        log_prob, reward, terminated, truncated (L,) each. Evicts the oldest trajectories to make room."""
        L = int(obs.shape[0])
        if L == 0:
            raise ValueError("cannot store an empty trajectory")
        for name, x in (
            ("log_prob", log_prob),
            ("reward", reward),
            ("terminated", terminated),
            ("truncated", truncated),
        ):
            if tuple(x.shape) != (L,):
                raise ValueError(
                    f"{name} has shape {tuple(x.shape)}, expected ({L},) to match obs {tuple(obs.shape)}"
                )
        if action.shape[0] != L or action.dim() > 2:
            raise ValueError(f"action has shape {tuple(action.shape)}, expected ({L},) or ({L}, A)")
        if obs.dim() != 2:
            raise ValueError(f"obs must be (L, D), got {tuple(obs.shape)}")
        first = next((t for t in self.items() if isinstance(t, Trajectory)), None)
        if first is not None and (
            first.obs.shape[1:] != obs.shape[1:] or first.action.shape[1:] != action.shape[1:]
        ):
            raise ValueError(
                f"trajectory with obs {tuple(obs.shape[1:])} / action {tuple(action.shape[1:])} per step does not "
                f"match the stored ones ({tuple(first.obs.shape[1:])} / {tuple(first.action.shape[1:])})"
            )
        self._set_kind("trajectories")

        def own(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:  # a copy: never a view of a rollout
            return x.detach().to(device=self.device, dtype=dtype or x.dtype, copy=True)

        self._push(
            Trajectory(
                own(obs),
                own(action),
                own(log_prob),
                own(reward),
                own(terminated, torch.bool),
                own(truncated, torch.bool),
                self.task_id(task),
            )
        )

    def add_episodes(self, episodes: Episodes, tasks: Task | Sequence[Task] | None = None) -> None:
        """Store the valid steps of each of the B envs of ``episodes`` (from ``collect_episodes``: every
        env's first episode from its reset), env b with task ``tasks[b]`` (or one task for all)."""
        r, valid = episodes.rollout, episodes.valid
        B = r.num_envs
        per_env = [tasks] * B if tasks is None or isinstance(tasks, Task) else list(tasks)
        if len(per_env) != B:
            raise ValueError(f"got {len(per_env)} tasks for {B} envs")
        if not bool(r.reset[0].all()):
            raise ValueError("add_episodes needs episodes that start at a reset (reset[0] all True)")
        lengths = valid.sum(0).tolist()  # (B,)
        for b in range(B):
            L = int(lengths[b])
            self.add_trajectory(
                r.obs[:L, b],
                r.action[:L, b],
                r.log_prob[:L, b],
                r.reward[:L, b],
                r.terminated[:L, b],
                r.truncated[:L, b],
                per_env[b],
            )

    def sample(self, n: int, rng: np.random.Generator | None = None) -> ReplayBatch:
        """``n`` trajectories drawn uniformly with replacement, padded to the longest (T = max L)."""
        if self.kind != "trajectories" or len(self) == 0:
            raise ValueError("sample needs a buffer holding at least one trajectory")
        idx = (rng or self.rng).integers(0, len(self), size=n)
        trajs = [self._items[self._head + int(i)] for i in idx]
        T = max(int(t.obs.shape[0]) for t in trajs)

        def pad(x: Tensor, value: float | bool = 0) -> Tensor:
            return torch.cat([x, x.new_full((T - x.shape[0], *x.shape[1:]), value)]) if x.shape[0] < T else x

        fields = {
            f: torch.stack([pad(getattr(t, f)) for t in trajs], dim=1) for f in _TRAJ_FIELDS
        }  # (T, B, ...)
        lengths = torch.tensor([t.obs.shape[0] for t in trajs], device=self.device)  # (B,)
        valid = torch.arange(T, device=self.device)[:, None] < lengths[None, :]  # (T, B)
        reset = ~valid
        reset[0] = True
        task_id = torch.tensor([t.task_id for t in trajs], dtype=torch.long, device=self.device)
        return ReplayBatch(**fields, reset=reset, valid=valid, task_id=task_id)

    # ----- (input, target) pairs: the seeds' API ----------------------------------------------------
    def add(self, observations: Tensor, targets: Tensor, hidden_state: Tensor | None = None) -> None:
        """Seed API: store the rows of ``observations`` (B, ...) and ``targets`` (B, ...) as B pairs, with
        the rows of ``hidden_state`` (B, N), the model's state before each input, when given."""
        B = observations.shape[0]
        if targets.shape[0] != B or (hidden_state is not None and hidden_state.shape[0] != B):
            raise ValueError(
                f"observations {tuple(observations.shape)}, targets {tuple(targets.shape)} and hidden_state "
                f"{None if hidden_state is None else tuple(hidden_state.shape)} must share the batch size"
            )
        first = next(iter(self.items()), None)
        if (
            first is not None
            and isinstance(first, tuple)
            and (
                first[0].shape != observations.shape[1:]
                or first[1].shape != targets.shape[1:]
                or (first[2] is None) != (hidden_state is None)
            )
        ):
            raise ValueError("pairs must all have the same shapes and all carry a hidden state or none")
        self._set_kind("pairs")
        d = self.device
        x, y = observations.detach().to(d, copy=True), targets.detach().to(d, copy=True)
        h = None if hidden_state is None else hidden_state.detach().to(d, copy=True)
        for i in range(B):
            self._push((x[i], y[i], None if h is None else h[i]))

    def sample_pairs(
        self, n: int, rng: np.random.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``n`` pairs drawn uniformly with replacement: inputs (n, ...), targets (n, ...), hidden (n, N)
        or None."""
        if self.kind != "pairs" or len(self) == 0:
            raise ValueError("sample_pairs needs a buffer holding at least one pair")
        idx = (rng or self.rng).integers(0, len(self), size=n)
        rows = [self._items[self._head + int(i)] for i in idx]
        h = None if rows[0][2] is None else torch.stack([r[2] for r in rows])
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), h

    def get_batch(self, batch_size: int) -> tuple[Tensor, Tensor] | None:
        """Seed API: ``min(batch_size, len(self))`` pairs (drawn with replacement) as (inputs, targets),
        or None when the buffer is empty."""
        if len(self) == 0:
            return None
        x, y, _ = self.sample_pairs(min(int(batch_size), len(self)))
        return x, y

    # ----- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/buffer.safetensors`` + ``path/buffer.json`` (each to a temporary name, then renamed;
        the JSON last, so a half-written folder fails to load with a clear error). Returns the folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        items = self.items()
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "kind": self.kind,
            "capacity": self.capacity,
            "count": len(items),
            "tasks": [t.to_dict() for t in self.tasks],
        }
        if self.kind == "trajectories":
            for f in _TRAJ_FIELDS:
                tensors[f] = torch.cat([getattr(t, f) for t in items])  # (S, ...)
            tensors["length"] = torch.tensor([t.obs.shape[0] for t in items], dtype=torch.long)
            tensors["task_id"] = torch.tensor([t.task_id for t in items], dtype=torch.long)
        elif self.kind == "pairs":
            tensors["x"] = torch.stack([p[0] for p in items])
            tensors["y"] = torch.stack([p[1] for p in items])
            if items[0][2] is not None:
                tensors["hidden"] = torch.stack([p[2] for p in items])
        flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_file_write(folder / _TENSORS, lambda tmp: save_file(flat, tmp, metadata={"format": _FORMAT}))
        atomic_file_write(folder / _META, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ExperienceBuffer:
        """A buffer saved by :meth:`save`; raises FileNotFoundError / ValueError saying what is wrong."""
        folder = Path(path)
        if not (folder / _META).is_file() or not (folder / _TENSORS).is_file():
            raise FileNotFoundError(
                f"no saved ExperienceBuffer in {folder} (expected {_TENSORS} and {_META})"
            )
        try:
            meta = json.loads((folder / _META).read_text())
            tensors = load_file(str(folder / _TENSORS))
        except (ValueError, OSError) as e:
            raise ValueError(f"the ExperienceBuffer in {folder} is corrupt: {e}") from e
        if meta.get("format") != _FORMAT:
            raise ValueError(
                f"{folder / _META} is not an ExperienceBuffer ({_FORMAT}): format {meta.get('format')!r}"
            )
        buf = cls(int(meta["capacity"]), device)
        for t in meta["tasks"]:
            buf.task_id(Task.from_dict(t))
        count = int(meta["count"])
        if meta["kind"] == "trajectories":
            lengths = tensors["length"].tolist()
            if len(lengths) != count or sum(lengths) != tensors["obs"].shape[0]:
                raise ValueError(
                    f"the ExperienceBuffer in {folder} is inconsistent: lengths do not match the data"
                )
            parts = {f: tensors[f].split(lengths) for f in _TRAJ_FIELDS}
            for i, tid in enumerate(tensors["task_id"].tolist()):
                task = buf.tasks[tid] if tid >= 0 else None
                obs, action, log_prob, reward, terminated, truncated = (parts[f][i] for f in _TRAJ_FIELDS)
                buf.add_trajectory(obs, action, log_prob, reward, terminated, truncated, task=task)
        elif meta["kind"] == "pairs":
            buf.add(tensors["x"], tensors["y"], tensors.get("hidden"))
        if len(buf) != count:
            raise ValueError(
                f"the ExperienceBuffer in {folder} holds {len(buf)} items, its JSON says {count}"
            )
        return buf

    def __repr__(self) -> str:
        return (
            f"ExperienceBuffer(kind={self.kind}, items={len(self)}, steps={self.num_steps}, "
            f"capacity={self.capacity}, tasks={len(self.tasks)})"
        )


__all__ = ["ExperienceBuffer", "ReplayBatch", "Trajectory"]
