"""How fast is the structured SSM on a CPU? Scan, acting step and whole layer against the baselines.

    python benchmarks/scan_speed.py            # full run -> results/scan_speed.json and .md
    python benchmarks/scan_speed.py --quick    # < 60 s subset -> results/scan_speed_quick.json and .md
    python benchmarks/scan_speed.py --quick --name _try   # the same, written to results/_try.json and .md

All timings use one thread, interleave the methods round-robin (so that machine noise hits all alike) and
report medians of wall-clock time and of this thread's CPU time (the better estimate on a shared machine).
Sections:

1. scan: forward + backward of the reset-aware recurrence h_t = lambda (1 - reset_t) h_{t-1} + b_t,
   lambda (N,) and b (B, T, N) requiring grad, 1% random resets, at the headline shape, a PPO minibatch's
   shape (``PPO_SHAPE``) and a grid. ``linear_scan`` (auto kernel, and each kernel forced: the Python
   ``loop`` and ``chunked`` kernels, and ``native``, the C kernel, where it builds) against the step-by-step autograd loop of the same recurrence (``linear_scan_reference``,
   stepping with ``unbind``; and, where affordable, the common ``b[:, t]``-indexing loop whose backward is
   O(T^2)), ``nn.GRU`` with hidden size N (one fused call; cannot reset mid-sequence) and an
   ``nn.GRUCell`` loop with resets.
2. step: acting latency of ``SSM.step`` under ``torch.no_grad`` against an ``nn.GRUCell`` and a
   GRUCell inside a tiny module of comparable work (Linear encoder -> GRUCell -> LayerNorm).
3. layer: forward + backward at T=1024, B=8, width 64 of one SSM block (``SSM(num_layers=1)``: encoder,
   norm, LRU, SiLU, GLU, norm; with resets) against one ``nn.GRU`` and one ``nn.LSTM`` layer.
4. crossover (full run only): forward + backward of each scan kernel over widths B*N, which sets the
   ``kernel="auto"`` rule in ssm_metarl/models/scan.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

try:
    from benchmarks._common import (
        command_line,
        git_commit,
        interleaved_timings,
        machine_info,
        markdown_table,
        now_iso,
        start_run,
        summarize,
        write_results,
    )
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import (  # type: ignore[no-redef]
        command_line,
        git_commit,
        interleaved_timings,
        machine_info,
        markdown_table,
        now_iso,
        start_run,
        summarize,
        write_results,
    )

from ssm_metarl.models import native
from ssm_metarl.models.scan import linear_scan, linear_scan_reference
from ssm_metarl.models.ssm import SSM

SEED = 0
HEADLINE = {"T": 1024, "B": 8, "N": 64}
PPO_SHAPE = {"T": 64, "B": 4, "N": 64}
"""A minibatch of PPO on CartPole with the recipe's settings: 4 env sequences of 64 steps, state size 64."""
TARGETS = {
    "scan_vs_autograd_loop": ">= 50",
    "scan_vs_grucell_resets": ">= 50",
    "ssm_block_vs_nn_gru": ">= 4",
    "ssm_block_vs_nn_lstm": ">= 1",
    "step_latency_vs_grucell": "<= 1",
}


