"""Checkpoints round-trip through the path users call, and bad ones fail with a clear error."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from ssm_metarl.checkpoint import CheckpointError, load_metadata, load_policy, save_policy
from ssm_metarl.models import MODELS, make_policy

OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)


def _policy(kind="ssm", obs=OBS, act=None, **kw):
    torch.manual_seed(0)
    return make_policy(kind, obs, act or gym.spaces.Discrete(2), hidden_dim=16, **kw)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_save_load_gives_identical_outputs(tmp_path, kind):
    policy = _policy(kind, normalize_obs=True, separate_critic=(kind == "mlp"))
    policy.obs_norm.update(torch.randn(100, 4) * 3 + 1)
    path = save_policy(tmp_path / "ckpt", policy, metadata={"env_id": "CartPole-v1"})
    loaded = load_policy(path)
    obs = torch.randn(2, 9, 4)
    reset = torch.zeros(2, 9, dtype=torch.bool)
    reset[:, 0] = True
    with torch.no_grad():
        p1, v1, _ = policy(policy.normalize(obs), policy.initial_state(2), reset)
        p2, v2, _ = loaded(loaded.normalize(obs), loaded.initial_state(2), reset)
    assert torch.equal(p1, p2) and torch.equal(v1, v2)
    assert load_metadata(path) == {"env_id": "CartPole-v1"}


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "ckpt"
    save_policy(path, _policy())
    save_policy(path, _policy("gru"))
    assert load_policy(path).spec["kind"] == "gru"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_continuous_policy_round_trip(tmp_path):
    act = gym.spaces.Box(low=-np.ones(3), high=np.ones(3), dtype=np.float32)
    policy = _policy("ssm", act=act)
    with torch.no_grad():
        policy.log_std.fill_(-0.7)
    loaded = load_policy(save_policy(tmp_path / "c", policy))
    assert torch.equal(loaded.log_std, policy.log_std)
    assert loaded.action_space == act


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nope")


def test_missing_config(tmp_path):
    path = save_policy(tmp_path / "c", _policy())
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_policy(path)


def test_truncated_weights(tmp_path):
    path = save_policy(tmp_path / "c", _policy())
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_policy(path)


def test_wrong_shapes_are_named(tmp_path):
    path = save_policy(tmp_path / "c", _policy())
    cfg = json.loads((path / "config.json").read_text())
    cfg["policy"]["hidden_dim"] = 32
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config builds shape .* file has"):
        load_policy(path)


def test_corrupt_config(tmp_path):
    path = save_policy(tmp_path / "c", _policy())
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_policy(path)
