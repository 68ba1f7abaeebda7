"""Capture and restore the exact run-time state of Gymnasium envs as plain JSON data (no pickle).

A training run that resumes after ``kill -9`` must step its envs on exactly as the killed run would
have. :func:`env_state` turns an env (a ``gym.Env`` with its wrappers, or a vector env such as
``SyncVectorEnv``) into an :data:`EnvState`: a dict of dicts, lists, str, int, float, bool and None
that survives ``json.loads(json.dumps(state))`` unchanged. :func:`restore_env_state` writes it into an
env built the same way (same id, kwargs and wrappers; its seed and task do not matter, they are
overwritten), after which the same actions give bit-identical observations, rewards, flags and infos.
Nothing is ever unpickled and no class is imported from the data: classes are only looked up among
the modules already loaded.

What is captured
----------------
The wrapper chain is walked from the outermost layer through ``layer.env`` down to ``env.unwrapped``
(vector wrappers likewise; a ``SyncVectorEnv`` also holds the chain of each of its ``envs``, in
order). For every layer, its own instance attributes (``vars(layer)``) are captured when they hold:

* ``None``, ``bool``, ``int``, ``float``, ``str``; NumPy scalars and arrays of bool, int, uint and
  float dtypes (up to 64 bits) and of bytes and str dtypes, stored with their dtype so that every value
  round-trips bit-exactly (``json`` writes floats with ``repr``, exact for float64 and so for float32
  and float16 too). JSON has no NaN or infinity: non-finite floats are stored as ``"nan"``, ``"inf"``,
  ``"-inf"`` (a NaN comes back as NumPy's standard NaN, without its sign and payload bits);
* lists, tuples, dicts and ``collections.deque`` (with its ``maxlen``) of capturable values;
* random generators: ``numpy.random.Generator`` (its ``bit_generator.state``),
  ``numpy.random.RandomState`` and ``random.Random``;
* :class:`ssm_metarl.envs.tasks.Task` (``to_dict``), other frozen dataclasses with ``to_dict`` /
  ``from_dict``, and ``Enum`` members (by name);
* Gymnasium's ``RunningMeanStd`` (``NormalizeObservation`` / ``NormalizeReward``): mean, var, count;
* nested envs held in an attribute (``TrialEnv.inner``, the MuJoCo task envs' ``mujoco_env``): their
  whole chain, recursively;
* ``mujoco.MjData``: the simulator state ``mj_getState(..., mjSTATE_INTEGRATION)`` (time, qpos, qvel,
  act, warm-start accelerations, controls, applied forces, mocap, ...) and every array of ``mjData``
  whose size the model fixes. The latter matters: after ``mj_step``, quantities such as ``xpos`` or
  ``cfrc_ext`` belong to the state *before* the last integration step, and envs read them (Ant-v5's
  x-velocity is the change of ``xpos`` over a step), so recomputing them with ``mj_forward`` at the
  restored state would not reproduce the next step. Restoring sets the state, runs ``mj_forward``,
  writes the fixed-size arrays back and sets the state again. The variable-size contact and constraint
  arrays (``contact``, ``efc_*``, ``ncon``, ...) are not copied: they come from that ``mj_forward`` and
  ``mj_step`` recomputes them before using them; ``plugin_data`` (addresses in this process) neither.

Gymnasium's own wrappers are covered by this rule: ``TimeLimit._elapsed_steps``,
``OrderEnforcing._has_reset``, the ``PassiveEnvChecker`` flags, ``RecordEpisodeStatistics``' counters
and deques. Its episode start times are wall-clock readings (``time.perf_counter``): they are stored
as the time elapsed since, so the restored episode keeps its age; ``info["episode"]["t"]`` is a
wall-clock duration and is never bit-reproducible.

What is skipped, and why
------------------------
Skipped by rule, because it is not run-time state, is rebuilt by the constructor, or is handled by the
walk: ``gym.Space`` objects (so the spaces' own sampling generators are *not* captured: sample actions
from a generator the caller checkpoints), ``EnvSpec``, the wrapped ``env`` itself, ``SyncVectorEnv``'s
``envs`` and ``env_fns``, ``metadata``, ``render_mode``, rendering objects (``screen``, ``clock``,
``viewer``, ``mujoco_renderer``, ``surf``, ``isopen``, ...), recorded constructor arguments
(``_saved_kwargs``, ``_ezpickle_args``, ``_ezpickle_kwargs``), functions, methods, classes and modules,
``mujoco.MjModel`` (compiled from the model file; run-time edits of the model are not captured), and
task distributions (:class:`ssm_metarl.envs.tasks.TaskDistribution`: static).

Anything else is a *problem*: :func:`check_snapshot` lists them (``"LockEnv._lock: _thread.lock
cannot be captured"``; an ``AsyncVectorEnv``, whose sub-envs live in other processes, is one),
``env_state(env, strict=True)`` raises :class:`SnapshotError` naming them, and
``env_state(env, strict=False)`` captures the rest and records them under ``state["problems"]`` (a
restore from such a state logs a warning: the run will not continue exactly).

Restoring
---------
Values are rebuilt and assigned to the layer's ``__dict__``; objects whose identity others may hold are
restored in place: random generators (``bit_generator.state`` is set on the existing generator),
nested envs, ``MjData``, ``RunningMeanStd``, and arrays that are views of another buffer (e.g. of
MuJoCo's data). Objects shared between two attributes are captured twice and come back as two copies.
The chain of layer types (and the number and chains of a vector env's sub-envs) must match the
snapshot's, else :class:`SnapshotError` says what differs; this is checked before anything is written.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import inspect
import logging
import math
import random
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeAlias

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.wrappers.utils import RunningMeanStd

from ssm_metarl.envs.tasks import Task, TaskDistribution
from ssm_metarl.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "EnvState", "SnapshotError", "check_snapshot", "env_state", "restore_env_state"]

EnvState: TypeAlias = dict[str, Any]
"""What :func:`env_state` returns: plain JSON data (see the module docstring)."""

Json: TypeAlias = "None | bool | int | float | str | list[Json] | dict[str, Json]"
AnyEnv: TypeAlias = "gym.Env[Any, Any] | VectorEnv"

FORMAT: Final = "ssm_metarl.env_snapshot/1"
"""The value of ``state["format"]``; a state of another format is refused."""

_SKIPPED_NAMES: Final = frozenset(
    {"spec", "_cached_spec", "metadata", "_metadata", "render_mode", "_saved_kwargs"}
    | {"_ezpickle_args", "_ezpickle_kwargs"}
)
_RENDER_NAMES: Final = frozenset(
    {"screen", "clock", "viewer", "viewers", "_viewers", "mujoco_renderer", "renderer", "_renderer"}
    | {"surf", "isopen", "window", "render_frames"}
)
_VECTOR_WALKED: Final = frozenset({"envs", "env_fns"})
_CLOCK_ATTRS: Final = frozenset({"episode_start_time", "episode_start_times"})
_BIT_GENERATORS: Final[dict[str, type[np.random.BitGenerator]]] = {
    cls.__name__: cls
    for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64)
}
_MJ_POINTER_ARRAYS: Final = frozenset({"plugin_data"})  # addresses in this process: never copied
_STATE_OBJECTS: Final[dict[str, type]] = {
    "gymnasium.wrappers.utils:RunningMeanStd": RunningMeanStd,
}
_FUNCTION_TYPES: Final = (functools.partial, type, types.ModuleType, np.ufunc)
_KIND_NAMES: Final = {"env": "single env", "vector": "vector env"}
_NONFINITE: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_ARRAY_KINDS: Final = frozenset("biufSU")
_TAGS: Final = frozenset(
    {"__float__", "__ndarray__", "__npscalar__", "__tuple__", "__dict__", "__deque__", "__generator__"}
    | {"__random_state__", "__py_random__", "__task__", "__dataclass__", "__enum__", "__object__"}
    | {"__env__", "__mjdata__", "__elapsed__"}
)


class SnapshotError(InputError):
    """An env whose state cannot be captured exactly, or a state that does not fit the env it is
    restored into; the message says what differs or what cannot be captured."""


class _Uncapturable(Exception):
    """Internal: a value the encoder cannot store; ``str`` is the problem line."""


_MISSING: Final = object()


# --- public API --------------------------------------------------------------------------------------


def check_snapshot(env: AnyEnv) -> list[str]:
    """The reasons ``env`` cannot be snapshot exactly, one line each; empty when it can.

    Each line names the layer and attribute, e.g. ``"LockEnv._lock: _thread.lock cannot be captured"``
    (prefixed with ``Outer.attr:`` for a nested env). A vector env's sub-envs share one line per problem,
    prefixed with the sub-envs that have it: ``"envs[0-63]: ..."`` (``envs[0,2,5-7]: ...`` for some), so
    a warning that lists the problems stays one short line however many sub-envs there are.
    """
    problems: list[str] = []
    _capture(env, problems)
    return problems


def env_state(env: AnyEnv, strict: bool = True) -> EnvState:
    """The full run-time state of ``env`` (a ``gym.Env`` or a vector env) as plain JSON data.

    Args:
        env: the env, with its wrappers; for a ``SyncVectorEnv`` every sub-env is captured, in order.
        strict: raise :class:`SnapshotError` listing what cannot be captured (see
            :func:`check_snapshot`); with False, capture the rest and list the problems under
            ``state["problems"]``.

    Returns:
        ``{"format": FORMAT, "kind": "env" | "vector", "layers": [...], "envs": [...],
        "problems": [...]}`` (``envs`` only for a ``SyncVectorEnv``): exact under
        ``json.loads(json.dumps(state))``, with no NaN or infinity in it.
    """
    problems: list[str] = []
    state = _capture(env, problems)
    if problems and strict:
        raise SnapshotError(_problem_message(env, problems))
    state["problems"] = problems
    return state


def restore_env_state(env: AnyEnv, state: EnvState) -> None:
    """Write ``state`` (from :func:`env_state`, possibly through JSON) into ``env``, in place.

    ``env`` must be built as the captured one was (same id, kwargs and wrappers; seed and task may
    differ). Stepping it afterwards with the same actions gives exactly what the captured env would
    have given.

    Raises:
        SnapshotError: ``state`` is not an env state of this format, or its layer types, sub-env count
            or sub-env types differ from ``env``'s (checked before anything is written).
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise SnapshotError(f"not an env state of format {FORMAT!r} (got {found!r})")
    _check_chain(env, state, "")
    problems = state.get("problems") or []
    if problems:
        logger.warning(
            "restoring an inexact env state (%d problem(s) when it was captured: %s); the run will not "
            "continue exactly as the captured one would have",
            len(problems),
            "; ".join(map(str, problems)),
        )
    _restore(env, state, "")


