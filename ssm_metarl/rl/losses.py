"""Pure policy-gradient losses: tensors in, ``(loss, stats)`` out; no optimiser and no logging inside.

Every per-step input of a loss must have **one and the same shape** (usually (T, B) or a flat (M,)):
a value head's (B, 1) output against (B,) advantages would otherwise broadcast silently into (B, B)
and train on garbage without any error, so a mismatch raises ``ValueError`` naming both shapes.

``mask`` (same shape, bool) marks real steps when sequences are padded; every mean, the advantage
normalisation and the statistics are taken over the masked-in steps only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_same_shape(fn: str, **tensors: Tensor | None) -> torch.Size:
    given = {name: x for name, x in tensors.items() if x is not None}
    ref_name, ref = next(iter(given.items()))
    for name, x in given.items():
        if x.shape != ref.shape:
            raise ValueError(
                f"{fn}: every input must have the same shape, but {name} has shape {tuple(x.shape)} and "
                f"{ref_name} has shape {tuple(ref.shape)}; (B,) against (B, 1) would silently broadcast to "
                "(B, B). Squeeze the value head's last dim (value.squeeze(-1)) or sum log-probs over the "
                "action dims so every input is (T, B) or (B,)."
            )
    mask = tensors.get("mask")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"{fn}: mask must be a bool tensor, got dtype {mask.dtype}")
        if not bool(mask.any()):
            raise ValueError(f"{fn}: mask selects no step; there is nothing to learn from")
    return ref.shape


def _mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` over all elements, or over those where ``mask`` is True."""
    return x.mean() if mask is None else x[mask].mean()


