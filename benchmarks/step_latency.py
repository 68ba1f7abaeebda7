"""The ssm backbones' acting step: one native call for the whole backbone against the same step in torch ops.

    python benchmarks/step_latency.py                       # -> results/step_latency.{json,md}
    python benchmarks/step_latency.py --batches 1 8 --reps 5 --name step_latency_smoke

For each backbone (``SSM`` real and complex, ``GatedSSM``; one and two layers; width 64, state 64, 8 inputs)
and batch size B, ``model.step`` under inference mode as rollouts act, twice: with the native step
(``lru_step_*`` / ``gated_step_*`` in ``ssm_metarl/models/_scan.c``) and with it switched off on that model
(``native_step_max_batch = 0``: the torch operations; the native one is forced at every B). ``nn.LSTMCell`` and ``nn.GRUCell`` of the same width
are the reference. Microseconds of this thread's CPU per call (median over ``--reps`` rounds, every method
interleaved round-robin within a batch size so that machine noise hits all alike).

The native step wins where per-operation overhead dominates (small B); torch's matmuls win where arithmetic
does. The headline gives, per backbone, the native / torch ratio at each B and the largest B at which the
native step is still faster: ``NATIVE_STEP_MAX_BATCH`` of ``ssm_metarl.models.ssm`` and ``.gated_ssm`` read it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import interleaved_timings, markdown_table, provenance, start_run, write_results
from torch import nn

from ssm_metarl.models.gated_ssm import GatedSSM
from ssm_metarl.models.ssm import SSM

D, H, N = 8, 64, 64
BACKBONES: dict[str, Callable[[], Any]] = {
    "ssm real, 1 layer": lambda: SSM(D, H, N, num_layers=1),
    "ssm real, 2 layers": lambda: SSM(D, H, N, num_layers=2),
    "ssm complex, 1 layer": lambda: SSM(D, H, N, num_layers=1, complex=True),
    "ssm complex, 2 layers": lambda: SSM(D, H, N, num_layers=2, complex=True),
    "gated ssm, 1 layer": lambda: GatedSSM(D, H, N, num_layers=1),
    "gated ssm, 2 layers": lambda: GatedSSM(D, H, N, num_layers=2, a_min=0.1),
}


def methods(B: int) -> dict[str, Callable[[], Any]]:
    """Every timed call at batch size B: each backbone native and in torch ops, and the two cells."""
    torch.manual_seed(0)
    x, reset = torch.randn(B, D), torch.zeros(B, dtype=torch.bool)
    fns: dict[str, Callable[[], Any]] = {}
    for label, build in BACKBONES.items():
        native_model, torch_model = build(), build()
        torch_model.load_state_dict(native_model.state_dict())
        native_model.native_step_max_batch = 1 << 30  # always native, whatever the models' default
        torch_model.native_step_max_batch = 0
        for path, model in (("native", native_model), ("torch ops", torch_model)):
            state = model.initial_state(B)
            fns[f"{label} | {path}"] = lambda m=model, s=state: m.step(x, s, reset)
    lstm, gru = nn.LSTMCell(D, H), nn.GRUCell(D, H)
    hc, h = (torch.zeros(B, H), torch.zeros(B, H)), torch.zeros(B, H)
    fns["nn.LSTMCell | torch ops"] = lambda: lstm(x, hc)
    fns["nn.GRUCell | torch ops"] = lambda: gru(x, h)
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32, 64, 128])
    parser.add_argument("--reps", type=int, default=15, help="interleaved rounds per batch size (median)")
    parser.add_argument("--calls", type=int, default=200, help="calls per round")
    parser.add_argument("--name", default="step_latency")
    args = start_run(parser)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for B in args.batches:
        with torch.inference_mode():
            _, cpu = interleaved_timings(methods(B), reps=args.reps, warmup=20, inner=args.calls)
        for name, seconds in cpu.items():
            backbone, path = name.split(" | ")
            rows.append(
                {"backbone": backbone, "path": path, "batch": B, "us": statistics.median(seconds) * 1e6}
            )
        print(f"B={B} done", flush=True)
    us = {(r["backbone"], r["path"], r["batch"]): r["us"] for r in rows}
    headline: dict[str, Any] = {}
    for label in BACKBONES:
        ratios = {B: us[(label, "native", B)] / us[(label, "torch ops", B)] for B in args.batches}
        key = label.replace(", ", "_").replace(" ", "_")
        headline[f"{key}_native_over_torch"] = ratios
        faster = [B for B in args.batches if ratios[B] < 1.0]
        headline[f"{key}_native_faster_up_to_batch"] = max(faster) if faster else 0
    minutes = (time.perf_counter() - t0) / 60
    table = [
        [
            label,
            *(
                f"{us[(label, 'native', B)]:.0f} / {us[(label, 'torch ops', B)]:.0f} "
                f"({us[(label, 'native', B)] / us[(label, 'torch ops', B)]:.2f})"
                for B in args.batches
            ),
        ]
        for label in BACKBONES
    ]
    table += [
        [cell, *(f"{us[(cell, 'torch ops', B)]:.0f}" for B in args.batches)]
        for cell in ("nn.LSTMCell", "nn.GRUCell")
    ]
    md = (
        "## The acting step: native / torch ops\n\n"
        f"µs of CPU per `step` call under inference mode (median of {args.reps} interleaved rounds of "
        f"{args.calls} calls), width {H}, state {N}, {D} inputs, one torch thread: native / torch ops (ratio; "
        "below 1 the native step is faster). The cells are bare `nn.LSTMCell` / `nn.GRUCell` steps of the same "
        "width, for scale.\n\n"
        + markdown_table(["backbone", *(f"B = {B}" for B in args.batches)], table)
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{provenance()['command']}`; {minutes:.1f} minutes.\n"
    )
    payload = {"headline": headline, **provenance(), "args": vars(args), "minutes": minutes, "rows": rows}
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
