"""Env snapshots: capture an env mid-episode as JSON, restore it into a fresh env, step both identically."""

from __future__ import annotations

import collections
import copy
import enum
import json
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers.utils import RunningMeanStd

import ssm_metarl.envs  # noqa: F401  (registers the task families)
from ssm_metarl.envs.make import make_env, make_vec_env
from ssm_metarl.envs.snapshot import (
    FORMAT,
    SnapshotError,
    check_snapshot,
    env_state,
    restore_env_state,
)
from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.envs.trial import TrialEnv

Factory = Callable[[int], Any]
Leaf = tuple[str, Any]


def _gym(env_id: str) -> Factory:
    return lambda seed: make_env(env_id, seed)


def _family(name: str) -> Factory:
    dist = get_family(name)
    return lambda seed: dist.make_env(dist.train[0], seed=seed)


def _trial(family: str, episodes: int) -> Factory:
    def make(seed: int) -> TrialEnv:
        env = TrialEnv(family, episodes)
        env.reset(seed=seed)
        return env

    return make


def _wrapped_pendulum(seed: int) -> gym.Env:
    env = gym.make("Pendulum-v1", max_episode_steps=40)
    env = gym.wrappers.NormalizeObservation(env)
    env = gym.wrappers.NormalizeReward(env)
    env = gym.wrappers.RecordEpisodeStatistics(env, buffer_length=5)
    env.reset(seed=seed)
    return env


SINGLE_ENVS: dict[str, Factory] = {
    "CartPole-v1": _gym("CartPole-v1"),
    "Pendulum-v1": _gym("Pendulum-v1"),
    "MountainCarContinuous-v0": _gym("MountainCarContinuous-v0"),
    "Acrobot-v1": _gym("Acrobot-v1"),
    "cartpole-physics": _family("cartpole-physics"),
    "pendulum-physics": _family("pendulum-physics"),
    "navigation-2d": _family("navigation-2d"),
    "bandit": _family("bandit"),
    "tabular-mdp": _family("tabular-mdp"),
    "trial-navigation-2d": _trial("navigation-2d", 3),
    "trial-tabular-mdp": _trial("tabular-mdp", 3),
    "HalfCheetah-v5": _gym("HalfCheetah-v5"),
    "Ant-v5": _gym("Ant-v5"),
    "ant-dir": _family("ant-dir"),
    "pendulum+normalize+episode-statistics": _wrapped_pendulum,
}


def _actions(space: gym.Space, n: int, seed: int) -> list[Any]:
    space = copy.deepcopy(space)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _leaves(x: Any, path: str = "") -> list[Leaf]:
    """Every leaf of an observation / info structure with its path; numbers as arrays (dtype kept)."""
    if isinstance(x, dict):
        return [leaf for k in sorted(x, key=str) for leaf in _leaves(x[k], f"{path}/{k}")]
    if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.dtype == object):
        return [leaf for i, e in enumerate(x) for leaf in _leaves(e, f"{path}[{i}]")]
    if path.endswith("/episode/t"):  # RecordEpisodeStatistics' wall-clock episode duration
        return []
    if x is None or isinstance(x, str):
        return [(path, x)]
    return [(path, np.asarray(x))]


def _assert_identical(expected: list[list[Leaf]], got: list[list[Leaf]]) -> None:
    assert len(expected) == len(got)
    for t, (want, have) in enumerate(zip(expected, got)):
        assert [p for p, _ in want] == [p for p, _ in have], f"record {t}: different structure"
        for (path, a), (_, b) in zip(want, have):
            if isinstance(a, np.ndarray):
                assert isinstance(b, np.ndarray), f"record {t} {path}"
                assert a.dtype == b.dtype and a.shape == b.shape, f"record {t} {path}: {a!r} vs {b!r}"
                assert np.array_equal(a, b) and a.tobytes() == b.tobytes(), f"record {t} {path}: {a} vs {b}"
            else:
                assert a == b, f"record {t} {path}: {a!r} vs {b!r}"


