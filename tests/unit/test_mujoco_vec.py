"""The batched HalfCheetah task env equals a SyncVectorEnv of the Gymnasium envs, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from _vec_equivalence import assert_same_vec_step

from ssm_metarl.envs import Task, get_family, set_tasks
from ssm_metarl.envs.mujoco import HalfCheetahTaskVec
from ssm_metarl.errors import EnvError

pytest.importorskip("mujoco")


def _tasks(name: str) -> list[Task]:
    if name == "halfcheetah-dir":
        back, fwd = get_family(name).all_tasks()
        return [fwd, back, fwd]
    return [Task.from_params(name, {"velocity": v}) for v in (0.3, 1.1, 2.6)]


@pytest.mark.parametrize(("name", "horizon"), [("halfcheetah-dir", None), ("halfcheetah-vel", 30)])
def test_fast_halfcheetah_vec_equals_the_gymnasium_envs(name: str, horizon: int | None) -> None:
    dist = get_family(name)
    tasks = _tasks(name)
    kwargs = {} if horizon is None else {"max_episode_steps": horizon}
    sync = dist.make_vec_env(tasks, seed=5, **kwargs)
    fast = dist.make_vec_env(tasks, seed=5, fast=True, **kwargs)
    assert isinstance(fast, HalfCheetahTaskVec) and fast.num_envs == sync.num_envs == 3
    assert fast.single_observation_space == sync.single_observation_space
    assert fast.single_action_space == sync.single_action_space
    rng = np.random.default_rng(0)
    length = horizon or 100
    for episode_seed in (11, None):  # a seeded reset, then one that continues each env's generator
        obs_s, _ = sync.reset(seed=episode_seed)
        obs_f, _ = fast.reset(seed=episode_seed)
        np.testing.assert_array_equal(obs_s, obs_f)
        truncations = 0
        for t in range(2 * length + 7):  # two same-step autoresets
            actions = rng.uniform(-1.2, 1.2, size=(3, 6))  # beyond the control range: MuJoCo clamps
            if t % 2:
                actions = actions.astype(np.float32)
            step_s, step_f = sync.step(actions), fast.step(actions)
            assert_same_vec_step(step_s, step_f, ("x_velocity", "reward_forward", "reward_ctrl"))
            truncations += int(step_f[3].sum())
        assert truncations == 2 * 3
        set_tasks(sync, tasks[::-1])
        set_tasks(fast, tasks[::-1])
    sync.close()
    fast.close()


@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_rendering_and_other_families_keep_the_gymnasium_vector_env() -> None:
    from gymnasium.vector import SyncVectorEnv

    dist = get_family("halfcheetah-dir")
    envs = dist.make_vec_env(dist.all_tasks(), seed=0, fast=True, render_mode="rgb_array")
    assert isinstance(envs, SyncVectorEnv)
    envs.close()
    ant = get_family("ant-dir")
    envs = ant.make_vec_env(ant.all_tasks(), seed=0, fast=True)
    assert isinstance(envs, SyncVectorEnv)
    envs.close()
    with pytest.raises(EnvError, match="halfcheetah-dir"):
        dist.make_vec_env([Task.from_params("halfcheetah-vel", {"velocity": 1.0})], seed=0, fast=True)
