"""Test-time adaptation (ssm_metarl.adapt): it raises the return, hybrid(w=0) is standard bit for bit, the
replay loss recomputes recurrent state over each whole trajectory, the buffer is bounded and round-trips,
and online adaptation respects ``adapt_every`` and the env's action bounds."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ssm_metarl.adapt import (
    ExperienceBuffer,
    HybridAdapter,
    StandardAdapter,
    TestTimeAdapter,
    compare_adaptation,
    fill_buffer,
    replay_log_prob,
    replay_loss,
    surrogate_loss,
    task_episodes,
)
from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.errors import InputError, SpaceError
from ssm_metarl.meta.functional import params_of
from ssm_metarl.meta.maml import inner_loss
from ssm_metarl.models import make_policy
from ssm_metarl.results import format_table

torch.set_num_threads(1)

SIZES = {"mlp": {}, "gru": {}, "ssm": {"state_dim": 8, "num_layers": 1}}


def policy_for(family: str, kind: str, hidden_dim: int = 16, seed: int = 0, **kw):
    dist = get_family(family)
    env = dist.make_env(dist.train[0])
    torch.manual_seed(seed)
    policy = make_policy(
        kind, env.observation_space, env.action_space, hidden_dim=hidden_dim, **SIZES[kind], **kw
    )
    env.close()
    return policy


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----- adaptation works ---------------------------------------------------------------------------------


def test_standard_adaptation_raises_the_return_on_held_out_navigation_tasks():
    """A fresh mlp policy, 3 policy-gradient steps of 10 episodes on 4 held-out goals, 4 seeds."""
    dist = get_family("navigation-2d")
    policy = policy_for("navigation-2d", "mlp", hidden_dim=32)
    cfg = AdaptConfig(steps=3, episodes=10, lr=2.0)
    c = compare_adaptation(
        policy, "navigation-2d", dist.test[:4], cfg, seeds=(0, 1, 2, 3), modes=("standard",)
    )
    per_seed = c["standard"].seed_means()  # (S, K + 1)
    gain = per_seed[:, -1] - per_seed[:, 0]  # (S,) paired by seed
    mean, half = c["standard"].gain()
    assert gain.min() > 10.0, gain  # every seed improves (returns are about -73 before)
    assert mean > 2 * half and mean > 3 * per_seed[:, 0].std(ddof=1), (mean, half, per_seed[:, 0])
    assert c["standard"].at(-1).mean > c["random policy"].mean


@pytest.mark.parametrize("algo", ["pg", "ppo"])
def test_heads_only_adaptation_leaves_the_recurrent_backbone_as_it_was(algo):
    dist = get_family("navigation-2d")
    policy = policy_for("navigation-2d", "ssm")
    cfg = AdaptConfig(steps=2, episodes=4, lr=0.5, params="heads", algo=algo)
    run = StandardAdapter(policy, cfg).adapt(dist.test[0], seed=0)
    before = params_of(policy)
    for k, v in run.params.items():
        assert torch.equal(v, before[k].detach()) != k.startswith(("actor.", "log_std")), k


@pytest.mark.parametrize(
    ("family", "kind"), [("navigation-2d", "mlp"), ("cartpole-physics", "gru"), ("pendulum-physics", "ssm")]
)
def test_hybrid_with_zero_weight_equals_standard_exactly(family, kind):
    policy = policy_for(family, kind)
    task = get_family(family).test[0]
    buffer = fill_buffer(policy, family, get_family(family).train[:2], episodes_per_task=3, seed=5)
    n, K = 4, 2
    cfg = AdaptConfig(steps=K, episodes=n, lr=0.5, replay_batch_size=4)
    std = StandardAdapter(policy, cfg).adapt(task, seed=3)
    hyb0 = HybridAdapter(policy, buffer, cfg.replace(experience_weight=0.0)).adapt(task, seed=3)
    assert same_params(std.params, hyb0.params)
    assert std.mean_returns == hyb0.mean_returns and std.env_steps == hyb0.env_steps
    assert all("replay_loss" in s for s in hyb0.stats)  # the replay term was computed, with weight 0
    adapter = HybridAdapter(policy, buffer, cfg.replace(experience_weight=1.0))
    hyb = adapter.adapt(task, seed=3)
    # the task's copy holds the training trajectories and this task's K + 1 batches; the given buffer is untouched
    assert len(adapter.buffer) == 6 + (K + 1) * n and len(buffer) == 6
    assert adapter.buffer.tasks[-1] == task
    assert not same_params(std.params, hyb.params)  # ... and it matters when weighted
    assert np.array_equal(hyb.returns[0], std.returns[0])  # the same first episodes: same seeds and weights
    assert same_params(StandardAdapter(policy).initial_params(), params_of(policy))  # policy untouched


@pytest.mark.parametrize(("family", "kind"), [("cartpole-physics", "gru"), ("pendulum-physics", "ssm")])
def test_compare_adaptation_discrete_and_continuous_recurrent(family, kind):
    policy = policy_for(family, kind)
    dist = get_family(family)
    cfg = AdaptConfig(steps=2, episodes=2, lr=0.5, experience_weight=0.5)
    c = compare_adaptation(policy, family, dist.test[:2], cfg, seeds=(0, 1), buffer_tasks=1)
    std, hyb = c["standard"].values, c["hybrid"].values
    assert std.shape == hyb.shape == (2, 2, 3, 2)
    assert not np.array_equal(std[:, :, 1:], hyb[:, :, 1:])  # the replay term changed the adapted policies
    np.testing.assert_array_equal(std[:, :, 0], hyb[:, :, 0])  # k = 0 identical across modes
    assert tuple(c["hybrid - standard"].at(0)) == (0.0, 0.0)
    assert c["hybrid"].meta["buffer_steps"] > 0 and (c["standard"].env_steps > 0).all()
    assert np.isfinite(c["random policy"].values).all() and c["random policy"].seeds == (0, 1)
    table = format_table(c)
    assert "random policy" in table and "2 steps" in table and "hybrid - standard" in table
    assert list(c) == ["random policy", "standard", "hybrid", "hybrid - standard"]
    assert len(c["standard"].to_dict()["mean"]) == 3


def test_compare_adaptation_runs_only_the_modes_asked_for():
    """One mode alone gives the same numbers it gives beside the other, and no paired difference."""
    policy = policy_for("navigation-2d", "mlp")
    tasks = get_family("navigation-2d").test[:1]
    cfg = AdaptConfig(steps=1, episodes=2, lr=0.5, experience_weight=0.5)
    both = compare_adaptation(policy, "navigation-2d", tasks, cfg, seeds=(0,), buffer_tasks=1)
    for mode in ("standard", "hybrid"):
        one = compare_adaptation(
            policy, "navigation-2d", tasks, cfg, seeds=(0,), modes=(mode,), buffer_tasks=1
        )
        assert list(one) == ["random policy", mode]
        np.testing.assert_array_equal(one[mode].values, both[mode].values)
    assert "buffer_steps" in one["hybrid"].meta
    for bad in ((), ("standard", "replay")):
        with pytest.raises(InputError, match="non-empty subset"):
            compare_adaptation(policy, "navigation-2d", tasks, cfg, seeds=(0,), modes=bad)


def test_first_ppo_epoch_is_the_policy_gradient_and_ppo_adapts():
    policy = policy_for("navigation-2d", "ssm").double()
    task = get_family("navigation-2d").test[0]
    params = {k: v.detach().requires_grad_(True) for k, v in params_of(policy).items()}
    envs = get_family("navigation-2d").make_vec_env([task] * 4, seed=0, fast=True)
    ep = task_episodes(envs, policy, params, task, seed=1)
    envs.close()
    loss, stats = surrogate_loss(policy, params, ep, 0.99, 0.2)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-12) and stats["clipfrac"] == 0.0
    g_ppo = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    g_pg = torch.autograd.grad(inner_loss(policy, params, ep, 0.99), list(params.values()), allow_unused=True)
    for a, b in zip(g_ppo, g_pg):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    run = StandardAdapter(policy, AdaptConfig(steps=1, episodes=4, lr=0.5, algo="ppo", ppo_epochs=3)).adapt(
        task
    )
    assert not same_params(run.params, params_of(policy)) and run.stats[0]["approx_kl"] > 0


# ----- replay: recurrent state recomputed over each whole trajectory ----------------------------------


@pytest.mark.parametrize("kind", ["gru", "ssm"])
def test_replay_recomputes_recurrent_state_from_each_trajectory_start(kind):
    policy = policy_for("cartpole-physics", kind).double()
    with torch.no_grad():
        policy.actor.weight.mul_(100.0)  # make log-probs depend visibly on the features
    buffer = fill_buffer(policy, "cartpole-physics", get_family("cartpole-physics").train[:2], 4, seed=1)
    batch = buffer.sample(8, np.random.default_rng(0))
    params = params_of(policy)
    lp = replay_log_prob(policy, params, batch)  # (T, B)
    # the policy re-run from each trajectory's start reproduces the acting log-probs at every step
    torch.testing.assert_close(lp[batch.valid], batch.log_prob[batch.valid], rtol=0, atol=1e-9)
    loss, stats = replay_loss(policy, params, batch, 0.99, 0.2)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-12) and stats["clipfrac"] == 0.0
    # a replay started from a zero state in the middle of a trajectory gets them wrong
    b = int(batch.valid.sum(0).argmax())
    L = int(batch.valid[:, b].sum())
    t0 = L // 2
    assert t0 >= 4
    obs, act = batch.obs[t0:L, b].unsqueeze(0), batch.action[t0:L, b].unsqueeze(0)
    reset = torch.zeros(1, L - t0, dtype=torch.bool)
    reset[0, 0] = True
    with torch.no_grad():
        wrong, _, _, _ = policy.evaluate(obs, policy.initial_state(1), reset, act)
    assert (wrong[0] - batch.log_prob[t0:L, b]).abs().max() > 1e-3


# ----- the buffer ----------------------------------------------------------------------------------------


def _traj(L: int, marker: float, D: int = 3):
    return (
        torch.full((L, D), marker),
        torch.zeros(L, dtype=torch.long),
        torch.zeros(L),
        torch.full((L,), marker),
        torch.zeros(L, dtype=torch.bool),
        torch.zeros(L, dtype=torch.bool),
    )


def test_buffer_evicts_oldest_and_never_exceeds_capacity():
    buf = ExperienceBuffer(capacity=50, seed=0)
    rng = np.random.default_rng(0)
    for i in range(40):
        buf.add_trajectory(*_traj(int(rng.integers(1, 20)), float(i)))
        assert buf.num_steps <= 50
        markers = [float(t.reward[0]) for t in buf.items()]
        assert markers == list(range(int(markers[0]), i + 1))  # the newest, contiguous, oldest first
    assert buf.num_steps + 20 > 50  # it really filled up
    with pytest.raises(ValueError, match="does not fit"):
        buf.add_trajectory(*_traj(51, 0.0))
    batch = buf.sample(100)  # with replacement: more draws than trajectories
    assert batch.obs.shape[1] == 100 and bool(batch.reset[0].all())
    marker = batch.reward[0]  # (B,) each trajectory's id, repeated along it, zero-padded after its end
    assert torch.equal(batch.reward, torch.where(batch.valid, marker, 0.0))
    assert (
        torch.equal(batch.obs[..., 0], batch.reward)
        and (batch.reset == (~batch.valid | (torch.arange(batch.valid.shape[0])[:, None] == 0))).all()
    )

    pairs = ExperienceBuffer(max_size=4, device="cpu")  # the seeds' constructor
    assert pairs.get_batch(2) is None
    pairs.add(torch.arange(10.0).unsqueeze(1), torch.arange(10.0).unsqueeze(1) * 2)
    assert len(pairs) == 4
    x, y = pairs.get_batch(32)
    assert x.shape == (4, 1) and set(x.flatten().tolist()) <= {6.0, 7.0, 8.0, 9.0} and torch.equal(y, 2 * x)
    with pytest.raises(ValueError, match="holds pairs"):
        pairs.add_trajectory(*_traj(3, 0.0))


def test_buffer_save_load_round_trip(tmp_path):
    policy = policy_for("pendulum-physics", "mlp")
    tasks = get_family("pendulum-physics").train[:2]
    buf = fill_buffer(policy, "pendulum-physics", tasks, episodes_per_task=2, seed=0, capacity=700)
    assert len(buf) == 3 and buf.num_steps == 600  # 4 episodes of 200 steps, the oldest evicted
    loaded = ExperienceBuffer.load(buf.save(tmp_path / "replay"))
    assert loaded.capacity == 700 and loaded.tasks == buf.tasks and len(loaded) == len(buf)
    for a, b in zip(buf.items(), loaded.items()):
        assert a.task_id == b.task_id
        for f in ("obs", "action", "log_prob", "reward", "terminated", "truncated"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
    s1, s2 = buf.sample(5, np.random.default_rng(3)), loaded.sample(5, np.random.default_rng(3))
    assert all(torch.equal(u, v) for u, v in zip(s1, s2))

    pairs = ExperienceBuffer(8)
    pairs.add(torch.randn(5, 2, 3), torch.randn(5, 2, 1), hidden_state=torch.randn(5, 4))
    back = ExperienceBuffer.load(pairs.save(tmp_path / "pairs"))
    for a, b in zip(pairs.items(), back.items()):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    (tmp_path / "replay" / "buffer.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an ExperienceBuffer"):
        ExperienceBuffer.load(tmp_path / "replay")
    with pytest.raises(FileNotFoundError):
        ExperienceBuffer.load(tmp_path / "nothing")


# ----- online adaptation --------------------------------------------------------------------------------


class RecordActions(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(np.array(action, copy=True))
        return self.env.step(action)


def test_adapt_online_respects_adapt_every_and_the_env_action_bounds():
    env = RecordActions(gym.make("Pendulum-v1", max_episode_steps=60))
    torch.manual_seed(0)
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden_dim=16, init_log_std=1.0)
    adapter = TestTimeAdapter(policy, adaptation_lr=1e-2, adaptation_steps=2, buffer_size=500, seed=0)
    rewards, stats = adapter.adapt_online(env, num_episodes=2, adapt_every=25)
    assert len(rewards) == 2 and stats.episode_lengths == [60, 60] and stats.total_steps == 120
    assert stats.num_updates == 120 // 25 and stats.update_steps == [25, 50, 75, 100]
    actions = np.stack(env.actions)  # (120, 1)
    assert actions.min() >= -2.0 and actions.max() <= 2.0  # Pendulum's real bounds, never clipped
    assert np.abs(actions).max() > 1.0  # ... and not the [-1, 1] the seed clipped to
    assert stats.action_low[0] == actions.min() and stats.action_high[0] == actions.max()
    assert not same_params(adapter.meta_parameters, params_of(policy))  # adapted in place
    adapter.reset_to_meta()
    assert same_params(adapter.meta_parameters, {k: v.detach() for k, v in params_of(policy).items()})
    assert len(adapter.buffer) == 2

    wrong = make_policy(
        "mlp", env.observation_space, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), hidden_dim=8
    )
    with pytest.raises(SpaceError, match="bounds"):
        TestTimeAdapter(wrong).adapt_online(env, num_episodes=1, adapt_every=10)


def test_adapt_online_hybrid_recurrent_discrete():
    dist = get_family("cartpole-physics")
    policy = policy_for("cartpole-physics", "gru")
    start = fill_buffer(policy, "cartpole-physics", dist.train[:1], episodes_per_task=2, seed=0)
    env = dist.make_env(dist.test[0], seed=0)
    adapter = TestTimeAdapter(
        policy,
        adaptation_lr=1e-2,
        adaptation_steps=2,
        buffer_size=2000,
        mode="hybrid",
        experience_weight=0.5,
        buffer=start,
        seed=1,
    )
    rewards, stats = adapter.adapt_online(env, num_episodes=3, adapt_every=7)
    assert (
        stats.total_steps == sum(stats.episode_lengths) and sum(rewards) == stats.total_steps
    )  # reward 1/step
    assert stats.num_updates == stats.total_steps // 7 and all(np.isfinite(stats.losses))
    assert len(adapter.buffer) == 2 + 3 and len(start) == 2  # the given buffer is copied, not modified


def test_adapt_checkpoint_is_what_the_cli_runs(tmp_path):
    from ssm_metarl.adapt import adapt_checkpoint
    from ssm_metarl.checkpoint import save_policy

    policy = policy_for("navigation-2d", "mlp")
    ckpt = save_policy(tmp_path / "final", policy, {"family": "navigation-2d"})
    buf = fill_buffer(policy, "navigation-2d", get_family("navigation-2d").train[:1], 3, seed=0)
    saved = buf.save(tmp_path / "replay")
    cfg = AdaptConfig(steps=1, episodes=3, lr=0.3)
    c = adapt_checkpoint(
        ckpt, cfg, "out_of_range", num_tasks=2, seeds=(0,), buffer=saved, out=tmp_path / "result"
    )
    assert list(c) == ["random policy", "standard", "hybrid", "hybrid - standard"]
    assert c["standard"].meta["lr"] == 0.3 and c["hybrid"].meta["buffer_steps"] == buf.num_steps
    assert c["standard"].tasks == tuple(str(t) for t in get_family("navigation-2d").out_of_range[:2])
    assert c["standard"].num_seeds == 1 and "±" not in format_table(
        {"s": c["standard"]}
    )  # one seed: no interval
    assert (tmp_path / "result.json").is_file() and "| standard |" in (tmp_path / "result.md").read_text()
    with pytest.raises(InputError, match="no task family"):
        adapt_checkpoint(save_policy(tmp_path / "bare", policy), cfg)