# --- capture -----------------------------------------------------------------------------------------


def _capture(env: AnyEnv, problems: list[str]) -> EnvState:
    if not isinstance(env, (gym.Env, VectorEnv)):
        raise TypeError(f"expected a gymnasium Env or VectorEnv, got {type(env).__name__}")
    layers = _layers(env)
    base = layers[-1]
    entries = [_capture_layer(layer, problems, "") for layer in layers[:-1]]
    if isinstance(base, AsyncVectorEnv):
        problems.append(
            "AsyncVectorEnv: its sub-envs live in worker processes and cannot be captured; "
            "use a SyncVectorEnv (ssm_metarl.envs.make.make_vec_env)"
        )
        entries.append({"type": _type_id(type(base)), "attrs": {}})
    else:
        entries.append(_capture_layer(base, problems, ""))
    state: EnvState = {
        "format": FORMAT,
        "kind": "vector" if isinstance(env, VectorEnv) else "env",
        "layers": entries,
    }
    if isinstance(base, SyncVectorEnv):
        where: dict[str, list[int]] = {}  # each sub-env problem once, with the sub-envs that have it
        state["envs"] = []
        for i, sub in enumerate(base.envs):
            found: list[str] = []
            state["envs"].append({"layers": [_capture_layer(layer, found, "") for layer in _layers(sub)]})
            for p in dict.fromkeys(found):
                where.setdefault(p, []).append(i)
        problems.extend(f"envs[{_index_ranges(idx)}]: {p}" for p, idx in where.items())
    return state