def _run(env: gym.Env, actions: list[Any]) -> tuple[list[list[Leaf]], int]:
    """Step ``env`` (resetting it at episode ends, without a seed); the records and the episode ends."""
    records, ends = [], 0
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        records.append(
            _leaves({"obs": obs, "r": reward, "term": terminated, "trunc": truncated, "info": info})
        )
        if terminated or truncated:
            ends += 1
            obs, info = env.reset()
            records.append(_leaves({"reset_obs": obs, "reset_info": info}))
    return records, ends


def _run_vec(env: gym.vector.VectorEnv, actions: list[Any]) -> tuple[list[list[Leaf]], int]:
    records, ends = [], 0
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        ends += int(np.sum(terminated | truncated))
        records.append(
            _leaves({"obs": obs, "r": reward, "term": terminated, "trunc": truncated, "info": info})
        )
    return records, ends


def _json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(state, allow_nan=False)  # no NaN / infinity anywhere in the state
    back = json.loads(text)
    assert back == state
    return back


@pytest.mark.parametrize("name", list(SINGLE_ENVS))
def test_restored_env_steps_exactly_as_the_original(name: str) -> None:
    make = SINGLE_ENVS[name]
    env = make(0)
    assert check_snapshot(env) == []
    pre_steps = int(np.random.default_rng(sum(map(ord, name))).integers(15, 60))
    _run(env, _actions(env.action_space, pre_steps, seed=1))
    state = _json_round_trip(env_state(env))
    assert state["format"] == FORMAT and state["problems"] == []

    actions = _actions(env.action_space, 50, seed=2)
    expected, _ = _run(env, actions)
    fresh = make(12345)  # built the same way with another seed: nothing carries over by chance
    restore_env_state(fresh, state)
    got, _ = _run(fresh, actions)
    _assert_identical(expected, got)
    env.close()
    fresh.close()


def test_restore_overrides_the_task_of_a_physics_family() -> None:
    dist = get_family("cartpole-physics")
    env = dist.make_env(dist.train[0], seed=0)
    _run(env, _actions(env.action_space, 7, seed=1))
    state = _json_round_trip(env_state(env))
    actions = _actions(env.action_space, 50, seed=2)
    expected, _ = _run(env, actions)
    fresh = dist.make_env(dist.train[1], seed=3)
    restore_env_state(fresh, state)
    assert fresh.unwrapped.get_task() == dist.train[0]
    got, _ = _run(fresh, actions)
    _assert_identical(expected, got)


def test_vector_env_restores_every_sub_env_and_its_same_step_autoreset() -> None:
    vec = make_vec_env("CartPole-v1", 3, seed=0)
    vec.reset(seed=0)
    _, ends_before = _run_vec(vec, _actions(vec.action_space, 45, seed=1))
    assert ends_before >= 1  # the snapshot is taken after episode ends and autoresets
    state = _json_round_trip(env_state(vec))
    assert state["kind"] == "vector" and len(state["envs"]) == 3

    actions = _actions(vec.action_space, 80, seed=2)
    expected, ends_after = _run_vec(vec, actions)
    assert ends_after >= 2  # autoresets after the restore are compared too
    fresh = make_vec_env("CartPole-v1", 3, seed=99)
    fresh.reset(seed=99)
    restore_env_state(fresh, state)
    got, _ = _run_vec(fresh, actions)
    _assert_identical(expected, got)
    assert any("final_obs" in path for record in got for path, _ in record)


def test_restoring_into_a_mismatched_vector_env_says_what_differs() -> None:
    state = env_state(make_vec_env("CartPole-v1", 3, seed=0))
    fewer = make_vec_env("CartPole-v1", 2, seed=0)
    with pytest.raises(SnapshotError, match="3 sub-envs.*has 2") as err:
        restore_env_state(fewer, state)
    assert isinstance(err.value, ValueError)
    other = make_vec_env("Pendulum-v1", 3, seed=0)
    with pytest.raises(SnapshotError, match=r"envs\[0\].*CartPoleEnv.*PendulumEnv"):
        restore_env_state(other, state)
    with pytest.raises(SnapshotError, match="vector env"):
        restore_env_state(make_env("CartPole-v1", 0), state)


