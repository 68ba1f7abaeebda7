"""benchmarks/backbone_profile.py: a cycle's phases add up to what it measured, and the operator counter counts
what ran."""

from __future__ import annotations

import torch
from test_benchmark_merge import load_script

profile = load_script("backbone_profile")


def test_op_counter_counts_dispatched_operators():
    x = torch.ones(3)
    with profile.OpCounter() as c:
        (x + 1).mul(2).sum()
    assert c.count == 3


def test_a_cycle_times_every_phase_and_counts_the_ops_of_each():
    cycle = profile.Cycle("cartpole", "gated ssm")
    assert cycle.cfg.model.kind == "gated_ssm"
    phases = cycle.run()
    assert set(phases) == set(profile.PHASES)
    assert all(v > 0.0 for v in phases.values()), phases
    ops = cycle.op_counts()
    assert set(ops) == {"act", "forward", "backward", "optimizer"}
    assert all(n > 0 for n in ops.values()), ops
    assert ops["forward"] > ops["act"]  # a sequence of 64 steps and the loss, against one step
    cycle.envs.close()


def test_acting_latency_table_has_every_backbone_and_batch():
    rows = profile.latency_rows("rl2", ["gated ssm", "mlp"], [1, 4], reps=1)
    assert {(r["backbone"], r["batch"]) for r in rows} == {
        (b, n) for b in ("gated ssm", "mlp") for n in (1, 4)
    }
    assert all(r["act_us"] > 0 for r in rows)