def _index_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 3, 5, 7, 8] -> "0-3,5,7-8" (indices ascending)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _layers(env: AnyEnv) -> list[Any]:
    """The wrapper chain, outermost first, ending with the unwrapped env."""
    chain = [env]
    while isinstance(chain[-1], (gym.Wrapper, VectorWrapper)):
        chain.append(chain[-1].env)
    return chain


def _capture_layer(layer: Any, problems: list[str], prefix: str) -> dict[str, Any]:
    name = type(layer).__name__
    attrs: dict[str, Json] = {}
    for key, value in vars(layer).items():
        if _skipped(layer, key, value):
            continue
        try:
            if key in _CLOCK_ATTRS and _is_episode_statistics(layer) and _is_number(value):
                attrs[key] = {"__elapsed__": _encode(time.perf_counter() - value, set())}
            elif isinstance(value, (gym.Env, VectorEnv)):
                sub: list[str] = []
                attrs[key] = {"__env__": _capture(value, sub)}
                problems.extend(f"{prefix}{name}.{key}: {p}" for p in sub)
            else:
                attrs[key] = _encode(value, set())
        except _Uncapturable as err:
            problems.append(f"{prefix}{name}.{key}{err}")
    return {"type": _type_id(type(layer)), "attrs": attrs}


def _skipped(layer: Any, key: str, value: Any) -> bool:
    """Whether attribute ``key`` of ``layer`` is, by rule, not run-time state (module docstring)."""
    if key in _SKIPPED_NAMES or key in _RENDER_NAMES:
        return True
    if key == "env" and isinstance(layer, (gym.Wrapper, VectorWrapper)):
        return True
    if key in _VECTOR_WALKED and isinstance(layer, SyncVectorEnv):
        return True
    if isinstance(value, (gym.Space, EnvSpec, TaskDistribution)) or _is_mujoco(value, "MjModel"):
        return True
    return _is_function(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.ndarray)) and not isinstance(value, bool)


