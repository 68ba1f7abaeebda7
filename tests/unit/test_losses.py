"""PPO and policy-gradient losses: values at ratio 1, clipping gradients, KL estimator, shape checks."""

from __future__ import annotations

import math

import pytest
import torch

from ssm_metarl.rl.losses import explained_variance, normalize_advantage, pg_loss, ppo_loss


def _inputs(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    log_prob = torch.randn(n, generator=g, dtype=torch.float64)
    value = torch.randn(n, generator=g, dtype=torch.float64)
    return dict(
        new_log_prob=log_prob.clone().requires_grad_(True),
        old_log_prob=log_prob.clone(),
        advantage=torch.randn(n, generator=g, dtype=torch.float64) * 3 + 1,
        new_value=value.clone().requires_grad_(True),
        old_value=value.clone(),
        ret=torch.randn(n, generator=g, dtype=torch.float64),
        entropy=torch.rand(n, generator=g, dtype=torch.float64),
    )


COEFS = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)


@pytest.mark.parametrize("norm_adv", [True, False])
def test_ppo_loss_at_ratio_one(norm_adv: bool) -> None:
    x = _inputs()
    loss, stats = ppo_loss(**x, **COEFS, norm_adv=norm_adv)
    adv = x["advantage"]
    if norm_adv:
        adv = (adv - adv.mean()) / adv.std(correction=0)
    value_loss = 0.5 * ((x["new_value"] - x["ret"]) ** 2).mean()
    expected = -adv.mean() + 0.5 * value_loss - 0.01 * x["entropy"].mean()
    torch.testing.assert_close(loss, expected)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-12)
    assert stats["old_approx_kl"] == pytest.approx(0.0, abs=1e-12)
    assert stats["clipfrac"] == 0.0
    assert stats["policy_loss"] == pytest.approx(-adv.mean().item())
    assert stats["value_loss"] == pytest.approx(value_loss.item())
    assert all(isinstance(v, float) for v in stats.values())
    # at ratio 1 the policy gradient is -A / n for every step
    (grad,) = torch.autograd.grad(loss, x["new_log_prob"])
    torch.testing.assert_close(grad, -adv / len(adv))


