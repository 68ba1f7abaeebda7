"""Every space Stable-Baselines3 supports, through the whole stack: a tiny env per space where learning is
checkable (act on what you see), trained with PPO from the recipe, checkpoints that round-trip the spaces,
and a clear error for the spaces nobody supports."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from ssm_metarl.checkpoint import load_policy, save_policy
from ssm_metarl.errors import SpaceError
from ssm_metarl.models import make_policy
from ssm_metarl.recipes import recipe
from ssm_metarl.rl.evaluate import evaluate_policy
from ssm_metarl.rl.ppo import train_ppo

HORIZON = 16


class ActOnWhatYouSee(gym.Env):
    """Each step shows a random observation; the reward is the fraction of the action that matches the
    observation's ``target`` part (a memoryless task every policy can learn, in any pair of spaces)."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, target: Any) -> None:
        self.observation_space, self.action_space, self.target = obs_space, act_space, target
        self._t, self._obs = 0, None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t, self._obs = 0, self.observation_space.sample()
        return self._obs, {}

    def step(self, action):
        want = np.asarray(self.target(self._obs))
        reward = float(np.mean(np.asarray(action).reshape(want.shape) == want))
        self._t += 1
        self._obs = self.observation_space.sample()
        return self._obs, reward, False, self._t >= HORIZON, {}


def box_target(obs: np.ndarray) -> np.ndarray:
    return (obs.reshape(-1)[:2] > 0).astype(np.int64)


CASES = {
    "Discrete->Discrete": (
        gym.spaces.Discrete(4, start=1),
        gym.spaces.Discrete(4, start=1),
        lambda o: o,
        0.25,
    ),
    "MultiDiscrete->MultiDiscrete": (
        gym.spaces.MultiDiscrete([3, 2]),
        gym.spaces.MultiDiscrete([3, 2]),
        lambda o: o,
        (1 / 3 + 1 / 2) / 2,
    ),
    "MultiBinary->MultiBinary": (gym.spaces.MultiBinary(3), gym.spaces.MultiBinary(3), lambda o: o, 0.5),
    "Dict->Discrete": (
        gym.spaces.Dict({"cue": gym.spaces.Discrete(3), "noise": gym.spaces.Box(-1, 1, (2,), np.float32)}),
        gym.spaces.Discrete(3),
        lambda o: o["cue"],
        1 / 3,
    ),
    "Tuple->MultiBinary": (
        gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.Discrete(2))),
        gym.spaces.MultiBinary(2),
        lambda o: o[0],
        0.5,
    ),
    "Box(2,2)->MultiBinary": (
        gym.spaces.Box(-1, 1, (2, 2), np.float32),
        gym.spaces.MultiBinary(2),
        box_target,
        0.5,
    ),
}


def env_id(name: str) -> str:
    obs, act, target, _ = CASES[name]
    key = (
        f"ssm_metarl_test/{name.replace('->', '-to-').replace('(', '').replace(')', '').replace(',', 'x')}-v0"
    )
    if key not in gym.registry:
        gym.register(key, entry_point=lambda: ActOnWhatYouSee(obs, act, target), disable_env_checker=True)
    return key


@pytest.mark.parametrize("name", list(CASES))
def test_ppo_learns_in_every_space(name):
    # 6144 steps (12 updates; was 12288): this test's code with seed 0: 1.000 per step in every case but
    # Box(2,2)->MultiBinary (0.961; 0.969 after 12288); seeds 1 and 2: at least 0.938 in every case (Box(2,2),
    # seed 2; 0.945 after 12288), against bounds of 0.70 to 0.80
    chance = CASES[name][3]
    cfg = recipe("ppo", env_id(name), "mlp").replace(total_steps=6144, run__seed=0, run__progress=False)
    result = train_ppo(cfg)
    per_step = evaluate_policy(result.policy, cfg.env_id, 8, deterministic=True).mean / HORIZON
    assert per_step > chance + 0.6 * (1 - chance), f"{name}: {per_step:.2f} per step, chance {chance:.2f}"


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("kind", ["ssm", "gated_ssm", "gru"])
def test_recurrent_policies_act_and_round_trip_in_every_space(tmp_path, name, kind):
    obs_space, act_space, _, _ = CASES[name]
    torch.manual_seed(0)
    policy = make_policy(kind, obs_space, act_space, hidden_dim=8, separate_critic=True)
    cfg = recipe("ppo", env_id(name), kind).replace(
        total_steps=256,
        num_envs=2,
        rollout_steps=64,
        num_minibatches=1,
        model__hidden_dim=8,
        eval_episodes=1,
        run__progress=False,
        run__out_dir=str(tmp_path / "run"),
        run__checkpoint_every=1,
    )
    result = train_ppo(cfg)
    loaded = load_policy(save_policy(tmp_path / "p", result.policy))
    assert loaded.observation_space == obs_space and loaded.action_space == act_space
    env = gym.make(env_id(name))
    obs, _ = env.reset(seed=3)
    batch = {k: np.asarray(v)[None] for k, v in obs.items()} if isinstance(obs, dict) else None
    batch = batch or (
        tuple(np.asarray(v)[None] for v in obs) if isinstance(obs, tuple) else np.asarray(obs)[None]
    )
    a1, _ = result.policy.predict(batch, result.policy.initial_state(1), [True])
    a2, _ = loaded.predict(batch, loaded.initial_state(1), [True])
    assert np.array_equal(a1, a2) and act_space.contains(a1[0])
    assert policy.action_shape == result.policy.action_shape


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Text(4),
        gym.spaces.Sequence(gym.spaces.Discrete(2)),
        gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None),
    ],
)
def test_unsupported_spaces_fail_before_training_naming_what_is_supported(space):
    with pytest.raises(SpaceError, match="Box, Discrete, MultiDiscrete, MultiBinary"):
        make_policy("mlp", space, gym.spaces.Discrete(2))
    with pytest.raises(SpaceError, match="Discrete, MultiDiscrete, MultiBinary and Box"):
        make_policy("mlp", gym.spaces.Discrete(2), space)
