"""Task families: fixed splits, tasks that really differ, the exact 2D-navigation definition, registered ids."""

from __future__ import annotations

import copy
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from _vec_equivalence import assert_same_vec_step
from gymnasium.utils.env_checker import check_env

from ssm_metarl.envs import TASK_FAMILIES, Task, family_for_env_id, get_family, set_tasks
from ssm_metarl.envs.classic import (
    CARTPOLE_BEYOND,
    CARTPOLE_RANGES,
    NAV_BEYOND,
    NAV_RANGES,
    Navigation2DVec,
    NavigationDistribution,
)
from ssm_metarl.envs.tasks import BoxTaskDistribution, FiniteTaskDistribution

FAMILIES = sorted(TASK_FAMILIES)
MUJOCO = {"halfcheetah-vel", "halfcheetah-dir", "ant-dir"}
OUR_IDS = sorted(i for i in gym.registry if i.startswith("ssm_metarl/"))
SPLITS = ("train", "validation", "test", "out_of_range")


def test_every_family_is_registered_with_its_gymnasium_id() -> None:
    expected = {"cartpole-physics", "pendulum-physics", "navigation-2d", "bandit", "tabular-mdp"} | MUJOCO
    assert expected <= set(TASK_FAMILIES)
    assert {f"bandit-k{k}-n{n}" for k in (5, 10, 50) for n in (10, 100, 500)} <= set(TASK_FAMILIES)
    for name, dist in TASK_FAMILIES.items():
        assert dist.name == name and dist.env_id in gym.registry


@pytest.mark.parametrize("name", FAMILIES)
def test_splits_are_fixed_sized_and_test_is_held_out(name: str) -> None:
    dist = get_family(name)
    rebuilt = copy.copy(dist)
    rebuilt._splits = {}  # the same family with its split cache emptied: every split drawn again from its seed
    for split in SPLITS:  # deterministic: the same tasks in the same order, from any instance
        assert get_family(name).split(split) == rebuilt.split(split) == dist.split(split), split
    assert all(t.family == name for t in dist.train + dist.validation + dist.test + dist.out_of_range)
    if isinstance(dist, FiniteTaskDistribution):  # the two directions: nothing to hold out
        assert dist.test == dist.validation == dist.train == dist.all_tasks() and len(dist.test) == 2
        assert sorted(t["direction"] for t in dist.test) == [-1.0, 1.0]
        return
    assert len(dist.train) == dist.num_train == 100
    assert len(dist.test) == len(dist.validation) == dist.num_test >= 20
    assert not set(dist.test) & set(dist.train)
    if isinstance(dist, BoxTaskDistribution):
        assert len(dist.out_of_range) >= 20
        assert all(all(dist.in_range(t).values()) for t in dist.train + dist.test)
        for task in dist.out_of_range:  # every parameter beyond its training range
            assert not any(dist.in_range(task).values()), task
    else:
        assert dist.out_of_range == []


@pytest.mark.parametrize("name", FAMILIES)
def test_validation_is_non_empty_and_held_out_from_train_and_test(name: str) -> None:
    dist = get_family(name)
    assert dist.validation and len(set(dist.validation)) == len(dist.validation)
    if dist.finite:  # a finite family's every split is all of its tasks (module docstring of envs.tasks)
        assert set(dist.validation) == set(dist.train) == set(dist.test) == set(dist.all_tasks())
        return
    assert not set(dist.validation) & set(dist.train)
    assert not set(dist.validation) & set(dist.test)


def test_splits_do_not_depend_on_the_instance_or_on_other_randomness() -> None:
    np.random.seed(123)
    fresh = NavigationDistribution("navigation-2d", "ssm_metarl/Navigation2D-v0", NAV_RANGES, NAV_BEYOND)
    nav = get_family("navigation-2d")
    assert fresh.train == nav.train and fresh.test == nav.test and fresh.out_of_range == nav.out_of_range
    # pinned: changing a split silently would make published results incomparable
    assert [round(v, 6) for v in nav.test[0].values()] == [-0.402071, 0.410136]
    cartpole = BoxTaskDistribution("cartpole-physics", "x", CARTPOLE_RANGES, CARTPOLE_BEYOND)
    assert cartpole.test == get_family("cartpole-physics").test
    assert round(cartpole.test[0]["length"], 6) == 0.997525


def test_sample_uses_the_given_generator() -> None:
    dist = get_family("cartpole-physics")
    a, b = dist.sample(np.random.default_rng(5), 4), dist.sample(np.random.default_rng(5), 4)
    assert a == b and len(set(a)) == 4
    assert a != dist.sample(np.random.default_rng(6), 4)


