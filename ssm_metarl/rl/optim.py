"""The optimiser every trainer uses: Adam with the multi-tensor (``foreach``) implementation.

Measured on this 2-core CPU for a 35k-parameter CartPole policy (30 tensors): one Adam step took 2.8 ms
with the single-tensor default, 1.8 ms with ``foreach=True`` and 0.5 ms with ``fused=True``. We do not use
the fused kernel: on CPU it updates parameters without bumping their autograd version counters (checked
with torch 2.13), which is how cached acting weights (``SSM.step``) know the parameters changed. The
rollout loop also clears those caches at each segment start, so a user's own fused optimiser is safe.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def make_adam(params: Iterable[torch.nn.Parameter], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with ``foreach=True``."""
    return torch.optim.Adam(list(params), lr=lr, eps=eps, foreach=True)