def normalize_advantage(advantage: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``(A - mean) / (std + eps)`` over the (masked-in) elements, detached; shape unchanged.

    Uses the population std (no Bessel correction), so a single element gives 0, not NaN.
    """
    adv = advantage.detach()
    sel = adv if mask is None else adv[mask]
    return (adv - sel.mean()) / (sel.std(correction=0) + eps)


def ppo_loss(
    new_log_prob: Tensor,
    old_log_prob: Tensor,
    advantage: Tensor,
    new_value: Tensor,
    old_value: Tensor,
    ret: Tensor,
    entropy: Tensor | None,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_vloss: bool = True,
    norm_adv: bool = True,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip loss (Schulman et al. 2017, eq. 7 and 9), as in CleanRL's ``ppo.py``.

    ``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss`` with

    * ``policy_loss = mean(max(-A * r, -A * clip(r, 1 - clip_coef, 1 + clip_coef)))``,
      ``r = exp(new_log_prob - old_log_prob)``;
    * ``value_loss = 0.5 * mean((V - ret)^2)``, or with ``clip_vloss`` the pessimistic
      ``0.5 * mean(max((V - ret)^2, (V_old + clip(V - V_old, -clip_coef, clip_coef) - ret)^2))``.

    Args:
        new_log_prob: log-prob of the stored actions under the policy being trained (grad flows).
        old_log_prob, old_value: from the acting policy (treated as constants).
        advantage, ret: estimates, e.g. from :func:`ssm_metarl.rl.gae.gae` (treated as constants).
        new_value: critic output for the same steps (grad flows).
        entropy: per-step policy entropy (grad flows), or None for no entropy bonus.
        clip_coef: clip range for the ratio and, with ``clip_vloss``, the value change.
        vf_coef, ent_coef: weights of the value loss and the entropy bonus.
        norm_adv: normalise advantages to zero mean, unit std over this (mini)batch.
        mask: bool, True on real steps.

    All per-step tensors share one shape. Returns the scalar loss and python-float stats:
    ``loss, policy_loss, value_loss, entropy, approx_kl`` (``mean((r - 1) - log r)``, Schulman's
    low-variance unbiased estimator of KL(old || new)), ``old_approx_kl`` (``mean(-log r)``) and
    ``clipfrac`` (fraction of steps with ``|r - 1| > clip_coef``).
    """
    _check_same_shape(
        "ppo_loss",
        new_log_prob=new_log_prob,
        old_log_prob=old_log_prob,
        advantage=advantage,
        new_value=new_value,
        old_value=old_value,
        ret=ret,
        entropy=entropy,
        mask=mask,
    )
    old_log_prob, old_value, ret = old_log_prob.detach(), old_value.detach(), ret.detach()
    adv = normalize_advantage(advantage, mask) if norm_adv else advantage.detach()

    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    policy_loss = _mean(torch.max(-adv * ratio, -adv * clipped_ratio), mask)

    v_loss_unclipped = (new_value - ret) ** 2
    if clip_vloss:
        v_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        v_loss = torch.max(v_loss_unclipped, (v_clipped - ret) ** 2)
    else:
        v_loss = v_loss_unclipped
    value_loss = 0.5 * _mean(v_loss, mask)

    entropy_mean = _mean(entropy, mask) if entropy is not None else new_value.new_zeros(())
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss

    with torch.no_grad():
        stats = {
            "loss": loss.item(),
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "entropy": entropy_mean.item(),
            "approx_kl": _mean((ratio - 1.0) - log_ratio, mask).item(),
            "old_approx_kl": _mean(-log_ratio, mask).item(),
            "clipfrac": _mean(((ratio - 1.0).abs() > clip_coef).float(), mask).item(),
        }
    return loss, stats


def pg_loss(
    log_prob: Tensor,
    advantage: Tensor,
    entropy: Tensor | None,
    ent_coef: float,
    value: Tensor | None = None,
    ret: Tensor | None = None,
    vf_coef: float = 0.5,
    mask: Tensor | None = None,
    norm_adv: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE with a baseline (Williams 1992): ``-mean(log_prob * A) - ent_coef * entropy``.

    ``advantage`` is the return minus a baseline (or the return itself), treated as a constant; the
    loss stays differentiable in ``log_prob`` to any order (MAML inner steps differentiate through it).
    With ``value`` and ``ret`` given, ``vf_coef * 0.5 * mean((value - ret)^2)`` trains the baseline too.

    Args:
        log_prob: log-prob of the taken actions (grad flows). advantage: same shape.
        entropy: per-step entropy or None. value, ret: both or neither.
        mask: bool, True on real steps. norm_adv: normalise advantages over the (masked-in) steps.

    Returns the scalar loss and python-float stats ``loss, policy_loss, entropy`` and, with a value,
    ``value_loss``.
    """
    if (value is None) != (ret is None):
        raise ValueError("pg_loss: pass both value and ret to train a baseline, or neither")
    _check_same_shape(
        "pg_loss", log_prob=log_prob, advantage=advantage, entropy=entropy, value=value, ret=ret, mask=mask
    )
    adv = normalize_advantage(advantage, mask) if norm_adv else advantage.detach()
    policy_loss = -_mean(log_prob * adv, mask)
    entropy_mean = _mean(entropy, mask) if entropy is not None else log_prob.new_zeros(())
    loss = policy_loss - ent_coef * entropy_mean
    stats: dict[str, float] = {}
    if value is not None and ret is not None:
        value_loss = 0.5 * _mean((value - ret.detach()) ** 2, mask)
        loss = loss + vf_coef * value_loss
        stats["value_loss"] = value_loss.item()
    stats.update(loss=loss.item(), policy_loss=policy_loss.item(), entropy=entropy_mean.item())
    return loss, stats


def explained_variance(value: Tensor, ret: Tensor, mask: Tensor | None = None) -> float:
    """``1 - Var(ret - value) / Var(ret)`` over the (masked-in) steps; NaN when ``ret`` is constant.

    1 is a perfect critic, 0 no better than a constant, negative worse.
    """
    _check_same_shape("explained_variance", value=value, ret=ret, mask=mask)
    with torch.no_grad():
        v, r = (value, ret) if mask is None else (value[mask], ret[mask])
        var_ret = r.var(correction=0)
        if var_ret.item() == 0.0:
            return float("nan")
        return (1.0 - (r - v).var(correction=0) / var_ret).item()
