"""What a self-improvement loop keeps between processes, and the checks that it is the same loop.

The manifest (:mod:`ssm_metarl.rsi.store` writes it atomically) holds the configuration and its
:func:`config_key`, the metrics' reference, the cycle, the consecutive failures, the env steps and seconds
used, the incumbent (cycle, weights hash, MAML config, training env steps) and the history of every
installed policy. :func:`create` writes the first one; :func:`install` and :func:`restore` change the
incumbent on disk and in the manifest together, with the weights hash-checked both ways.

The Optuna study is the other half (:func:`open_study`): it refuses a configuration other than the one it was
made with, and its trials carry who runs them and a heartbeat (:class:`Heartbeat`), so a trial whose process
is gone is told apart from a slow one (:func:`lost`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna

from ssm_metarl.config import MAMLConfig, RSIConfig
from ssm_metarl.errors import CheckpointError, InputError
from ssm_metarl.models import ActorCritic
from ssm_metarl.rsi import metrics as M
from ssm_metarl.rsi import store
from ssm_metarl.rsi.search import make_sampler

BUDGETS = (
    "cycles",
    "max_env_steps",
    "max_minutes",
    "storage",
    "restart_stopped",
    "heartbeat_s",
    "grace_s",
    "poll_s",
)
"""RSIConfig fields that may change between runs of one loop (budgets, limits, where the study is, timings)."""
STUDY_KEY = "ssm_metarl_rsi_config"
"""The study's user attribute that holds the :func:`config_key` it was made with."""


# ----- the configuration a loop belongs to -------------------------------------------------------------
def config_key(cfg: RSIConfig) -> dict[str, Any]:
    """The parts of ``cfg`` a loop belongs to (all but :data:`BUDGETS` and the start's out_dir, progress and
    threads), as JSON has them (tuples are lists): a loop's folder and study refuse another key."""
    d = cfg.to_dict()
    for k in BUDGETS:
        d.pop(k)
    for k in ("out_dir", "progress", "threads"):
        d["start"]["run"].pop(k)
    return dict(json.loads(json.dumps(d)))


def config_differences(
    given: dict[str, Any], saved: dict[str, Any], whose: str = "the folder's", prefix: str = ""
) -> list[str]:
    """Each setting where two :func:`config_key` dicts differ, named by its command-line flag:
    ``"--candidates 8 differs from the folder's 4"`` (``start.run`` fields have no prefix: ``--seed``)."""
    out = []
    for k in sorted(set(given) | set(saved)):
        a, b = given.get(k), saved.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, whose, f"{path}.")
        elif a != b:
            flag = "--" + path.removeprefix("start.run.")
            out.append(f"{flag} {_flag_value(a)} differs from {whose} {_flag_value(b)}")
    return out


def check_same_config(out: Path, cfg: RSIConfig, saved_key: dict[str, Any]) -> None:
    """Refuse ``cfg`` on the loop in ``out``, made with :func:`config_key` ``saved_key``, when they differ,
    naming each flag that differs."""
    changed = config_differences(config_key(cfg), saved_key)
    if changed:
        raise InputError(
            f"{out} holds a loop made with another configuration: {'; '.join(changed)}. Leave those flags out "
            "to resume it with the folder's values, or use another --out_dir"
        )


def _flag_value(v: Any) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


# ----- the manifest and the incumbent on disk -----------------------------------------------------------
def create(
    out: Path,
    cfg: RSIConfig,
    start: MAMLConfig,
    policy: ActorCritic,
    train_env_steps: int,
    baseline: ActorCritic,
    reference: M.Reference,
    env_steps: int,
    seconds: float,
) -> dict[str, Any]:
    """A new loop's state in ``out``: the baseline, the starting incumbent (as history cycle 0 and as the
    incumbent) and the manifest, which is returned."""
    store.save_checked(out / "baseline", baseline, {"family": cfg.family, "role": "multi-task baseline"})
    digest = store.save_checked(out / "history" / "cycle-0000", policy, {"family": cfg.family})
    store.save_checked(out / "incumbent", policy, {"family": cfg.family})
    state = {
        "config": cfg.to_dict(),
        "config_key": config_key(cfg),
        "reference": reference.to_dict(),
        "cycle": 0,
        "failures": 0,
        "env_steps": env_steps,
        "seconds": seconds,
        "incumbent": {
            "cycle": 0,
            "hash": digest,
            "maml": start.to_dict(),
            "train_env_steps": train_env_steps,
        },
        "history": [{"cycle": 0, "hash": digest, "path": "history/cycle-0000"}],
        "stopped": None,
    }
    store.write_manifest(out, state)
    return state


def history_entry(state: dict[str, Any], digest: str) -> dict[str, Any]:
    """The latest history entry (cycle, hash, path) of the policy whose weights hash to ``digest``."""
    return next(h for h in reversed(state["history"]) if h["hash"] == digest)