def _rollout(dist_name: str, task: Task, actions: list, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    env = get_family(dist_name).make_env(task, seed=seed)
    assert env.unwrapped.get_task() == task
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(observations), np.array(rewards)


@pytest.mark.parametrize("name", FAMILIES)
def test_same_actions_on_two_tasks_give_different_trajectories(name: str) -> None:
    dist = get_family(name)
    task_a, task_b = dist.test[:2]
    assert task_a != task_b
    space = dist.make_env(task_a).action_space
    space.seed(0)
    actions = [space.sample() for _ in range(20 if name in MUJOCO else 60)]
    obs_a, rew_a = _rollout(name, task_a, actions)
    obs_b, rew_b = _rollout(name, task_b, actions)
    assert not (np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b))
    obs_a2, rew_a2 = _rollout(name, task_a, actions)  # and the difference is the task, not noise
    np.testing.assert_array_equal(obs_a, obs_a2)
    np.testing.assert_array_equal(rew_a, rew_a2)


@pytest.mark.parametrize("name", FAMILIES)
def test_task_json_round_trip(name: str) -> None:
    task = get_family(name).test[0]
    back = Task.from_dict(json.loads(json.dumps(task.to_dict())))
    assert back == task and hash(back) == hash(task) and back.names == task.names
    assert str(task).startswith(f"{name}(") and len(str(task)) < 200


def test_task_validation_and_access() -> None:
    task = Task.from_params("navigation-2d", {"goal_x": np.float64(0.25), "goal_y": -0.1})
    assert task["goal_x"] == 0.25 and type(task.params[0][1]) is float
    assert str(task) == "navigation-2d(goal_x=0.25, goal_y=-0.1)"
    with pytest.raises(KeyError, match="goal_z"):
        task["goal_z"]
    with pytest.raises(ValueError, match="duplicate"):
        Task("x", (("a", 1.0), ("a", 2.0)))
    with pytest.raises(ValueError, match="non-finite"):
        Task("x", (("a", float("nan")),))
    with pytest.raises(ValueError, match="family"):
        Task.from_dict({"params": {}})


@pytest.mark.parametrize("env_id", OUR_IDS)
def test_registered_ids_pass_the_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker only warns about infinite Box bounds
        check_env(env.unwrapped, skip_render_check=True)
    assert callable(env.unwrapped.set_task) and isinstance(env.unwrapped.get_task(), Task)
    env.close()


def _nav_env(goal: tuple[float, float]) -> gym.Env:
    task = Task.from_params("navigation-2d", {"goal_x": goal[0], "goal_y": goal[1]})
    return get_family("navigation-2d").make_env(task, seed=0)


def test_navigation_reward_is_minus_distance_after_the_clipped_move() -> None:
    env = _nav_env((0.3, -0.4))
    assert env.action_space == gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5, -0.05], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.1, -0.05], atol=1e-7)  # x clipped to 0.1
    assert reward == pytest.approx(-np.hypot(0.3 - 0.1, -0.4 + 0.05), abs=1e-7)
    obs, reward, *_ = env.step(np.array([-3.0, -3.0]))
    np.testing.assert_allclose(obs, [0.0, -0.15], atol=1e-7)
    assert reward == pytest.approx(-np.hypot(0.3, -0.25), abs=1e-7)
    assert not terminated and not truncated


def test_navigation_terminates_within_0_01_of_the_goal() -> None:
    env = _nav_env((0.2, 0.005))
    env.reset()
    _, _, terminated, _, _ = env.step(np.array([0.1, 0.0]))
    assert not terminated
    _, reward, terminated, truncated, _ = env.step(np.array([0.1, 0.0]))
    assert terminated and not truncated and reward == pytest.approx(-0.005)
    env = _nav_env((0.2, 0.02))  # |dy| = 0.02 is not close enough
    env.reset()
    for _ in range(2):
        _, _, terminated, _, _ = env.step(np.array([0.1, 0.0]))
    assert not terminated


def test_navigation_is_truncated_at_horizon_100() -> None:
    env = _nav_env((0.5, 0.5))
    env.reset()
    for t in range(1, 101):
        _, reward, terminated, truncated, _ = env.step(np.zeros(2))
        assert reward == pytest.approx(-np.sqrt(0.5))
        assert not terminated and truncated == (t == 100)


