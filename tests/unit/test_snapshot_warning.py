"""An env that cannot be snapshot exactly (POPGym's card decks, a lock, ...) is reported in one short line,
once per training run, however many sub-envs the vector env has: each problem is named once, with the
sub-envs that have it."""

from __future__ import annotations

import logging
import threading

import gymnasium as gym
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import SyncVectorEnv

from ssm_metarl.config import ModelConfig, PPOConfig, RunConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.envs.snapshot import SnapshotError, check_snapshot, env_state
from ssm_metarl.rl.ppo import train_ppo

ENV_ID = "ssm_metarl_tests/LockedCartPole-v0"
PROBLEM = "LockedCartPole._lock: _thread.lock cannot be captured"


class LockedCartPole(CartPoleEnv):
    """CartPole holding a lock, as POPGym's envs hold a card deck: state a snapshot cannot capture."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=LockedCartPole, max_episode_steps=50)


def test_a_problem_of_every_sub_env_is_one_line_naming_the_sub_envs():
    envs = make_vec_env(ENV_ID, 8, seed=0)
    assert check_snapshot(envs) == [f"envs[0-7]: {PROBLEM}"]
    with pytest.raises(SnapshotError) as err:
        env_state(envs, strict=True)
    assert str(err.value).count(PROBLEM) == 1
    assert env_state(envs, strict=False)["problems"] == [f"envs[0-7]: {PROBLEM}"]
    envs.close()


def test_a_problem_of_some_sub_envs_names_exactly_those():
    locked = {0, 2, 5, 6, 7}
    fns = [(lambda i=i: LockedCartPole() if i in locked else CartPoleEnv()) for i in range(8)]
    envs = SyncVectorEnv(fns)
    assert check_snapshot(envs) == [f"envs[0,2,5-7]: {PROBLEM}"]
    envs.close()


def test_training_warns_once_in_one_short_line(tmp_path, caplog):
    cfg = PPOConfig(
        env_id=ENV_ID,
        model=ModelConfig(kind="mlp", hidden_dim=8),
        total_steps=8 * 16,
        num_envs=8,
        rollout_steps=16,
        num_minibatches=1,
        update_epochs=1,
        eval_episodes=1,
        run=RunConfig(seed=0, out_dir=str(tmp_path / "run"), progress=False, checkpoint_every=1),
    )
    with caplog.at_level(logging.WARNING, logger="ssm_metarl"):
        train_ppo(cfg)
    warned = [r.getMessage() for r in caplog.records if "cannot be snapshot exactly" in r.getMessage()]
    assert len(warned) == 1, warned
    (line,) = warned
    assert "\n" not in line and len(line) < 200, line
    assert line.count(PROBLEM) == 1 and "envs[0-7]" in line
    assert line.startswith(ENV_ID) and line.endswith("a resumed run will start new episodes")
