"""learn2learn's four MAML properties, written for our functional API, on navigation-2d episodes."""

import pytest
import torch

from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.errors import ConfigError
from ssm_metarl.meta.functional import call, inner_update, params_of
from ssm_metarl.meta.maml import adapt, build_meta_policy, inner_loss, outer_loss, sample_episodes


@pytest.fixture(scope="module", params=["mlp", "ssm"])
def setup(request):
    torch.manual_seed(0)
    cfg = MAMLConfig(
        model=ModelConfig(kind=request.param, hidden_dim=16, state_dim=8, num_layers=1),
        inner=AdaptConfig(episodes=6, gamma=0.99, baseline="critic"),
    )
    dist = get_family("navigation-2d")
    policy = build_meta_policy(cfg, dist).double()
    task = dist.train[0]
    envs = dist.make_vec_env([task] * cfg.inner.episodes, seed=0, fast=True)
    meta = {k: v.detach() for k, v in params_of(policy).items()}
    support = sample_episodes(envs, policy, meta, [task] * 6, seed=1)
    query = sample_episodes(envs, policy, meta, [task] * 6, seed=2)
    return cfg, policy, support, query


def test_meta_gradient_reaches_meta_parameters(setup):
    cfg, policy, support, query = setup
    policy.zero_grad()
    adapted = adapt(policy, params_of(policy), [support], 0.1, cfg.gamma, first_order=False)
    loss, _ = outer_loss(policy, adapted, query, cfg)
    loss.backward()
    for name, p in policy.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert policy.actor.weight.grad.abs().sum() > 0


def test_inner_step_lowers_support_loss(setup):
    cfg, policy, support, _ = setup
    params = params_of(policy)
    before = inner_loss(policy, params, support, cfg.gamma)
    after = inner_loss(policy, inner_update(params, before, 0.01, first_order=True), support, cfg.gamma)
    assert after.item() < before.item()


def test_first_order_gradient_equals_hand_built_reference(setup):
    cfg, policy, support, query = setup
    policy.zero_grad()
    adapted = adapt(policy, params_of(policy), [support], 0.1, cfg.gamma, first_order=True)
    outer_loss(policy, adapted, query, cfg)[0].backward()
    ours = {k: p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None}
    # reference: theta' = theta - lr * g computed by hand, then d L(theta') / d theta' (identity Jacobian)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in params_of(policy).items()}
    grads = torch.autograd.grad(
        inner_loss(policy, theta, support, cfg.gamma), list(theta.values()), allow_unused=True
    )
    leaf = {
        k: (v - 0.1 * g if g is not None else v).detach().requires_grad_(True)
        for (k, v), g in zip(theta.items(), grads)
    }
    ref = torch.autograd.grad(outer_loss(policy, leaf, query, cfg)[0], list(leaf.values()), allow_unused=True)
    for (k, _), g in zip(leaf.items(), ref):
        if g is not None:
            torch.testing.assert_close(ours[k], g, rtol=1e-9, atol=1e-12)


def test_second_order_differs_from_first_order(setup):
    cfg, policy, support, query = setup
    grads = {}
    for fo in (True, False):
        policy.zero_grad()
        adapted = adapt(policy, params_of(policy), [support], 0.1, cfg.gamma, first_order=fo)
        outer_loss(policy, adapted, query, cfg)[0].backward()
        grads[fo] = torch.cat([p.grad.flatten() for p in policy.backbone.parameters()])
    assert not torch.allclose(grads[True], grads[False])
    assert torch.isfinite(grads[False]).all()


def test_heads_only_adaptation_changes_only_the_heads_and_still_meta_trains_the_backbone(setup):
    cfg, policy, support, query = setup
    policy.zero_grad()
    params = params_of(policy)
    adapted = adapt(policy, params, [support], 0.1, cfg.gamma, first_order=False, which="heads")
    changed = {k for k in params if not torch.equal(adapted[k].detach(), params[k].detach())}
    assert changed and all(k.startswith(("actor.", "log_std")) for k in changed), changed
    assert "actor.weight" in changed
    outer_loss(policy, adapted, query, cfg)[0].backward()
    # second order: the backbone's meta-gradient flows through the heads' inner step as well as the query loss
    for name, p in policy.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="'all' or 'heads'"):
        inner_update(params, inner_loss(policy, params, support, cfg.gamma), 0.1, which="backbone")