def test_navigation_vec_equals_sync_vector_env_step_for_step() -> None:
    dist = get_family("navigation-2d")
    reachable = Task.from_params("navigation-2d", {"goal_x": 0.05, "goal_y": -0.03})
    tasks = [reachable, *dist.test[:5], reachable]
    sync, fast = dist.make_vec_env(tasks, seed=0), dist.make_vec_env(tasks, seed=0, fast=True)
    assert isinstance(fast, Navigation2DVec) and fast.num_envs == sync.num_envs == 7
    assert fast.single_action_space == sync.single_action_space
    assert fast.single_observation_space == sync.single_observation_space
    obs_s, _ = sync.reset(seed=0)
    obs_f, _ = fast.reset(seed=0)
    rng = np.random.default_rng(0)
    goals = np.array([[t["goal_x"], t["goal_y"]] for t in tasks])
    n_terminated = n_truncated = 0
    for _ in range(230):
        actions = rng.uniform(-0.15, 0.15, size=(7, 2)).astype(np.float32)
        actions[0] = goals[0] - obs_f[0] + rng.normal(0, 0.003, 2)  # env 0 reaches its goal now and then
        step_s, step_f = sync.step(actions), fast.step(actions)
        assert_same_vec_step(step_s, step_f)
        obs_f = step_f[0]
        n_terminated += int(step_f[2].sum())
        n_truncated += int(step_f[3].sum())
    assert n_terminated > 0 and n_truncated == 2 * 6  # env 0 never lasts 100 steps; the rest truncate twice
    new = dist.test[5:12]
    set_tasks(sync, new)
    set_tasks(fast, new)
    assert [e.unwrapped.get_task() for e in sync.envs] == new == fast.tasks


def test_make_vec_env_gives_sub_env_i_task_i() -> None:
    dist = get_family("cartpole-physics")
    vec = dist.make_vec_env(dist.test[:3], seed=1)
    assert [e.unwrapped.get_task() for e in vec.envs] == dist.test[:3]
    env = vec.envs[1].unwrapped
    task = dist.test[1]
    assert env.length == task["length"] and env.total_mass == task["masspole"] + task["masscart"]
    assert env.polemass_length == pytest.approx(task["masspole"] * task["length"])
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    vec.close()


def test_family_for_env_id_and_unknown_names() -> None:
    assert family_for_env_id("CartPole-v1") == "cartpole-physics"
    assert family_for_env_id("Pendulum-v1") == "pendulum-physics"
    assert family_for_env_id("HalfCheetah-v5") == "halfcheetah-vel"
    assert family_for_env_id("Ant-v5") == "ant-dir"
    assert family_for_env_id("ssm_metarl/Navigation2D-v0") == "navigation-2d"
    assert family_for_env_id("bandit-k10-n100") == "bandit-k10-n100"
    with pytest.raises(ValueError, match="MountainCar-v0.*CartPole-v1 -> cartpole-physics"):
        family_for_env_id("MountainCar-v0")
    with pytest.raises(ValueError, match="'navigation-2d'.*Known families:.*cartpole-physics"):
        get_family("navigation2d")


def test_wrong_tasks_are_rejected_loudly() -> None:
    nav, cartpole = get_family("navigation-2d"), get_family("cartpole-physics")
    with pytest.raises(ValueError, match="cannot run a 'navigation-2d' task"):
        cartpole.make_env(nav.test[0])
    env = cartpole.make_env(cartpole.test[0])
    with pytest.raises(ValueError, match="cartpole-physics"):
        env.unwrapped.set_task(nav.test[0])
    with pytest.raises(ValueError, match="missing \\['gravity'\\]"):
        env.unwrapped.set_task(
            Task("cartpole-physics", [p for p in cartpole.test[0].params if p[0] != "gravity"])
        )
    bandit = get_family("bandit-k10-n10")
    with pytest.raises(ValueError, match="unexpected \\['p5'"):  # a 10-arm task on a 5-arm env
        gym.make("ssm_metarl/Bandit-v0", k=5).unwrapped.set_task(bandit.test[0])


@pytest.mark.parametrize(
    ("name", "horizon"), [("halfcheetah-vel", 200), ("halfcheetah-dir", 100), ("ant-dir", 200)]
)
def test_mujoco_rewards_follow_the_task_definitions(name: str, horizon: int) -> None:
    dist = get_family(name)
    task = dist.test[-1]
    env = dist.make_env(task, seed=0)
    assert gym.spec(dist.env_id).max_episode_steps == horizon
    env.action_space.seed(0)
    for _ in range(5):
        action = env.action_space.sample()
        _, reward, _, _, info = env.step(action)
        v, ctrl = info["x_velocity"], float(np.sum(np.square(action.astype(np.float64))))
        if name == "halfcheetah-vel":
            expected = -abs(v - task["velocity"]) - 0.05 * ctrl
        elif name == "halfcheetah-dir":
            expected = task["direction"] * v - 0.05 * ctrl
        else:  # survive bonus 1.0, ctrl cost 0.5 * sum(a^2), contact cost
            expected = task["direction"] * v + 1.0 - 0.5 * ctrl + info["reward_contact"]
        assert reward == pytest.approx(expected, rel=1e-5, abs=1e-5)
    if name == "ant-dir":  # terminates when the torso height leaves [0.2, 1.0]
        sim = env.unwrapped.mujoco_env
        assert sim._healthy_z_range == (0.2, 1.0) and sim._terminate_when_unhealthy
    env.close()


