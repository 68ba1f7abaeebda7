"""Recurrent PPO: exact first-epoch ratio, determinism, smoke runs on discrete and continuous envs."""

import json
import shutil

import pytest
import torch

from ssm_metarl.config import ModelConfig, PPOConfig, RunConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.errors import ConfigError
from ssm_metarl.models import MODELS
from ssm_metarl.models.base import index_state
from ssm_metarl.rl.ppo import build_policy, train_ppo
from ssm_metarl.rl.rollout import RolloutCollector


def tiny(env_id="CartPole-v1", kind="ssm", seed=0, out_dir=None, **kw):
    base = dict(
        env_id=env_id,
        model=ModelConfig(kind=kind, hidden_dim=16, state_dim=16),
        total_steps=4 * 32 * 2,
        num_envs=4,
        rollout_steps=32,
        num_minibatches=2,
        update_epochs=2,
        eval_episodes=2,
        run=RunConfig(seed=seed, out_dir=out_dir, progress=False, checkpoint_every=1, keep_checkpoints=10),
    )
    base.update(kw)
    return PPOConfig(**base)


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_first_epoch_ratio_is_one(kind, env_id):
    """Re-running forward from the stored segment-start state reproduces the acting log-probs exactly."""
    torch.manual_seed(0)
    cfg = tiny(env_id, kind, max_episode_steps=20)  # episodes end inside the segment: resets mid-sequence
    envs = make_vec_env(env_id, cfg.num_envs, seed=0, max_episode_steps=20)
    policy = build_policy(cfg, envs)
    collector = RolloutCollector(envs, policy, seed=0)
    collector.collect(policy, 16)  # a second segment starts from a non-trivial state
    rollout = collector.collect(policy, 32)
    assert rollout.reset[1:].any(), "the test needs episode starts inside the segment"
    mb = torch.tensor([2, 0])
    with torch.no_grad():
        new_lp, _, new_v, _ = policy.evaluate(
            rollout.obs.transpose(0, 1)[mb],
            index_state(rollout.state0, mb),
            rollout.reset.transpose(0, 1)[mb],
            rollout.action.transpose(0, 1)[mb],
        )
    ratio = (new_lp - rollout.log_prob.T[mb]).exp()
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-5)
    torch.testing.assert_close(new_v, rollout.value.T[mb], rtol=1e-5, atol=1e-5)
    envs.close()


def test_same_seed_same_parameters():
    a = train_ppo(tiny(seed=3)).policy
    b = train_ppo(tiny(seed=3)).policy
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = train_ppo(tiny(seed=4)).policy
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"])
def test_every_model_trains_a_few_updates(kind, env_id):
    cfg = tiny(env_id, kind, normalize_obs=env_id != "CartPole-v1", normalize_reward=env_id != "CartPole-v1")
    result = train_ppo(cfg)
    assert len(result.metrics) >= 2
    assert all(torch.isfinite(p).all() for p in result.policy.parameters())
    assert "eval_return_det" in result.final_eval and "eval_return_stoch" in result.final_eval


def test_invalid_minibatches_rejected():
    with pytest.raises(ConfigError, match="must divide num_envs"):
        tiny(num_minibatches=3)


def test_out_of_range_hyperparameter_rejected():
    with pytest.raises(ConfigError, match="gamma"):
        tiny().replace(gamma=1.5)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_resume_from_a_checkpoint_gives_the_uninterrupted_parameters(tmp_path, env_id):
    """Resuming from update 2 of 4 (envs mid-episode, reward scaling and observation statistics running)
    ends with exactly the parameters and metrics of the run that was never interrupted."""
    norm = env_id != "CartPole-v1"
    cfg = tiny(
        env_id, out_dir=str(tmp_path / "a"), total_steps=4 * 128, normalize_obs=norm, normalize_reward=norm
    )
    full = train_ppo(cfg)
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "000000002", tmp_path / "b" / "checkpoints" / "000000002"
    )
    shutil.copy(tmp_path / "a" / "metrics.jsonl", tmp_path / "b" / "metrics.jsonl")
    resumed = train_ppo(
        cfg.replace(run=cfg.run.replace(out_dir=str(tmp_path / "b"), resume=str(tmp_path / "b")))
    )
    for (name, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["update"] for r in resumed.metrics if "update" in r] == [1, 2, 3, 4]
    timing = {"seconds", "sps"}
    same = [json.dumps({k: v for k, v in r.items() if k not in timing}, sort_keys=True) for r in full.metrics]
    assert same == [
        json.dumps({k: v for k, v in r.items() if k not in timing}, sort_keys=True) for r in resumed.metrics
    ]
    assert resumed.episode_returns == full.episode_returns
    with pytest.raises(ConfigError, match="lr: saved"):
        train_ppo(cfg.replace(lr=0.5, run=cfg.run.replace(resume=str(tmp_path / "a"))))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_acting_sees_parameter_updates_that_bypass_version_counters(kind):
    """A fused CPU Adam step does not bump autograd version counters; acting must still use new weights."""
    torch.manual_seed(0)
    cfg = tiny("CartPole-v1", kind, max_episode_steps=20)
    envs = make_vec_env("CartPole-v1", cfg.num_envs, seed=0, max_episode_steps=20)
    policy = build_policy(cfg, envs)
    collector = RolloutCollector(envs, policy, seed=0)
    collector.collect(policy, 8)  # acting builds any step caches
    opt = torch.optim.Adam(policy.parameters(), lr=0.05, fused=True)
    for p in policy.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    rollout = collector.collect(policy, 16)
    with torch.no_grad():
        new_lp, _, _, _ = policy.evaluate(
            rollout.obs.transpose(0, 1),
            rollout.state0,
            rollout.reset.transpose(0, 1),
            rollout.action.transpose(0, 1),
        )
    torch.testing.assert_close(new_lp, rollout.log_prob.T, rtol=1e-5, atol=1e-5)
    envs.close()