def install(
    out: Path,
    state: dict[str, Any],
    path: Path,
    digest: str,
    cycle: int,
    maml: dict[str, Any],
    train_env_steps: int,
    family: str,
) -> ActorCritic:
    """Make the checkpoint at ``path`` (exactly the weights evaluated: they must hash to ``digest``) the
    incumbent, on disk and in the manifest; returns it."""
    policy: ActorCritic = store.load_checked(path, digest)
    store.save_checked(out / "incumbent", policy, {"family": family})
    state["incumbent"] = {"cycle": cycle, "hash": digest, "maml": maml, "train_env_steps": train_env_steps}
    store.write_manifest(out, state)
    return policy


def restore(out: Path, state: dict[str, Any], previous: dict[str, Any], family: str) -> ActorCritic:
    """Make the previous incumbent (``previous``: its manifest entry) the incumbent again from its history
    checkpoint, bit for bit (the incumbent on disk is re-read and hash-checked); returns it."""
    entry = history_entry(state, previous["hash"])
    restored: ActorCritic = store.load_checked(out / entry["path"], previous["hash"])
    store.save_checked(out / "incumbent", restored, {"family": family})
    if store.weights_hash(store.load_checked(out / "incumbent", previous["hash"])) != previous["hash"]:
        raise CheckpointError("the rollback did not restore the previous incumbent's weights")
    state["incumbent"] = previous
    store.write_manifest(out, state)
    return restored


def record_installed(out: Path, state: dict[str, Any], cycle: int, policy: ActorCritic, family: str) -> None:
    """Keep the incumbent installed in ``cycle`` (it passed its recheck) in the history, for a later rollback."""
    path = f"history/cycle-{cycle:04d}"
    state["history"].append({"cycle": cycle, "hash": state["incumbent"]["hash"], "path": path})
    store.save_checked(out / path, policy, {"family": family})
    store.write_manifest(out, state)


# ----- the study ---------------------------------------------------------------------------------------
def storage_url(cfg: RSIConfig, out: Path) -> str:
    """``cfg.storage``, else the SQLite file ``study.db`` in ``out``."""
    return cfg.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def open_study(cfg: RSIConfig, out: Path, fresh: bool, objectives: tuple[str, ...]) -> optuna.Study:
    """The loop's study (created, or loaded when it exists), maximising ``objectives``. A study made by
    another configuration is refused, naming the flags that differ; so is a study with trials that
    ssm-metarl did not make, unless the loop is ``fresh``."""
    url = storage_url(cfg, out)
    sampler = make_sampler(cfg.sampler, cfg.seed, cfg.candidates)
    try:
        storage = optuna.storages.RDBStorage(url) if "://" in url else None
    except Exception as e:  # SQLAlchemy raises many kinds; the user needs the URL and the reason
        raise InputError(f"cannot open the Optuna storage {url!r}: {e}") from None
    if storage is None:
        raise InputError(
            f"RSIConfig.storage must be an SQLAlchemy URL (sqlite:///..., postgresql://...), got {url!r}"
        )
    study = optuna.create_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=sampler,
        directions=["maximize"] * len(objectives),
        load_if_exists=True,
    )
    mine = config_key(cfg)
    theirs = study.user_attrs.get(STUDY_KEY)
    if theirs is None:
        if not fresh and study.trials:
            raise InputError(f"study {cfg.study_name!r} in {url} was not made by ssm-metarl rsi")
        study.set_user_attr(STUDY_KEY, mine)
    elif theirs != mine:
        changed = "; ".join(config_differences(mine, theirs, "the study's"))
        raise InputError(
            f"study {cfg.study_name!r} in {url} was made by another configuration: {changed}; name a "
            "new study (--study_name) or use another out_dir"
        )
    return study


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lost(t: optuna.trial.FrozenTrial, grace_s: float) -> bool:
    """A running trial nobody runs any more: no worker recorded, its process gone (on this machine), or its
    heartbeat older than ``grace_s`` seconds (elsewhere)."""
    worker = t.user_attrs.get("worker")
    if not worker:
        return True
    host, _, pid = str(worker).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        return True
    beat = float(t.user_attrs.get("heartbeat", 0.0))
    return time.time() - beat > grace_s


class Heartbeat:
    """Writes ``time.time()`` to the trial's ``heartbeat`` attribute every ``every`` seconds, in a thread, so
    a coordinator on another machine can tell a slow trial from a lost one."""

    def __init__(self, trial: optuna.Trial, every: float) -> None:
        self.trial, self.every = trial, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.done.wait(self.every):
            self.trial.set_user_attr("heartbeat", time.time())

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


__all__ = [
    "BUDGETS",
    "STUDY_KEY",
    "Heartbeat",
    "check_same_config",
    "config_differences",
    "config_key",
    "create",
    "history_entry",
    "install",
    "lost",
    "open_study",
    "record_installed",
    "restore",
    "storage_url",
]