def test_restoring_into_another_env_type_fails_before_writing_anything() -> None:
    cartpole = make_env("CartPole-v1", 0)
    _run(cartpole, [0, 1, 0])
    state = env_state(cartpole)
    acrobot = make_env("Acrobot-v1", 0)
    before = acrobot.unwrapped.state.copy()
    with pytest.raises(SnapshotError, match="layer 3.*CartPoleEnv.*AcrobotEnv"):
        restore_env_state(acrobot, state)
    assert acrobot._elapsed_steps == 0  # the TimeLimit layers match, yet nothing was written
    assert np.array_equal(acrobot.unwrapped.state, before)
    with pytest.raises(SnapshotError, match="format"):
        restore_env_state(acrobot, {"format": "something-else"})
    with pytest.raises(SnapshotError, match="single env"):
        restore_env_state(make_vec_env("CartPole-v1", 1, seed=0), state)


def test_a_nested_env_of_another_type_is_refused() -> None:
    state = env_state(_trial("navigation-2d", 2)(0))
    with pytest.raises(SnapshotError, match=r"TrialEnv\.inner: .*Navigation2DEnv.*BanditEnv"):
        restore_env_state(_trial("bandit", 2)(0), state)


class TinyEnv(gym.Env):
    """One random number per step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.count = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.count = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.count += 1
        return np.full(1, self.np_random.random(), dtype=np.float32), 0.0, False, False, {}


class LockEnv(TinyEnv):
    """A tiny env holding a lock, which cannot be captured."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()


class OuterEnv(TinyEnv):
    """An env holding another env (as TrialEnv does)."""

    def __init__(self) -> None:
        self.count = 0
        self.inner = LockEnv()


def test_an_uncapturable_attribute_is_reported_and_strict_capture_refuses() -> None:
    env = LockEnv()
    env.reset(seed=0)
    problems = check_snapshot(env)
    assert problems == ["LockEnv._lock: _thread.lock cannot be captured"]
    with pytest.raises(SnapshotError, match="LockEnv._lock") as err:
        env_state(env, strict=True)
    assert isinstance(err.value, ValueError)
    assert check_snapshot(OuterEnv()) == ["OuterEnv.inner: LockEnv._lock: _thread.lock cannot be captured"]
    assert check_snapshot(gym.wrappers.TimeLimit(LockEnv(), 5)) == [
        "LockEnv._lock: _thread.lock cannot be captured"
    ]