def _policy_grad(ratio: float, advantage: float) -> float:
    new_log_prob = torch.tensor([math.log(ratio)], dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(1, dtype=torch.float64)
    loss, _ = ppo_loss(
        new_log_prob,
        zeros,
        torch.tensor([advantage], dtype=torch.float64),
        zeros,
        zeros,
        zeros,
        None,
        clip_coef=0.2,
        vf_coef=0.0,
        ent_coef=0.0,
        norm_adv=False,
    )
    (grad,) = torch.autograd.grad(loss, new_log_prob)
    return grad.item()


@pytest.mark.parametrize(
    ("ratio", "advantage", "clipped"),
    [
        (1.5, 1.0, True),  # A > 0, ratio above 1 + eps: no incentive to push further
        (0.5, -1.0, True),  # A < 0, ratio below 1 - eps: no incentive to push further
        (0.5, 1.0, False),  # A > 0, ratio below 1 - eps: the pessimistic bound keeps the gradient
        (1.5, -1.0, False),  # A < 0, ratio above 1 + eps: likewise
        (1.1, 1.0, False),  # inside the clip range
    ],
)
def test_ppo_clipping_zeroes_gradient_only_in_the_clipped_direction(
    ratio: float, advantage: float, clipped: bool
) -> None:
    grad = _policy_grad(ratio, advantage)
    if clipped:
        assert grad == 0.0
    else:
        # d/dlogp of -A * exp(logp) = -A * ratio
        assert grad == pytest.approx(-advantage * ratio)


def test_approx_kl_and_clipfrac_away_from_ratio_one() -> None:
    x = _inputs(n=4)
    log_ratio = torch.tensor([0.1, -0.1, 0.3, 0.0], dtype=torch.float64)
    x["new_log_prob"] = (x["old_log_prob"] + log_ratio).requires_grad_(True)
    _, stats = ppo_loss(**x, **COEFS)
    r = log_ratio.exp()
    assert stats["approx_kl"] == pytest.approx(((r - 1) - log_ratio).mean().item())
    assert stats["approx_kl"] > 0.0
    assert stats["old_approx_kl"] == pytest.approx(-log_ratio.mean().item())
    assert stats["clipfrac"] == pytest.approx(0.25)  # only exp(0.3) = 1.35 is beyond 1 + 0.2


def test_value_clipping_takes_the_pessimistic_loss() -> None:
    x = _inputs(n=1)
    x["old_value"] = torch.tensor([0.0], dtype=torch.float64)
    x["new_value"] = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    x["ret"] = torch.tensor([2.0], dtype=torch.float64)
    _, clipped = ppo_loss(**x, **COEFS, clip_vloss=True)
    _, unclipped = ppo_loss(**x, **COEFS, clip_vloss=False)
    assert unclipped["value_loss"] == pytest.approx(0.5 * 1.0**2)  # (1 - 2)^2 / 2
    assert clipped["value_loss"] == pytest.approx(0.5 * 1.8**2)  # clipped to 0.2: (0.2 - 2)^2 / 2


@pytest.mark.parametrize("bad", ["new_value", "ret", "advantage", "old_log_prob"])
def test_ppo_loss_rejects_column_vector_against_vector(bad: str) -> None:
    x = _inputs()
    x[bad] = x[bad].detach().unsqueeze(-1)  # (B, 1) against (B,): would broadcast to (B, B)
    with pytest.raises(ValueError, match=r"\(8, 1\).*squeeze|squeeze.*\(8, 1\)"):
        ppo_loss(**x, **COEFS)


def test_masked_steps_do_not_change_the_loss() -> None:
    x = _inputs()
    mask = torch.tensor([True] * 6 + [False] * 2)
    loss, stats = ppo_loss(**x, **COEFS, mask=mask)
    y = {k: v.detach().clone() for k, v in x.items()}
    for k in y:
        y[k][~mask] = 1e6 if k != "new_log_prob" else 5.0
    loss_y, stats_y = ppo_loss(**y, **COEFS, mask=mask)
    torch.testing.assert_close(loss.detach(), loss_y)
    assert stats == pytest.approx(stats_y)
    sub = {k: v.detach()[mask] for k, v in x.items()}
    loss_sub, _ = ppo_loss(**sub, **COEFS)
    torch.testing.assert_close(loss.detach(), loss_sub)
    with pytest.raises(ValueError, match="bool"):
        ppo_loss(**x, **COEFS, mask=mask.float())


def test_pg_loss_is_reinforce_with_baseline() -> None:
    x = _inputs()
    log_prob, adv, ent = x["new_log_prob"], x["advantage"], x["entropy"]
    value, ret = x["new_value"], x["ret"]
    loss, stats = pg_loss(log_prob, adv, ent, ent_coef=0.01, value=value, ret=ret, vf_coef=0.5)
    value_loss = 0.5 * ((value - ret) ** 2).mean()
    expected = -(log_prob * adv).mean() - 0.01 * ent.mean() + 0.5 * value_loss
    torch.testing.assert_close(loss, expected)
    assert stats["value_loss"] == pytest.approx(value_loss.item())
    (grad,) = torch.autograd.grad(loss, log_prob)
    torch.testing.assert_close(grad, -adv / len(adv))

    loss_nov, stats_nov = pg_loss(log_prob, adv, None, ent_coef=0.01)
    torch.testing.assert_close(loss_nov, -(log_prob * adv).mean())
    assert "value_loss" not in stats_nov


def test_pg_loss_is_twice_differentiable() -> None:
    """MAML's second-order meta-gradient differentiates through the inner loss's gradient."""
    w = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    feats = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    log_prob = torch.nn.functional.logsigmoid(feats @ w)
    loss, _ = pg_loss(log_prob, torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64), None, 0.0)
    (g,) = torch.autograd.grad(loss, w, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), w)
    assert torch.all(torch.isfinite(h)) and h.abs().sum() > 0


def test_pg_loss_shape_and_argument_errors() -> None:
    x = _inputs()
    with pytest.raises(ValueError, match=r"\(8, 1\)"):
        pg_loss(x["new_log_prob"], x["advantage"].unsqueeze(-1), None, 0.0)
    with pytest.raises(ValueError, match=r"\(8, 1\)"):
        pg_loss(x["new_log_prob"], x["advantage"], None, 0.0, value=x["new_value"][:, None], ret=x["ret"])
    with pytest.raises(ValueError, match="both"):
        pg_loss(x["new_log_prob"], x["advantage"], None, 0.0, value=x["new_value"])


def test_normalize_advantage_and_explained_variance() -> None:
    adv = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, True, False])
    norm = normalize_advantage(adv, mask)
    assert norm[mask].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert norm[mask].std(correction=0).item() == pytest.approx(1.0, rel=1e-6)
    assert normalize_advantage(torch.tensor([5.0])).item() == 0.0  # one element: 0, not NaN

    ret = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(ret, ret) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(ret, ret.mean().item()), ret) == pytest.approx(0.0)
    assert math.isnan(explained_variance(ret, torch.ones(4)))