def backward_of(fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Callable[[], None]:
    """One forward + backward of ``fn``'s output sum; gradients cleared before each run."""

    def run() -> None:
        for p in params:
            p.grad = None
        fn().sum().backward()

    return run


def random_resets(B: int, T: int, gen: torch.Generator, p: float = 0.01) -> torch.Tensor:
    reset = torch.rand(B, T, generator=gen) < p  # (B, T)
    reset[:, 0] = True
    return reset


# ----------------------------------------------------------------------------------------------- scan
# The indexing loop's backward is O(T^2 B N) (every b[:, t] backward writes a zero (B, T, N) tensor);
# it is timed only where that stays affordable (T=1024, B=8, N=64 is 5.4e8).
NAIVE_MAX_WORK = 6e8


def naive_autograd_loop(lam: torch.Tensor, b: torch.Tensor, reset: torch.Tensor) -> torch.Tensor:
    """The same recurrence written the most common way, indexing b[:, t] (the ANCHORS.md baseline)."""
    B, T, N = b.shape
    keep = (~reset).to(b.real.dtype)  # (B, T)
    h, hs = b.new_zeros(B, N), []
    for t in range(T):
        h = lam * (h * keep[:, t, None]) + b[:, t]  # (B, N)
        hs.append(h)
    return torch.stack(hs, 1)  # (B, T, N)


def scan_methods(T: int, B: int, N: int, dtype: torch.dtype, heavy: bool) -> dict[str, Callable[[], None]]:
    gen = torch.Generator().manual_seed(SEED)
    real = torch.float32
    lam = (torch.rand(N, generator=gen, dtype=real) * 0.5 + 0.49).to(dtype).requires_grad_(True)  # (N,)
    b = torch.randn(B, T, N, generator=gen, dtype=real).to(dtype).requires_grad_(True)  # (B, T, N)
    reset = random_resets(B, T, gen)  # (B, T)

    def loss_of(h: torch.Tensor) -> torch.Tensor:
        return h.real if h.is_complex() else h

    fns = {
        f"linear_scan[{k}]": backward_of(
            lambda k=k: loss_of(linear_scan(lam, b, None, reset, kernel=k)), [lam, b]
        )
        for k in ("auto", "loop", "chunked") + (("native",) if native.available() else ())
    }
    if heavy:
        fns["autograd loop"] = backward_of(
            lambda: loss_of(linear_scan_reference(lam, b, None, reset)), [lam, b]
        )
        if T * T * B * N <= NAIVE_MAX_WORK:
            fns["autograd loop, b[:, t] indexing"] = backward_of(
                lambda: loss_of(naive_autograd_loop(lam, b, reset)), [lam, b]
            )
    if dtype.is_complex or not heavy:
        return fns
    x = torch.randn(B, T, N, generator=gen)  # (B, T, N): a GRU's input of the same width
    gru = nn.GRU(N, N, batch_first=True)
    fns["nn.GRU (no resets)"] = backward_of(lambda: gru(x)[0], list(gru.parameters()))
    cell = nn.GRUCell(N, N)
    keep = (~reset).float()[:, :, None]  # (B, T, 1)

    def gru_cell_loop() -> torch.Tensor:
        h, hs = x.new_zeros(B, N), []
        for t in range(T):
            h = cell(x[:, t], h * keep[:, t])  # (B, N)
            hs.append(h)
        return torch.stack(hs, 1)  # (B, T, N)

    fns["GRUCell loop (resets)"] = backward_of(gru_cell_loop, list(cell.parameters()))
    return fns


def timing_row(base: dict[str, Any], wall: list[float], cpu: list[float], unit: str) -> dict[str, Any]:
    """base fields + wall-clock median/p25/p75/min and the CPU-time median, in ms or us."""
    scale = 1e3 if unit == "ms" else 1e6
    w, c = summarize(wall, scale), summarize(cpu, scale)
    stats = {f"{k}_{unit}": w[k] for k in ("median", "p25", "p75", "min")}
    return base | stats | {f"cpu_median_{unit}": c["median"], "reps": w["reps"]}


def bench_scan(grid: list[tuple[int, int, int]], reps: int, heavy_reps: int) -> list[dict[str, Any]]:
    rows = []
    headline_tbn = (HEADLINE["T"], HEADLINE["B"], HEADLINE["N"])
    for T, B, N in grid:
        for dtype in (torch.float32, torch.complex64):
            if dtype.is_complex and headline_tbn != (T, B, N):  # complex: the headline shape only
                continue
            fns = scan_methods(T, B, N, dtype, heavy=True)
            fast = {k: v for k, v in fns.items() if k.startswith("linear_scan")}
            wall, cpu = interleaved_timings(fns, reps=heavy_reps)
            if reps > heavy_reps:  # the fast kernels get extra rounds among themselves
                more_wall, more_cpu = interleaved_timings(fast, reps=reps - heavy_reps, warmup=0)
                for k in fast:
                    wall[k] += more_wall[k]
                    cpu[k] += more_cpu[k]
            base = statistics.median(wall["linear_scan[auto]"])
            for name in fns:
                info = {"section": "scan", "method": name, "T": T, "B": B, "N": N, "dtype": str(dtype)[6:]}
                row = timing_row(info, wall[name], cpu[name], "ms")
                rows.append(row | {"time_over_linear_scan": statistics.median(wall[name]) / base})
            print(
                f"scan T={T} B={B} N={N} {dtype}: "
                + ", ".join(
                    f"{r['method']} {r['median_ms']:.2f} ms"
                    for r in rows
                    if (r["T"], r["B"], r["N"], r["dtype"]) == (T, B, N, str(dtype)[6:])
                ),
                flush=True,
            )
    return rows


# ----------------------------------------------------------------------------------------------- step
class GRUCellModule(nn.Module):
    """A GRUCell with the same surroundings as an SSM step: Linear encoder -> GRUCell -> LayerNorm."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.cell = nn.GRUCell(hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def step(
        self, x: torch.Tensor, h: torch.Tensor, reset: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(self.encoder(x), h.masked_fill(reset[:, None], 0.0))  # (B, H)
        return self.norm(h), h


def bench_step(batches: list[int], reps: int, inner: int, D: int = 8, H: int = 64) -> list[dict[str, Any]]:
    rows = []
    for B in batches:
        torch.manual_seed(SEED)
        x, reset = torch.randn(B, D), torch.zeros(B, dtype=torch.bool)
        cell, module = nn.GRUCell(D, H), GRUCellModule(D, H)
        h = torch.zeros(B, H)
        fns: dict[str, Callable[[], Any]] = {
            "nn.GRUCell": lambda cell=cell, x=x, h=h: cell(x, h),
            "GRUCell module (Linear+GRUCell+LayerNorm)": lambda m=module, x=x, h=h, r=reset: m.step(x, h, r),
        }
        for layers in (1, 2):
            for cplx in (False, True):
                model = SSM(D, H, state_dim=64, num_layers=layers, complex=cplx)
                state = model.initial_state(B)
                name = (
                    f"SSM step ({'complex' if cplx else 'real'}, {layers} layer{'s' if layers > 1 else ''})"
                )
                fns[name] = lambda m=model, x=x, s=state, r=reset: m.step(x, s, r)
        with torch.no_grad():
            wall, cpu = interleaved_timings(fns, reps=reps, warmup=20, inner=inner)
        base = statistics.median(wall["nn.GRUCell"])
        for name in fns:
            info = {
                "section": "step",
                "method": name,
                "B": B,
                "H": H,
                "N": 64,
                "D": D,
                "calls_per_rep": inner,
            }
            row = timing_row(info, wall[name], cpu[name], "us")
            rows.append(row | {"latency_over_grucell": statistics.median(wall[name]) / base})
        print(
            f"step B={B}: "
            + ", ".join(f"{r['method']} {r['median_us']:.1f} us" for r in rows if r["B"] == B),
            flush=True,
        )
    return rows


# ---------------------------------------------------------------------------------------------- layer
def bench_layer(reps: int, T: int = 1024, B: int = 8, H: int = 64) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    x = torch.randn(B, T, H, generator=gen)  # (B, T, H)
    reset = random_resets(B, T, gen)  # (B, T)
    fns = {}
    for cplx in (False, True):
        model = SSM(H, H, state_dim=H, num_layers=1, complex=cplx)
        state = model.initial_state(B)
        name = f"SSM block ({'complex' if cplx else 'real'}, with resets)"
        fns[name] = backward_of(lambda m=model, s=state: m(x, s, reset)[0], list(model.parameters()))
    gru, lstm = nn.GRU(H, H, batch_first=True), nn.LSTM(H, H, batch_first=True)
    fns["nn.GRU (no resets)"] = backward_of(lambda: gru(x)[0], list(gru.parameters()))
    fns["nn.LSTM (no resets)"] = backward_of(lambda: lstm(x)[0], list(lstm.parameters()))
    wall, cpu = interleaved_timings(fns, reps=reps)
    base = statistics.median(wall["SSM block (real, with resets)"])
    rows = []
    for name in fns:
        row = timing_row(
            {"section": "layer", "method": name, "T": T, "B": B, "H": H}, wall[name], cpu[name], "ms"
        )
        rows.append(row | {"time_over_ssm_block": statistics.median(wall[name]) / base})
    print("layer: " + ", ".join(f"{r['method']} {r['median_ms']:.2f} ms" for r in rows), flush=True)
    return rows


# ------------------------------------------------------------------------------------------ crossover
def bench_crossover(reps: int) -> list[dict[str, Any]]:
    rows = []
    for T in (64, 256, 1024):
        for dtype in (torch.float32, torch.complex64):
            for width in (256, 512, 1024, 2048, 4096, 8192, 16384):
                B = 8
                fns = scan_methods(T, B, width // B, dtype, heavy=False)
                fns = {k: v for k, v in fns.items() if k != "linear_scan[auto]"}
                wall, cpu = interleaved_timings(fns, reps=reps)
                loop, chunked = (statistics.median(cpu[f"linear_scan[{k}]"]) for k in ("loop", "chunked"))
                rows.append(
                    {"section": "crossover", "T": T, "B": B, "N": width // B, "width": width}
                    | {"dtype": str(dtype)[6:], "loop_ms": loop * 1e3, "chunked_ms": chunked * 1e3}
                    | {"loop_over_chunked": loop / chunked}
                )
            print(
                f"crossover T={T} {dtype}: "
                + ", ".join(
                    f"{r['width']}: {r['loop_over_chunked']:.2f}"
                    for r in rows
                    if (r["T"], r["dtype"]) == (T, str(dtype)[6:])
                )
            )
    return rows


# ------------------------------------------------------------------------------------------- report
def headline(rows: list[dict[str, Any]], cpu: bool = False) -> dict[str, float]:
    """The target metrics from wall-clock medians (or, with ``cpu``, from CPU-time medians)."""
    prefix = "cpu_median" if cpu else "median"

    def pick(section: str, method: str, **where: Any) -> float:
        for r in rows:
            if (
                r["section"] == section
                and r["method"] == method
                and all(r.get(k) == v for k, v in where.items())
            ):
                return r[f"{prefix}_ms"] if f"{prefix}_ms" in r else r[f"{prefix}_us"]
        raise KeyError(f"no row for {section} {method} {where}")

    cfg = dict(HEADLINE, dtype="float32")
    scan = pick("scan", "linear_scan[auto]", **cfg)
    block = pick("layer", "SSM block (real, with resets)")
    step = pick("step", "SSM step (real, 1 layer)", B=1)
    native_rows = (
        {}
        if not native.available()
        else {
            f"native_kernel_vs_best_python_kernel{suffix}": round(
                min(pick("scan", f"linear_scan[{k}]", **where) for k in ("loop", "chunked"))
                / pick("scan", "linear_scan[native]", **where),
                2,
            )
            for suffix, where in (("", cfg), ("_ppo_shape", dict(PPO_SHAPE, dtype="float32")))
            if any(r["section"] == "scan" and all(r.get(k) == v for k, v in where.items()) for r in rows)
        }
    )
    return native_rows | {
        "scan_vs_autograd_loop": round(pick("scan", "autograd loop", **cfg) / scan, 2),
        "scan_vs_indexing_autograd_loop": round(
            pick("scan", "autograd loop, b[:, t] indexing", **cfg) / scan, 2
        ),
        "scan_vs_grucell_resets": round(pick("scan", "GRUCell loop (resets)", **cfg) / scan, 2),
        "ssm_block_vs_nn_gru": round(pick("layer", "nn.GRU (no resets)") / block, 2),
        "ssm_block_vs_nn_lstm": round(pick("layer", "nn.LSTM (no resets)") / block, 2),
        "step_latency_vs_grucell": round(
            step / pick("step", "GRUCell module (Linear+GRUCell+LayerNorm)", B=1), 2
        ),
        "step_latency_vs_bare_grucell": round(step / pick("step", "nn.GRUCell", B=1), 2),
    }


def to_markdown(payload: dict[str, Any]) -> str:
    rows, head, head_cpu = payload["rows"], payload["headline"], payload["headline_cpu_time"]
    machine = payload["machine"]
    load = (machine.get("load_average_1m_at_start"), machine.get("load_average_1m_at_end"))

    def section(name: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["section"] == name]

    out = [
        f"# Scan speed ({'quick' if payload['config']['quick'] else 'full'} run)",
        "",
        f"`{payload['command']}` at commit `{payload['commit']}`, {payload['date']}; {machine['cpu']}, "
        f"{machine['cores']} cores, 1 torch thread, torch {machine['torch']}; 1-minute load average "
        f"{load[0]} at start, {load[1]} at end (other jobs share the machine: wall-clock numbers are noisy, "
        "CPU-time numbers less so). Medians of round-robin repetitions.",
        "",
        "## Headline (T=1024, B=8, N=64, float32; speed-ups > 1 and latency ratios < 1 favour the SSM)",
        "",
        markdown_table(
            ["metric", "wall clock", "CPU time", "target"],
            [[k, v, head_cpu[k], TARGETS.get(k, "")] for k, v in head.items()],
        ),
        "",
        "step_latency_vs_grucell compares `SSM(num_layers=1).step` (real) with a GRUCell inside a Linear "
        "encoder and a LayerNorm (comparable work); step_latency_vs_bare_grucell with a bare `nn.GRUCell`; "
        "both at B=1 under no_grad.",
        "",
        "## Scan: forward + backward (ms)",
        "",
        markdown_table(
            ["T", "B", "N", "dtype", "method", "median", "p25", "p75", "CPU median", "/ linear_scan"],
            [
                [r["T"], r["B"], r["N"], r["dtype"], r["method"], r["median_ms"], r["p25_ms"], r["p75_ms"]]
                + [r["cpu_median_ms"], r["time_over_linear_scan"]]
                for r in section("scan")
            ],
        ),
        "",
        "## Acting step latency under no_grad (us per call)",
        "",
        markdown_table(
            ["B", "method", "median", "p25", "p75", "CPU median", "/ nn.GRUCell"],
            [
                [r["B"], r["method"], r["median_us"], r["p25_us"], r["p75_us"], r["cpu_median_us"]]
                + [r["latency_over_grucell"]]
                for r in section("step")
            ],
        ),
        "",
        "## One layer, forward + backward, T=1024, B=8, width 64 (ms)",
        "",
        markdown_table(
            ["method", "median", "p25", "p75", "CPU median", "/ SSM block"],
            [
                [
                    r["method"],
                    r["median_ms"],
                    r["p25_ms"],
                    r["p75_ms"],
                    r["cpu_median_ms"],
                    r["time_over_ssm_block"],
                ]
                for r in section("layer")
            ],
        ),
    ]
    if section("crossover"):
        out += [
            "",
            "## Kernel crossover: forward + backward CPU time, B=8 (loop / chunked > 1: chunked faster)",
            "",
            markdown_table(
                ["T", "dtype", "width B*N", "loop ms", "chunked ms", "loop / chunked"],
                [
                    [r["T"], r["dtype"], r["width"], r["loop_ms"], r["chunked_ms"], r["loop_over_chunked"]]
                    for r in section("crossover")
                ],
            ),
        ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast subset (< 60 s), written to *_quick.*")
    parser.add_argument("--no-crossover", action="store_true", help="skip the kernel crossover sweep")
    parser.add_argument("--name", default=None, help="results/<name>.{json,md} (default: scan_speed[_quick])")
    args = start_run(parser)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    machine = machine_info()
    if args.quick:
        grid, reps, heavy_reps, step_reps, inner, layer_reps = [tuple(HEADLINE.values())], 9, 3, 9, 100, 5
    else:
        grid = [(T, B, N) for T in (128, 1024) for B in (8, 64) for N in (64, 256)]
        grid.insert(0, tuple(PPO_SHAPE.values()))
        reps, heavy_reps, step_reps, inner, layer_reps = 21, 5, 31, 200, 15
    rows = bench_scan(grid, reps, heavy_reps)
    rows += bench_step([1] if args.quick else [1, 8], step_reps, inner)
    rows += bench_layer(layer_reps)
    if not (args.quick or args.no_crossover):
        rows += bench_crossover(reps=7)
    payload = {
        "name": "scan_speed",
        "headline": headline(rows),
        "headline_cpu_time": headline(rows, cpu=True),
        "targets": TARGETS,
        "config": {
            "quick": args.quick,
            "headline_config": HEADLINE,
            "scan_grid_T_B_N": grid,
            "reps": reps,
            "reps_slow_methods": heavy_reps,
            "step_reps": step_reps,
            "step_calls_per_rep": inner,
            "layer_reps": layer_reps,
            "reset_probability": 0.01,
            "threads": 1,
        },
        "rows": rows,
        "machine": machine,
        "command": command_line(),
        "commit": git_commit(),
        "seeds": [SEED],
        "date": now_iso(),
    }
    payload["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    name = args.name or ("scan_speed_quick" if args.quick else "scan_speed")
    json_path, md_path = write_results(name, payload, to_markdown(payload))
    print("headline:", payload["headline"])
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