def test_non_strict_capture_records_the_problems_and_restores_the_rest(caplog: Any) -> None:
    env = LockEnv()
    env.reset(seed=0)
    env.step(0)
    env.step(1)
    state = _json_round_trip(env_state(env, strict=False))
    assert state["problems"] == ["LockEnv._lock: _thread.lock cannot be captured"]
    assert "_lock" not in state["layers"][0]["attrs"] and state["layers"][0]["attrs"]["count"] == 2
    expected = [env.step(0)[0] for _ in range(5)]
    fresh = LockEnv()
    fresh.reset(seed=7)
    lock = fresh._lock
    with caplog.at_level("WARNING", logger="ssm_metarl.envs.snapshot"):
        restore_env_state(fresh, state)
    assert "inexact" in caplog.text
    assert fresh.count == 2 and fresh._lock is lock
    assert all(np.array_equal(a, fresh.step(0)[0]) for a in expected)


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class ZooEnv(TinyEnv):
    """Every kind of value the snapshot captures, set from ``seed``."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.nan, self.inf, self.ninf, self.neg_zero = math.nan, math.inf, -math.inf, -0.0
        self.text_nan = "nan"  # a string that looks like an encoded float stays a string
        bits = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32)
        bits[np.isnan(bits.view(np.float32))] = 1  # NaN payloads are not kept, only NaN itself
        self.f32_bits = bits.view(np.float32)  # random float32 bit patterns, subnormals, inf, nan, -0
        self.f32_bits[:5] = [np.nan, np.inf, -np.inf, -0.0, np.float32(1e-45)]
        self.f64 = rng.standard_normal((3, 4)).T  # Fortran-ordered view
        self.f16 = rng.standard_normal(5).astype(np.float16)
        self.i8 = rng.integers(-128, 128, size=6, dtype=np.int8)
        self.u64 = np.array([0, 2**64 - 1, seed], dtype=np.uint64)
        self.i64 = np.array([-(2**63), 2**63 - 1], dtype=np.int64)
        self.flags = rng.random(7) < 0.5
        self.board = np.array([[b"SF", b"H\x00"], [b"\xff", b"G"]], dtype="S2")  # as FrozenLake's desc
        self.letters = np.array(["A", "10", "ä"])
        self.zero_d = np.array(rng.random())
        self.empty = np.zeros((0, 3), dtype=np.float32)
        self.scalars = (np.float32(rng.random()), np.int64(-seed), np.bool_(seed % 2), np.float64(np.nan))
        self.text_scalars = [np.str_("K" * seed), np.bytes_(b"x" * seed)]
        self.nested = [1, [2.5, None, True, {"a": (1, "x")}], {3: "int key", (1, 2): "tuple key"}]
        self.dunder_keys = {"__ndarray__": seed, "normal": 1.0}
        self.queue = collections.deque([float(seed), 2.0], maxlen=3)
        self.gen_pcg = np.random.default_rng(seed)
        self.gen_mt = np.random.Generator(np.random.MT19937(seed))
        self.legacy = np.random.RandomState(seed)
        self.py_random = random.Random(seed)
        self.task = Task("navigation-2d", (("goal_x", 0.1 * seed), ("goal_y", -0.2)))
        self.colour = Colour.BLUE if seed % 2 else Colour.RED
        self.rms = RunningMeanStd(shape=(2,))
        self.rms.update(rng.standard_normal((4, 2)))
        for gen in (self.gen_pcg, self.gen_mt):
            gen.random(seed % 5 + 1)
        self.legacy.random_sample(3)
        self.py_random.random()


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, bit for bit (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return (
            a.dtype == b.dtype
            and np.shape(a) == np.shape(b)
            and np.asarray(a).tobytes() == np.asarray(b).tobytes()
        )
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and (
            a == b or (math.isnan(a) and math.isnan(b))
        )
    if isinstance(a, (list, tuple, collections.deque)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_every_supported_value_round_trips_bit_exactly_through_json() -> None:
    env = ZooEnv(3)
    assert check_snapshot(env) == []
    state = _json_round_trip(env_state(env))
    fresh = ZooEnv(8)
    generator, rms, view_base = fresh.gen_pcg, fresh.rms, fresh.f64.base
    restore_env_state(fresh, state)
    plain = [k for k in vars(env) if k not in {"gen_pcg", "gen_mt", "legacy", "py_random", "rms"}]
    for key in plain:
        assert _same(getattr(env, key), getattr(fresh, key)), key
    assert fresh.queue.maxlen == 3 and isinstance(fresh.text_nan, str)
    assert fresh.gen_pcg is generator and fresh.rms is rms  # restored in place
    assert fresh.f64.base is view_base  # a view stays a view of its buffer
    assert _same(env.rms.mean, fresh.rms.mean) and _same(env.rms.var, fresh.rms.var)
    assert env.rms.count == fresh.rms.count
    for gen_a, gen_b in ((env.gen_pcg, fresh.gen_pcg), (env.gen_mt, fresh.gen_mt)):
        assert _same(gen_a.random(8), gen_b.random(8))
    assert _same(env.legacy.random_sample(4), fresh.legacy.random_sample(4))
    assert env.py_random.random() == fresh.py_random.random()


def test_a_generator_missing_in_the_target_is_created_with_its_bit_generator() -> None:
    env = ZooEnv(1)
    state = env_state(env)
    fresh = ZooEnv(2)
    fresh.gen_mt = None
    restore_env_state(fresh, json.loads(json.dumps(state)))
    assert isinstance(fresh.gen_mt.bit_generator, np.random.MT19937)
    assert _same(env.gen_mt.integers(0, 2**62, 5), fresh.gen_mt.integers(0, 2**62, 5))