def test_call_with_own_parameters_equals_plain_call(setup):
    _, policy, _, query = setup
    r = query.rollout
    args = (r.obs.transpose(0, 1), r.state0, r.reset.transpose(0, 1), r.action.transpose(0, 1))
    a = policy.evaluate(*args)
    b = call(policy, params_of(policy), "evaluate", *args)
    for x, y in zip(a[:3], b[:3]):
        torch.testing.assert_close(x, y)


def test_snapshot_of_a_policy_that_has_acted_and_been_updated():
    # regression: the ssm's cached acting plan (views of the parameters) made deepcopy fail after an update
    from ssm_metarl.meta.functional import snapshot

    torch.manual_seed(0)
    cfg = MAMLConfig(model=ModelConfig(kind="ssm", hidden_dim=16, state_dim=8, num_layers=1))
    policy = build_meta_policy(cfg, get_family("navigation-2d"))
    obs, reset = torch.zeros(3, 2), torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        policy.act(obs, policy.initial_state(3), reset)
    opt = torch.optim.Adam(policy.parameters(), lr=0.1)
    policy.evaluate(obs[:, None], policy.initial_state(3), reset[:, None], torch.zeros(3, 1, 2))[
        0
    ].sum().backward()
    opt.step()
    clone = snapshot(policy, params_of(policy))
    with torch.no_grad():
        a = policy.act(obs, policy.initial_state(3), reset, deterministic=True)[0]
        b = clone.act(obs, policy.initial_state(3), reset, deterministic=True)[0]
    torch.testing.assert_close(a, b)


def test_linear_baseline_recovers_a_return_in_its_features(setup):
    """rllab's linear feature baseline fits any return that is linear in [obs, obs^2, t, t^2, t^3, 1] exactly,
    and is 0 on padded steps."""
    from ssm_metarl.meta.maml import linear_baseline

    _, _, support, _ = setup
    obs = support.rollout.obs.double()  # (T, B, D)
    T = obs.shape[0]
    t = (torch.arange(T, dtype=torch.float64) / 100.0).view(T, 1)
    ret = 2.0 * obs[..., 0] - 0.5 * obs[..., 1].square() + 3.0 * t**2 - 1.0  # (T, B)
    fit = linear_baseline(support, ret, reg=1e-10)
    valid = support.valid.double()
    torch.testing.assert_close(fit, ret * valid, rtol=1e-5, atol=1e-5)


def test_linear_baseline_maml_step_lowers_loss_and_reaches_meta_parameters(setup):
    cfg, policy, support, query = setup
    params = params_of(policy)
    before = inner_loss(policy, params, support, cfg.gamma, "linear")
    after = inner_loss(
        policy, inner_update(params, before, 0.01, first_order=True), support, cfg.gamma, "linear"
    )
    assert after.item() < before.item()
    policy.zero_grad()
    lin = MAMLConfig(model=cfg.model, inner=AdaptConfig(episodes=6, baseline="linear"))
    adapted = adapt(policy, params_of(policy), [support], 0.1, cfg.gamma, False, baseline="linear")
    outer_loss(policy, adapted, query, lin)[0].backward()
    assert policy.actor.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="baseline"):
        AdaptConfig(baseline="mean")


def _with_step_sizes(cfg: MAMLConfig, policy):
    """A copy of ``policy`` with learned step sizes (same weights), and the config that builds it."""
    cfg = cfg.replace(model=cfg.model.replace(learned_step_sizes=True))
    new = build_meta_policy(cfg, get_family("navigation-2d")).double()
    missing = new.load_state_dict(policy.state_dict(), strict=False).missing_keys
    assert missing == ["inner_log_lr"]
    return cfg, new