@pytest.mark.parametrize("kind", ["gated_ssm", "ssm"])
def test_recurrence_lr_scale_zero_freezes_the_recurrence_and_only_it(kind):
    """``recurrence_lr_scale=0`` leaves lambda (gated ssm) / nu, theta, gamma (ssm) where they started and
    trains everything else; the default keeps one Adam group in the parameters' order (old checkpoints)."""
    from ssm_metarl.models.base import is_recurrence_parameter
    from ssm_metarl.rl.ppo import optimizer_groups

    model = ModelConfig(kind=kind, hidden_dim=16, state_dim=16, complex=kind == "ssm", separate_critic=True)
    start = build_policy(tiny(kind=kind, model=model), make_vec_env("CartPole-v1", 1, seed=0))
    assert len(optimizer_groups(start, tiny(kind=kind))) == 1
    before = {n: p.detach().clone() for n, p in start.named_parameters()}
    trained = train_ppo(tiny(kind=kind, model=model, recurrence_lr_scale=0.0), policy=start).policy
    rec = {n for n in before if is_recurrence_parameter(n)}
    assert rec and all(n.startswith(("backbone.", "critic_backbone.")) for n in rec)
    after = dict(trained.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in rec)
    assert all(not torch.equal(after[n], before[n]) for n in before if n not in rec and "log_std" not in n)


def test_actor_critic_clipping_clips_each_side_to_the_bound():
    """``clip_grad="actor_critic"`` splits the parameters into the critic's (its backbone and value head) and
    the actor's (the rest), each clipped to ``max_grad_norm`` on its own."""
    from ssm_metarl.rl.ppo import clip_groups

    cfg = tiny(
        kind="gated_ssm",
        model=ModelConfig(kind="gated_ssm", hidden_dim=16, state_dim=16, separate_critic=True),
        clip_grad="actor_critic",
        max_grad_norm=0.01,
    )
    policy = build_policy(cfg, make_vec_env("CartPole-v1", 1, seed=0))
    actor, critic = clip_groups(policy, cfg)
    names = {id(p): n for n, p in policy.named_parameters()}
    assert {names[id(p)] for p in critic} == {
        n for n in names.values() if n.startswith(("critic_backbone.", "critic."))
    }
    assert len(actor) + len(critic) == len(list(policy.parameters()))
    for p in policy.parameters():
        p.grad = torch.ones_like(p)
    for ps in (actor, critic):
        torch.nn.utils.clip_grad_norm_(ps, cfg.max_grad_norm)
        assert torch.stack([p.grad.norm() for p in ps]).norm() == pytest.approx(0.01, rel=1e-4)
    rows = [r for r in train_ppo(cfg).metrics if "grad_norm" in r]
    assert rows and all(r["grad_norm"] > 0.0 for r in rows)


def test_flat_gradients_clip_as_clip_grad_norm_and_own_the_gradients():
    """FlatGrads binds each parameter's .grad to a view of one buffer per set: backward accumulates there,
    clipping gives clip_grad_norm_'s norms and gradients, parameters without a gradient keep none, and a
    replaced .grad is an error rather than a gradient silently left out."""
    import copy

    from ssm_metarl.rl.ppo import FlatGrads

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    ref = copy.deepcopy(net)
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    sets = [list(net[0].parameters()), [*net[2].parameters(), frozen]]
    ref_sets = [list(ref[0].parameters()), list(ref[2].parameters())]
    flat = FlatGrads(sets)
    assert frozen.grad is None and all(p.grad is not None for p in net.parameters())
    for max_norm in (0.01, 100.0):  # clipped, and not
        x = torch.randn(7, 3)
        flat.zero_()
        net(x).pow(2).sum().backward()
        ref.zero_grad(set_to_none=True)
        ref(x).pow(2).sum().backward()
        norms = flat.clip_(max_norm)
        for norm, ps in zip(norms, ref_sets):
            torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_(ps, max_norm))
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
    net[2].bias.requires_grad_(False)  # frozen after an update: the next FlatGrads clears its old gradient
    FlatGrads(sets)
    assert net[2].bias.grad is None
    net[0].weight.grad = torch.zeros_like(net[0].weight)
    with pytest.raises(RuntimeError, match="replaced"):
        flat.zero_()
