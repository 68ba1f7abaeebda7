"""Parameters as dicts: call any module's method with substituted (e.g. adapted) parameters.

MAML (Finn et al. 2017) needs the loss of a policy under *adapted* parameters
``theta' = theta - alpha * grad L_support(theta)`` as a differentiable function of ``theta``. We never copy
or patch modules: :func:`call` runs a method of the module through ``torch.func.functional_call`` with a
``{name: tensor}`` dict standing in for its parameters (buffers such as observation statistics are the
module's own), and :func:`inner_update` takes one gradient step on such a dict, keeping the graph
(second order) or cutting it (first order).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]
M = TypeVar("M", bound=nn.Module)


class _MethodCall(nn.Module):
    """Routes ``forward(method, *args)`` to ``inner.method(*args)`` so functional_call can reach any method."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, method)(*args, **kwargs)


def params_of(module: nn.Module) -> Params:
    """The module's own parameters as a dict (the meta-parameters, graph-connected)."""
    return dict(module.named_parameters())


def call(module: nn.Module, params: Params, method: str, *args: Any, **kwargs: Any) -> Any:
    """``module.method(*args, **kwargs)`` computed with ``params`` in place of the module's parameters."""
    wrapper = _MethodCall(module)
    named = {f"inner.{k}": v for k, v in params.items()}
    return functional_call(wrapper, named, (method, *args), kwargs, strict=False)


HEADS = ("actor.", "critic.", "log_std")
"""Name prefixes of an ActorCritic's heads: what ``AdaptConfig.params = "heads"`` adapts."""
STEP_SIZES = "inner_log_lr"
"""The parameter holding a policy's learned inner step sizes (``ModelConfig.learned_step_sizes``)."""


def adapted_names(params: Params, which: str = "all") -> list[str]:
    """The names an adaptation step changes (``AdaptConfig.params``): every parameter that requires grad,
    or only the heads'; never the learned step sizes themselves."""
    if which not in ("all", "heads"):
        raise ValueError(f"AdaptConfig.params must be 'all' or 'heads', got {which!r}")
    names = [k for k, p in params.items() if p.requires_grad and k != STEP_SIZES]
    return names if which == "all" else [k for k in names if k.startswith(HEADS)]


def step_sizes(params: Params) -> dict[str, Tensor]:
    """The learned step-size factor of each parameter tensor (``exp`` of its entry of :data:`STEP_SIZES`,
    entries in sorted-name order), graph-connected so the outer loss trains them; {} for a policy without."""
    if STEP_SIZES not in params:
        return {}
    log_lr = params[STEP_SIZES]
    names = sorted(k for k in params if k != STEP_SIZES)
    if log_lr.shape != (len(names),):
        raise ValueError(
            f"{STEP_SIZES} has shape {tuple(log_lr.shape)} but the policy has {len(names)} other parameter tensors"
        )
    factors = log_lr.exp()
    return {k: factors[i] for i, k in enumerate(names)}


def inner_update(
    params: Params, loss: Tensor, lr: float, first_order: bool = False, which: str = "all"
) -> Params:
    """One SGD step on ``params``: ``p - lr * dloss/dp`` for the parameters ``which`` names
    (:func:`adapted_names`), times each one's learned factor where the policy has them (:func:`step_sizes`);
    the others are returned unchanged.

    Second order (``first_order=False``) keeps the graph of the gradient so the meta-gradient flows
    through it (Hessian-vector products); first order treats the gradient as a constant (FOMAML).
    Parameters the loss does not reach are returned unchanged.
    """
    if lr <= 0:
        raise ValueError(f"inner learning rate must be > 0, got {lr}")
    names = adapted_names(params, which)
    grads = torch.autograd.grad(
        loss, [params[k] for k in names], create_graph=not first_order, allow_unused=True
    )
    factors = step_sizes(params)
    new = dict(params)
    for k, g in zip(names, grads):
        if g is not None:
            step = lr * (g.detach() if first_order else g)
            new[k] = params[k] - (step * factors[k] if factors else step)
    return new


def snapshot(module: M, params: Params) -> M:
    """A detached copy of ``module`` holding ``params`` (for acting: no graph, plain method calls).

    Parameters and buffers are copied from their data only (never their ``.grad`` or autograd history, which
    after an optimiser step can be views that ``deepcopy`` refuses to touch).
    """
    memo: dict[int, Any] = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = params.get(name, p)
            memo[id(p)] = nn.Parameter(value.detach().clone(), requires_grad=p.requires_grad)
        for b in module.buffers():
            memo[id(b)] = b.detach().clone()
    return copy.deepcopy(module, memo)