def test_learned_step_sizes_scale_each_tensor_and_are_meta_trained(setup):
    """Meta-SGD per tensor: factor 1 reproduces the plain step exactly; a factor scales its tensor's step
    only; the step sizes are never adapted, and both orders' meta-gradients reach them."""
    from ssm_metarl.meta.functional import STEP_SIZES, step_sizes

    cfg, policy, support, query = setup
    _, learned = _with_step_sizes(cfg, policy)
    plain, params = params_of(policy), params_of(learned)
    names = sorted(k for k in params if k != STEP_SIZES)
    assert params[STEP_SIZES].shape == (len(names),) and sorted(step_sizes(params)) == names
    a = adapt(policy, plain, [support], 0.1, cfg.gamma, first_order=True)
    b = adapt(learned, params, [support], 0.1, cfg.gamma, first_order=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert b[STEP_SIZES] is params[STEP_SIZES]  # never adapted

    i = names.index("actor.bias")
    with torch.no_grad():
        learned.inner_log_lr[i] = torch.log(torch.tensor(3.0))
    c = adapt(learned, params_of(learned), [support], 0.1, cfg.gamma, first_order=True)
    for k in a:
        if k == "actor.bias":
            torch.testing.assert_close(c[k] - plain[k], 3.0 * (a[k] - plain[k]))
        else:
            torch.testing.assert_close(c[k], a[k])

    for fo in (True, False):
        learned.zero_grad()
        adapted = adapt(learned, params_of(learned), [support], 0.1, cfg.gamma, first_order=fo)
        outer_loss(learned, adapted, query, cfg)[0].backward()
        grad = learned.inner_log_lr.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        assert grad[names.index("critic.weight")] == 0  # the inner loss never reaches the critic


def test_learned_step_sizes_round_trip_and_train(tmp_path):
    """A MAML run with learned step sizes moves them with their own step size, in their own clip group, and
    a checkpoint rebuilds them; test-time adaptation uses them."""
    from ssm_metarl.adapt import StandardAdapter
    from ssm_metarl.checkpoint import load_policy, save_policy
    from ssm_metarl.config import RunConfig
    from ssm_metarl.meta.maml import clip_grad_norm_per_head, meta_optimizer, train_maml

    cfg = MAMLConfig(
        model=ModelConfig(kind="ssm", hidden_dim=8, state_dim=8, learned_step_sizes=True),
        inner=AdaptConfig(episodes=2, lr=0.1),
        meta_iterations=2,
        meta_batch_size=2,
        run=RunConfig(progress=False, out_dir=str(tmp_path / "run")),
    )
    result = train_maml(cfg)
    log_lr = result.policy.inner_log_lr.detach()
    assert log_lr.abs().max() > 0  # trained
    groups = meta_optimizer(result.policy, cfg).param_groups
    assert [g["lr"] for g in groups] == [cfg.outer_lr, cfg.step_size_lr]
    assert groups[1]["params"] == [result.policy.inner_log_lr]
    result.policy.zero_grad()
    result.policy.inner_log_lr.grad = torch.ones_like(log_lr)
    assert set(clip_grad_norm_per_head(result.policy, 1.0)) == {"step_size_grad_norm"}

    save_policy(tmp_path / "ckpt", result.policy)
    loaded = load_policy(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.inner_log_lr.detach(), log_lr)
    dist = get_family("navigation-2d")
    runs = [
        StandardAdapter(p, cfg.inner.replace(steps=1)).adapt(dist.test[0], seed=3)
        for p in (result.policy, loaded)
    ]
    torch.testing.assert_close(runs[0].params["actor.bias"], runs[1].params["actor.bias"])
    with torch.no_grad():
        loaded.inner_log_lr.zero_()
    other = StandardAdapter(loaded, cfg.inner.replace(steps=1)).adapt(dist.test[0], seed=3)
    assert not torch.equal(other.params["actor.bias"], runs[0].params["actor.bias"])


def test_a_wrong_number_of_step_sizes_fails_loudly(setup):
    from ssm_metarl.meta.functional import STEP_SIZES, step_sizes

    cfg, policy, _, _ = setup
    params = {**params_of(policy), STEP_SIZES: torch.zeros(2)}
    with pytest.raises(ValueError, match="other parameter tensors"):
        step_sizes(params)
