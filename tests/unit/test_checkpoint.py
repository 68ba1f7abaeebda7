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


# ----- property tests: any damage to a checkpoint is a CheckpointError, never a deep traceback -------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = save_policy(tmp_path_factory.mktemp("ckpt") / "c", _policy("ssm", normalize_obs=True))
    return path, (path / "model.safetensors").read_bytes(), json.loads((path / "config.json").read_text())


KEEP = object()


def _copy(tmp_path, saved, weights: bytes | None = None, config: object = KEEP):
    path, raw, cfg = saved
    out = tmp_path / "damaged"
    out.mkdir(exist_ok=True)
    (out / "model.safetensors").write_bytes(raw if weights is None else weights)
    (out / "config.json").write_text(json.dumps(cfg if config is KEEP else config))
    return out


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(max_size=64))
def test_truncated_or_garbled_weights(tmp_path_factory, saved, cut, junk):
    raw = saved[1]
    data = raw[: cut % len(raw)] + junk
    out = _copy(tmp_path_factory.mktemp("t"), saved, weights=data)
    with pytest.raises(CheckpointError):
        load_policy(out)


@SETTINGS
@given(
    change=st.sampled_from(["drop", "extra", "shape", "dtype", "nan"]),
    index=st.integers(min_value=0, max_value=100),
)
def test_wrong_tensors_are_named(tmp_path_factory, saved, change, index):
    tmp = tmp_path_factory.mktemp("w")
    tensors = load_file(str(saved[0] / "model.safetensors"))
    name = sorted(tensors)[index % len(tensors)]
    if change == "drop":
        del tensors[name]
    elif change == "extra":
        tensors["surprise.weight"] = torch.zeros(3)
    elif change == "shape":
        bigger = tuple(s + 1 for s in tensors[name].shape) or (2,)
        tensors[name] = torch.zeros(bigger, dtype=tensors[name].dtype)
    elif change == "dtype":
        tensors[name] = (
            tensors[name].to(torch.int32) if tensors[name].is_floating_point() else tensors[name].float()
        )
    else:
        if not tensors[name].is_floating_point() or tensors[name].numel() == 0:
            return
        tensors[name] = tensors[name].clone().fill_(float("nan"))
    save_file(tensors, str(tmp / "w.safetensors"))
    out = _copy(tmp, saved, weights=(tmp / "w.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=name if change != "extra" else "surprise"):
        load_policy(out)


@SETTINGS
@given(
    key=st.sampled_from(["kind", "hidden_dim", "observation_space", "action_space", "model_kwargs"]),
    value=st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 5), st.just({}), st.just([1, 2])),
    drop=st.booleans(),
)
def test_damaged_policy_description(tmp_path_factory, saved, key, value, drop):
    cfg = json.loads(json.dumps(saved[2]))
    if drop:
        del cfg["policy"][key]
    else:
        cfg["policy"][key] = value
    out = _copy(tmp_path_factory.mktemp("d"), saved, config=cfg)
    try:
        load_policy(out)
    except CheckpointError:
        return
    # a value that happens to describe the same policy (e.g. model_kwargs={} where it held {}) loads fine
    assert not drop and cfg["policy"][key] == saved[2]["policy"][key] or key == "model_kwargs"


@SETTINGS
@given(top=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
def test_config_that_is_not_an_object(tmp_path_factory, saved, top):
    out = _copy(tmp_path_factory.mktemp("o"), saved, config=top)
    with pytest.raises(CheckpointError):
        load_policy(out)


def test_a_policy_saved_in_float64_loads_in_float64(tmp_path):
    policy = _policy("gru").double()
    loaded = load_policy(save_policy(tmp_path / "d", policy))
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    for a, b in zip(policy.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
