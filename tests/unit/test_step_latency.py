"""benchmarks/step_latency.py times what it names: per backbone a native step and a torch-ops step that compute
the same thing, and the two reference cells."""

from __future__ import annotations

import torch
from test_benchmark_merge import load_script

bench = load_script("step_latency")


def test_every_backbone_has_a_native_and_a_torch_ops_step_that_agree():
    with torch.inference_mode():
        fns = bench.methods(3)
        assert set(fns) == {f"{b} | {p}" for b in bench.BACKBONES for p in ("native", "torch ops")} | {
            "nn.LSTMCell | torch ops",
            "nn.GRUCell | torch ops",
        }
        for label in bench.BACKBONES:
            (y_native, s_native), (y_torch, s_torch) = (
                fns[f"{label} | native"](),
                fns[f"{label} | torch ops"](),
            )
            torch.testing.assert_close(y_native, y_torch, rtol=1e-5, atol=1e-5)
            for a, b in zip(s_native, s_torch):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