def _is_function(value: Any) -> bool:
    return inspect.isroutine(value) or isinstance(value, _FUNCTION_TYPES)


def _is_mujoco(value: Any, cls_name: str) -> bool:
    cls = type(value)
    return cls.__name__ == cls_name and cls.__module__.split(".")[0] == "mujoco"


def _is_episode_statistics(layer: Any) -> bool:
    return any(
        c.__name__ == "RecordEpisodeStatistics" and c.__module__.startswith("gymnasium.")
        for c in type(layer).__mro__
    )


def _type_id(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _type_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _problem_message(env: AnyEnv, problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return (
        f"{type(env).__name__} cannot be snapshot exactly; {len(problems)} problem(s):\n{lines}\n"
        "Pass strict=False to capture the rest (the run will then not resume exactly), or keep that "
        "state out of the env."
    )


def _encode(value: Any, active: set[int]) -> Json:
    """``value`` as JSON data; raises :class:`_Uncapturable` with the sub-path and the reason."""
    cls = type(value)
    if value is None or cls in (bool, int, str):
        return value
    if cls is float:
        return value if math.isfinite(value) else {"__float__": _nonfinite_name(value)}
    if cls is np.ndarray:
        return _encode_array(value)
    if isinstance(value, np.generic):
        enc = _encode_array(np.asarray(value))
        return {"__npscalar__": enc["__ndarray__"], "value": enc["data"][0]}
    if cls in (list, tuple, dict, collections.deque):
        if id(value) in active:
            raise _Uncapturable(f": a {cls.__name__} that contains itself cannot be captured")
        active.add(id(value))
        try:
            return _encode_container(value, active)
        finally:
            active.discard(id(value))
    if isinstance(value, np.random.Generator):
        return {"__generator__": _encode(value.bit_generator.state, active)}
    if isinstance(value, np.random.RandomState):
        return {"__random_state__": _encode(value.get_state(legacy=False), active)}
    if cls is random.Random:
        return {"__py_random__": _encode(value.getstate(), active)}
    if cls is Task:
        return {"__task__": value.to_dict()}
    if _is_dict_dataclass(cls):
        return {"__dataclass__": _type_id(cls), "data": _encode(value.to_dict(), active)}
    if isinstance(value, enum.Enum):
        if value.name is None or cls.__members__.get(value.name) is not value:
            raise _Uncapturable(f": {_type_name(cls)} value {value!r} is not a named member")
        return {"__enum__": _type_id(cls), "name": value.name}
    if _type_id(cls) in _STATE_OBJECTS:
        return {"__object__": _type_id(cls), "vars": _encode(dict(vars(value)), active)}
    if _is_mujoco(value, "MjData"):
        return {"__mjdata__": _encode_mjdata(value)}
    if isinstance(value, (gym.Env, VectorEnv)):
        raise _Uncapturable(f": an env inside a {type(value).__name__} container cannot be captured")
    raise _Uncapturable(f": {_type_name(cls)} cannot be captured")


def _encode_container(value: Any, active: set[int]) -> Json:
    def items(pairs: Iterator[tuple[str, Any]]) -> Iterator[Json]:
        for sub, item in pairs:
            try:
                yield _encode(item, active)
            except _Uncapturable as err:
                raise _Uncapturable(f"{sub}{err}") from None

    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("__") for k in value):
            return dict(zip(value, items((f"[{k!r}]", v) for k, v in value.items())))
        keys = list(items((f" key {k!r}", k) for k in value))
        return {"__dict__": [[k, v] for k, v in zip(keys, items((f"[{k!r}]", v) for k, v in value.items()))]}
    encoded = list(items((f"[{i}]", v) for i, v in enumerate(value)))
    if isinstance(value, tuple):
        return {"__tuple__": encoded}
    if isinstance(value, collections.deque):
        return {"__deque__": encoded, "maxlen": value.maxlen}
    return encoded


def _is_dict_dataclass(cls: type) -> bool:
    params = getattr(cls, "__dataclass_params__", None)
    return (
        dataclasses.is_dataclass(cls)
        and params is not None
        and bool(params.frozen)
        and callable(getattr(cls, "to_dict", None))
        and callable(getattr(cls, "from_dict", None))
    )


def _nonfinite_name(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _supported_dtype(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in _ARRAY_KINDS and (dtype.kind in "SU" or dtype.itemsize <= 8)


def _encode_array(arr: np.ndarray) -> dict[str, Any]:
    dtype = arr.dtype
    if not _supported_dtype(dtype):
        what = "array" if arr.ndim else "value"
        raise _Uncapturable(f": numpy {what} of dtype {dtype} cannot be captured")
    flat = arr.ravel(order="C")
    data: list[Any] = flat.tolist()
    if dtype.kind == "f" and not np.isfinite(flat).all():
        data = [x if math.isfinite(x) else _nonfinite_name(x) for x in data]
    elif dtype.kind == "S":
        data = [x.decode("latin-1") for x in data]  # every byte maps to one character and back
    return {"__ndarray__": dtype.str, "shape": list(arr.shape), "data": data}


def _encode_mjdata(data: Any) -> dict[str, Json]:
    import mujoco

    model = data.model
    spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
    state = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, state, spec)
    return {
        "spec": spec,
        "state": _encode_array(state),
        "arrays": {name: _encode_array(arr) for name, arr in _mj_fixed_arrays(data)},
    }


def _mj_fixed_arrays(data: Any) -> list[tuple[str, np.ndarray]]:
    """``mjData``'s non-empty arrays whose shape the model fixes (not the contact/constraint arena)."""
    import mujoco

    blank = mujoco.MjData(data.model)
    out = []
    for name in dir(data):
        if name.startswith("_") or name in _MJ_POINTER_ARRAYS:
            continue
        arr = getattr(data, name, None)
        if isinstance(arr, np.ndarray) and arr.size and getattr(blank, name).shape == arr.shape:
            out.append((name, arr))
    return out


# --- restore -----------------------------------------------------------------------------------------


def _check_chain(env: AnyEnv, state: Any, prefix: str) -> None:
    """Raise :class:`SnapshotError` unless ``env``'s layer types, sub-envs and nested envs match ``state``'s."""
    if not isinstance(state, dict):
        raise SnapshotError(f"{prefix}not an env state: {type(state).__name__}")
    kind = "vector" if isinstance(env, VectorEnv) else "env"
    if state.get("kind") != kind:
        raise SnapshotError(
            f"{prefix}the state was captured from a {_KIND_NAMES.get(str(state.get('kind')), 'unknown env')} "
            f"and cannot be restored into a {_KIND_NAMES[kind]} ({type(env).__name__})"
        )
    layers = _layers(env)
    _check_layers(layers, state.get("layers"), prefix)
    base = layers[-1]
    if isinstance(base, SyncVectorEnv) or "envs" in state:
        subs = state.get("envs")
        if not isinstance(subs, list):
            raise SnapshotError(f"{prefix}the state holds no sub-envs, this env is a {type(base).__name__}")
        if not isinstance(base, SyncVectorEnv):
            raise SnapshotError(
                f"{prefix}the state holds the sub-envs of a SyncVectorEnv, this env is a {type(base).__name__}"
            )
        if len(subs) != len(base.envs):
            raise SnapshotError(
                f"{prefix}the state holds {len(subs)} sub-envs, this {type(base).__name__} has "
                f"{len(base.envs)}: build the vector env with num_envs={len(subs)}"
            )
        for i, (sub, sub_state) in enumerate(zip(base.envs, subs)):
            if not isinstance(sub_state, dict):
                raise SnapshotError(f"{prefix}envs[{i}]: not an env state")
            sub_layers = _layers(sub)
            _check_layers(sub_layers, sub_state.get("layers"), f"{prefix}envs[{i}]: ")
            _check_nested(sub_layers, sub_state["layers"], f"{prefix}envs[{i}]: ")
    _check_nested(layers, state["layers"], prefix)


def _check_nested(layers: list[Any], entries: list[dict[str, Any]], prefix: str) -> None:
    for layer, entry in zip(layers, entries):
        attrs = entry["attrs"]
        if not isinstance(attrs, dict):
            raise SnapshotError(f"{prefix}{type(layer).__name__}: attrs is not a dict")
        for key, enc in attrs.items():
            path = f"{prefix}{type(layer).__name__}.{key}"
            existing = vars(layer).get(key)
            holds_env = isinstance(existing, (gym.Env, VectorEnv))
            if isinstance(enc, dict) and "__env__" in enc:
                if not holds_env:
                    raise SnapshotError(
                        f"{path}: the state holds an env here, this env has {type(existing).__name__}"
                    )
                _check_chain(existing, enc["__env__"], f"{path}: ")
            elif holds_env:
                raise SnapshotError(f"{path}: this env holds an env here, the state does not")


def _check_layers(layers: list[Any], entries: Any, prefix: str) -> None:
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "attrs" in e for e in entries):
        raise SnapshotError(f"{prefix}the state has no valid list of layers")
    ours = [_type_id(type(layer)) for layer in layers]
    theirs = [str(e.get("type")) for e in entries]
    if ours != theirs:
        diff = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise SnapshotError(
            f"{prefix}the env types differ at layer {diff}: the state was captured from "
            f"{_chain_str(theirs)}, this env is {_chain_str(ours)}"
        )


def _chain_str(type_ids: list[str]) -> str:
    return " > ".join(t.rpartition(":")[2].rpartition(".")[2] for t in type_ids) or "(nothing)"


def _restore(env: AnyEnv, state: dict[str, Any], prefix: str) -> None:
    layers = _layers(env)
    for layer, entry in zip(layers, state["layers"]):
        _restore_layer(layer, entry, prefix)
    if isinstance(layers[-1], SyncVectorEnv):
        for i, (sub, sub_state) in enumerate(zip(layers[-1].envs, state["envs"])):
            for layer, entry in zip(_layers(sub), sub_state["layers"]):
                _restore_layer(layer, entry, f"{prefix}envs[{i}]: ")


def _restore_layer(layer: Any, entry: dict[str, Any], prefix: str) -> None:
    own = vars(layer)
    for key, enc in entry["attrs"].items():
        path = f"{prefix}{type(layer).__name__}.{key}"
        if isinstance(enc, dict) and "__env__" in enc:
            _restore(own[key], enc["__env__"], f"{path}: ")  # types checked by _check_chain
        else:
            own[key] = _decode(enc, own.get(key, _MISSING), path)


def _decode(enc: Json, existing: Any, path: str) -> Any:
    """The value ``enc`` stands for; restored into ``existing`` where identity matters."""
    if enc is None or isinstance(enc, (bool, int, float, str)):
        return enc
    if isinstance(enc, list):
        items = existing if isinstance(existing, list) and len(existing) == len(enc) else None
        return [
            _decode(e, _MISSING if items is None else items[i], f"{path}[{i}]") for i, e in enumerate(enc)
        ]
    if not isinstance(enc, dict):
        raise SnapshotError(f"{path}: unexpected {type(enc).__name__} in the state")
    tags = [key for key in enc if key in _TAGS]
    if not tags:
        old = existing if isinstance(existing, dict) else {}
        return {k: _decode(v, old.get(k, _MISSING), f"{path}[{k!r}]") for k, v in enc.items()}
    if len(tags) != 1:
        raise SnapshotError(f"{path}: ambiguous entry with keys {sorted(enc)}")
    tag = tags[0]
    try:
        return _DECODERS[tag](enc, existing, path)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
        raise SnapshotError(f"{path}: malformed {tag} entry ({type(err).__name__}: {err})") from err


def _decode_float(enc: dict[str, Any], existing: Any, path: str) -> float:
    return _NONFINITE[enc["__float__"]]


def _decode_ndarray(enc: dict[str, Any], existing: Any, path: str) -> np.ndarray:
    arr = _array(enc["__ndarray__"], enc["shape"], enc["data"], path)
    if (
        isinstance(existing, np.ndarray)
        and existing.base is not None
        and existing.flags.writeable
        and existing.shape == arr.shape
        and existing.dtype == arr.dtype
    ):
        existing[...] = arr  # a view into another buffer (e.g. MuJoCo's data): keep it a view
        return existing
    return arr


def _array(dtype_str: str, shape: list[int], data: list[Any], path: str) -> np.ndarray:
    dtype = np.dtype(dtype_str)
    if not _supported_dtype(dtype):
        raise SnapshotError(f"{path}: unsupported array dtype {dtype_str!r}")
    shape_t = tuple(int(s) for s in shape)
    if len(data) != math.prod(shape_t):
        raise SnapshotError(f"{path}: {len(data)} values for an array of shape {shape_t}")
    if dtype.kind == "f":
        data = [_NONFINITE[x] if isinstance(x, str) else x for x in data]
    elif dtype.kind == "S":
        data = [x.encode("latin-1") for x in data]
    return np.array(data, dtype=dtype).reshape(shape_t)


def _decode_npscalar(enc: dict[str, Any], existing: Any, path: str) -> Any:
    return _array(enc["__npscalar__"], [], [enc["value"]], path)[()]


def _decode_tuple(enc: dict[str, Any], existing: Any, path: str) -> tuple[Any, ...]:
    items = enc["__tuple__"]
    old = existing if isinstance(existing, tuple) and len(existing) == len(items) else None
    return tuple(_decode(e, _MISSING if old is None else old[i], f"{path}[{i}]") for i, e in enumerate(items))


def _decode_dict(enc: dict[str, Any], existing: Any, path: str) -> dict[Any, Any]:
    old = existing if isinstance(existing, dict) else {}
    out = {}
    for k_enc, v_enc in enc["__dict__"]:
        k = _decode(k_enc, _MISSING, f"{path} key")
        out[k] = _decode(v_enc, old.get(k, _MISSING), f"{path}[{k!r}]")
    return out


def _decode_deque(enc: dict[str, Any], existing: Any, path: str) -> collections.deque[Any]:
    maxlen = enc["maxlen"]
    items = [_decode(e, _MISSING, f"{path}[{i}]") for i, e in enumerate(enc["__deque__"])]
    return collections.deque(items, maxlen=None if maxlen is None else int(maxlen))


def _decode_generator(enc: dict[str, Any], existing: Any, path: str) -> np.random.Generator:
    state = _decode(enc["__generator__"], _MISSING, path)
    name = state["bit_generator"]
    if isinstance(existing, np.random.Generator) and type(existing.bit_generator).__name__ == name:
        gen = existing
    elif name in _BIT_GENERATORS:
        gen = np.random.Generator(_BIT_GENERATORS[name]())
    else:
        raise SnapshotError(f"{path}: unknown bit generator {name!r}; known: {sorted(_BIT_GENERATORS)}")
    gen.bit_generator.state = state
    return gen


def _decode_random_state(enc: dict[str, Any], existing: Any, path: str) -> np.random.RandomState:
    rs = existing if isinstance(existing, np.random.RandomState) else np.random.RandomState()
    rs.set_state(_decode(enc["__random_state__"], _MISSING, path))
    return rs


def _decode_py_random(enc: dict[str, Any], existing: Any, path: str) -> random.Random:
    rng = existing if type(existing) is random.Random else random.Random()
    rng.setstate(_decode(enc["__py_random__"], _MISSING, path))
    return rng


def _decode_task(enc: dict[str, Any], existing: Any, path: str) -> Task:
    return Task.from_dict(enc["__task__"])


def _decode_dataclass(enc: dict[str, Any], existing: Any, path: str) -> Any:
    cls = _loaded_class(enc["__dataclass__"], path)
    if not _is_dict_dataclass(cls):
        raise SnapshotError(f"{path}: {enc['__dataclass__']} is not a frozen dataclass with from_dict")
    return cls.from_dict(_decode(enc["data"], _MISSING, path))


def _decode_enum(enc: dict[str, Any], existing: Any, path: str) -> enum.Enum:
    cls = _loaded_class(enc["__enum__"], path)
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        raise SnapshotError(f"{path}: {enc['__enum__']} is not an Enum")
    return cls[enc["name"]]


def _decode_object(enc: dict[str, Any], existing: Any, path: str) -> Any:
    type_id = enc["__object__"]
    if type_id not in _STATE_OBJECTS:
        raise SnapshotError(f"{path}: objects of type {type_id} cannot be restored")
    cls = _STATE_OBJECTS[type_id]
    obj = existing if type(existing) is cls else object.__new__(cls)
    own = vars(obj)
    for key, value in enc["vars"].items():
        own[key] = _decode(value, own.get(key, _MISSING), f"{path}.{key}")
    return obj


def _decode_mjdata(enc: dict[str, Any], existing: Any, path: str) -> Any:
    import mujoco

    if not _is_mujoco(existing, "MjData"):
        raise SnapshotError(f"{path}: the state holds MuJoCo data, this env has {type(existing).__name__}")
    body = enc["__mjdata__"]
    spec = int(body["spec"])
    state = _decode_ndarray(body["state"], _MISSING, f"{path} state").astype(np.float64)
    model, data = existing.model, existing
    size = mujoco.mj_stateSize(model, spec)
    if state.shape != (size,):
        raise SnapshotError(
            f"{path}: the MuJoCo state has {state.size} values, this model's has {size}: a different model"
        )
    arrays = {name: _decode_ndarray(a, _MISSING, f"{path}.{name}") for name, a in body["arrays"].items()}
    for name, arr in arrays.items():
        target = getattr(data, name, None)
        if not isinstance(target, np.ndarray) or target.shape != arr.shape or target.dtype != arr.dtype:
            found = getattr(target, "shape", None)
            raise SnapshotError(
                f"{path}.{name}: shape {arr.shape} in the state, {found} here: a different model"
            )
    mujoco.mj_setState(model, data, state, spec)
    mujoco.mj_forward(model, data)
    for name, arr in arrays.items():
        getattr(data, name)[...] = arr
    mujoco.mj_setState(model, data, state, spec)
    return data


def _decode_env(enc: dict[str, Any], existing: Any, path: str) -> Any:
    raise SnapshotError(f"{path}: an env can be restored only as an attribute of a layer")


def _decode_elapsed(enc: dict[str, Any], existing: Any, path: str) -> Any:
    return time.perf_counter() - _decode(enc["__elapsed__"], _MISSING, path)


def _loaded_class(type_id: str, path: str) -> Any:
    """The class ``module:qualname`` from an already imported module (nothing is imported)."""
    module_name, _, qualname = str(type_id).partition(":")
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        raise SnapshotError(f"{path}: module {module_name!r} is not imported; import it before restoring")
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise SnapshotError(f"{path}: no class {type_id!r}")
    return obj


_DECODERS: Final[dict[str, Callable[[dict[str, Any], Any, str], Any]]] = {
    "__float__": _decode_float,
    "__ndarray__": _decode_ndarray,
    "__npscalar__": _decode_npscalar,
    "__tuple__": _decode_tuple,
    "__dict__": _decode_dict,
    "__deque__": _decode_deque,
    "__generator__": _decode_generator,
    "__random_state__": _decode_random_state,
    "__py_random__": _decode_py_random,
    "__task__": _decode_task,
    "__dataclass__": _decode_dataclass,
    "__enum__": _decode_enum,
    "__object__": _decode_object,
    "__mjdata__": _decode_mjdata,
    "__env__": _decode_env,
    "__elapsed__": _decode_elapsed,
}
