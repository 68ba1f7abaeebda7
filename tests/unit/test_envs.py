"""Env construction: loud failures, seeding, truncation with the true final observation, spaces as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ssm_metarl.envs.make import (
    Environment,
    final_observation,
    make_env,
    make_vec_env,
    space_from_info,
    space_info,
)


@pytest.mark.parametrize("env_id", ["CartPole-v9", "Cartpole-v1", "NoSuchEnv-v0"])
def test_unknown_env_id_raises_value_error_naming_it(env_id: str) -> None:
    with pytest.raises(ValueError, match=env_id) as err:
        make_env(env_id)
    if env_id != "NoSuchEnv-v0":
        assert "'CartPole-v1'" in str(err.value)  # suggests the close match
    with pytest.raises(ValueError, match=env_id):
        make_vec_env(env_id, num_envs=2, seed=0)
    with pytest.raises(ValueError, match=env_id):
        Environment(env_id)


def _obs_sequence(seed: int, steps: int = 30) -> np.ndarray:
    vec = make_vec_env("CartPole-v1", num_envs=3, seed=seed)
    obs, _ = vec.reset()
    seq = [obs]
    for t in range(steps):  # long enough for episodes to end and autoreset
        obs, *_ = vec.step(np.full(3, t % 2 if t < 10 else 1, dtype=np.int64))
        seq.append(obs)
    vec.close()
    return np.stack(seq)


def test_make_vec_env_is_reproducible_with_a_seed() -> None:
    a, b, c = _obs_sequence(seed=3), _obs_sequence(seed=3), _obs_sequence(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0, 0], a[0, 1])  # sub-envs get different seeds


def test_truncation_sets_truncated_and_keeps_the_final_observation() -> None:
    actions = [0, 1, 0, 1, 0]  # alternate so CartPole cannot fall within 5 steps
    vec = make_vec_env("CartPole-v1", num_envs=2, seed=11, max_episode_steps=5)
    obs, _ = vec.reset()
    for t, a in enumerate(actions):
        obs, reward, terminated, truncated, info = vec.step(np.full(2, a, dtype=np.int64))
        if t < 4:
            assert not truncated.any() and not terminated.any()
    assert truncated.all() and not terminated.any()
    assert info["_final_obs"].all()
    final = final_observation(obs, info)
    assert final.shape == obs.shape and final.dtype == obs.dtype

    # the final observation is the state reached by 5 steps; obs is already the next episode's reset
    single = make_env("CartPole-v1", seed=11, max_episode_steps=5)
    single.reset()
    for a in actions:
        single_obs, _, single_term, single_trunc, _ = single.step(a)
    assert single_trunc and not single_term
    np.testing.assert_array_equal(final[0], single_obs)
    np.testing.assert_array_equal(final[0], info["final_obs"][0])
    assert not np.array_equal(obs[0], final[0])
    assert np.abs(obs).max() <= 0.05  # CartPole resets uniformly in [-0.05, 0.05]

    # where no episode ended, final_observation is the returned observation
    obs2, *_, info2 = vec.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(final_observation(obs2, info2), obs2)
    single.close()
    vec.close()


@pytest.mark.parametrize(
    ("env_id", "obs_shape", "action_shape"), [("HalfCheetah-v5", (17,), (6,)), ("Pendulum-v1", (3,), (1,))]
)
def test_continuous_envs_build_and_step(
    env_id: str, obs_shape: tuple[int, ...], action_shape: tuple[int, ...], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    with Environment(env_id, batch_size=2, seed=0, max_episode_steps=3) as env:
        assert isinstance(env.action_space, gym.spaces.Box)
        assert env.observation_space.shape == obs_shape and env.action_space.shape == action_shape
        obs, _ = env.reset()
        assert obs.shape == (2, *obs_shape)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.sample_actions())
        assert obs.shape == (2, *obs_shape) and reward.shape == (2,)
        assert truncated.all() and not terminated.any()
        assert final_observation(obs, info).shape == (2, *obs_shape)


def test_environment_five_tuple_api_and_context_manager() -> None:
    with Environment("CartPole-v1", batch_size=4, seed=0) as env:
        assert env.num_envs == env.batch_size == 4
        assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == (4,)
        assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 2
        result = env.reset()
        assert isinstance(result, tuple) and len(result) == 2
        obs, info = result
        assert obs.shape == (4, 4) and isinstance(info, dict)
        result = env.step(np.zeros(4, dtype=np.int64))
        assert len(result) == 5
        obs, reward, terminated, truncated, info = result
        assert obs.shape == (4, 4)
        assert reward.shape == (4,) and np.all(reward == 1.0)
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_ and terminated.shape == (4,)
        with pytest.raises(ValueError, match=r"\(4, 1\)"):
            env.step(np.zeros((4, 1), dtype=np.int64))
    assert env.closed


def test_environment_seed_reproduces_make_vec_env() -> None:
    with Environment("Pendulum-v1", batch_size=2, seed=5) as env:
        a, _ = env.reset()
    vec = make_vec_env("Pendulum-v1", 2, seed=5)
    b, _ = vec.reset()
    vec.close()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(3),
        gym.spaces.Discrete(4, start=-1),
        gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
        gym.spaces.Box(np.array([-np.inf, 0.0]), np.array([np.inf, 5.0]), dtype=np.float64),
        gym.spaces.Box(0, 255, (2, 3), dtype=np.uint8),
    ],
)
def test_space_info_round_trips_through_json(space: gym.Space) -> None:
    info = json.loads(json.dumps(space_info(space)))
    back = space_from_info(info)
    assert back == space
    assert back.dtype == space.dtype


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Text(3),
        gym.spaces.Sequence(gym.spaces.Discrete(2)),
        gym.spaces.Graph(gym.spaces.Discrete(2), None),
    ],
)
def test_space_info_rejects_unsupported_spaces(space: gym.Space) -> None:
    with pytest.raises(ValueError, match="unsupported space"):
        space_info(space)
    with pytest.raises(ValueError, match="unsupported space"):
        space_from_info({"type": type(space).__name__})