def test_bandit_pays_bernoulli_rewards_and_ends_after_n_pulls() -> None:
    task = Task("bandit", (("p0", 0.9), ("p1", 0.1), ("p2", 0.5), ("p3", 0.0), ("p4", 1.0)))
    env = get_family("bandit").make_env(task, seed=0)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0])
    rewards = {arm: [] for arm in range(5)}
    for t in range(1, 501):
        arm = t % 5
        _, reward, terminated, truncated, _ = env.step(arm)
        rewards[arm].append(reward)
        assert terminated == (t % 10 == 0) and not truncated  # N = 10 pulls per episode
        if terminated:
            env.reset()
    means = {arm: np.mean(r) for arm, r in rewards.items()}
    assert means[3] == 0.0 and means[4] == 1.0 and set(np.unique(rewards[0])) == {0.0, 1.0}
    assert means[0] == pytest.approx(0.9, abs=0.1) and means[1] == pytest.approx(0.1, abs=0.1)


def test_tabular_mdp_starts_in_state_0_and_lasts_10_steps() -> None:
    dist = get_family("tabular-mdp")
    task = dist.test[0]
    assert len(task.params) == 10 * 5 * 10 + 10 * 5
    env = dist.make_env(task, seed=0)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, np.eye(10)[0])
    for t in range(1, 11):
        obs, _, terminated, truncated, _ = env.step(t % 5)
        assert obs.sum() == 1.0 and obs.max() == 1.0 and terminated == (t == 10) and not truncated
    p = task.param_dict()
    assert all(
        abs(sum(p[f"P{s}_{a}_{s2}"] for s2 in range(10)) - 1) < 1e-9 for s in range(10) for a in range(5)
    )


def test_task_env_id_runs_exactly_that_task():
    from ssm_metarl.envs.make import make_env

    dist = get_family("cartpole-physics")
    task = dist.test[3]
    env_id = dist.task_env_id(task)
    assert env_id == dist.task_env_id(task)  # registered once, stable
    env = make_env(env_id, seed=0)
    assert env.unwrapped.get_task() == task
    assert env.spec.max_episode_steps == 500
    with pytest.raises(ValueError, match="cannot run"):
        dist.task_env_id(get_family("navigation-2d").test[0])


def test_multitask_env_draws_a_training_task_per_reset_reproducibly():
    from ssm_metarl.envs.make import make_env

    dist = get_family("cartpole-physics")
    env = make_env(dist.multitask_env_id())
    seen = []
    for _ in range(2):
        env.reset(seed=5)
        tasks = [env.unwrapped.get_task()]
        for _ in range(3):
            env.reset()
            tasks.append(env.unwrapped.get_task())
        seen.append(tasks)
    assert seen[0] == seen[1]
    assert len(set(seen[0])) == 4
    lo, hi = dist.ranges["length"]
    assert all(lo <= t["length"] <= hi for t in seen[0])


def test_constant_and_random_baselines_differ_and_are_seeded():
    from ssm_metarl.meta.evaluate import baseline_returns

    tasks = get_family("navigation-2d").test[:2]
    const = baseline_returns("navigation-2d", tasks, "constant", episodes=3).mean
    # the constant (zero) action stays at the origin: the return is -100 x the mean goal distance
    expected = -100 * np.mean([np.hypot(t["goal_x"], t["goal_y"]) for t in tasks])
    assert const == pytest.approx(expected, rel=1e-4)
    rand = baseline_returns("navigation-2d", tasks, "random", episodes=3, seeds=(1, 2))
    again = baseline_returns("navigation-2d", tasks, "random", episodes=3, seeds=(1, 2))
    assert np.array_equal(rand.values, again.values) and rand.values.shape == (2, 2, 1, 3)
    assert rand.mean < const - 10  # random steps wander away from every goal
    with pytest.raises(ValueError, match="kind"):
        baseline_returns("navigation-2d", tasks, "greedy")
