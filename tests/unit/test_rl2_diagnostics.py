"""benchmarks/rl2_diagnostics.py: a tiny RL² run's diagnostics have every key and sane values, and the
instrumentation leaves training unchanged."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from test_benchmark_merge import load_script

diag_mod = load_script("rl2_diagnostics")


def _tiny(model: str) -> Any:
    cfg = diag_mod.rl2_config(model, seed=0, steps=1200)
    return cfg.replace(
        num_envs=4,
        rollout_steps=150,  # 2 updates: inner episodes 1-2, then 2-3
        num_minibatches=2,
        update_epochs=2,
        eval_episodes=1,
        model=cfg.model.replace(hidden_dim=16, state_dim=8),
    )


def _train(cfg: Any, instrument: bool) -> tuple[Any, list[dict[str, Any]]]:
    from ssm_metarl.meta.rl2 import train_rl2

    torch.set_num_threads(1)
    if not instrument:
        return train_rl2(cfg), []
    d = diag_mod.Diagnostics()
    with diag_mod.instrumented(d):
        result = train_rl2(cfg, callback=d.callback)
    return result, d.rows


def _ok(x: Any) -> bool:
    return x is not None and math.isfinite(x)


@pytest.mark.parametrize("model", ["gated_ssm", "ssm", "gru", "transformer"])
def test_tiny_run_diagnostics_have_the_keys_and_sane_values(model: str) -> None:
    from ssm_metarl.rl import ppo

    real = ppo.ppo_update
    _, rows = _train(_tiny(model), instrument=True)
    assert ppo.ppo_update is real  # restored
    assert [r["update"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("return_mean20", "value_loss", "entropy", "approx_kl", "explained_variance", "grad_total"):
            assert k in r, k
        assert _ok(r["value_loss"]) and r["value_loss"] >= 0
        assert _ok(r["approx_kl"]) and r["approx_kl"] >= -1e-6
        assert _ok(r["explained_variance"]) and r["explained_variance"] <= 1.0
        assert set(r["grad"]) == set(diag_mod.GROUPS)
        assert r["minibatches"] == 4  # 2 epochs x 2 minibatches
        for g in diag_mod.GROUPS:
            assert _ok(r["grad"][g]) and r["grad"][g] > 0, g  # every group is trained
            assert _ok(r["step"][g]) and r["step"][g] > 0, g
        assert 0.0 <= r["clipped_frac"] <= 1.0
        assert len(r["entropy_ep"]) == len(r["return_ep"]) == len(r["explained_variance_ep"]) == 4
        assert all(v is None or 1 <= v <= 100 for v in r["length_ep"])  # inner episodes: at most 100 steps
        layers = diag_mod._a_layer(r)
        if model == "transformer":
            assert layers == {}
            continue
        n_layers = 2 if model == "gated_ssm" else 1  # the recipe's backbone, the critic has its own
        assert sorted(layers) == sorted(
            [f"actor.{i}" for i in range(n_layers)] + [f"critic.{i}" for i in range(n_layers)]
        )
        for q in [v["q"] for v in layers.values()] + list(r.get("a_static", {}).values()):
            assert len(q) == 5 and all(0.0 <= v < 1.0 for v in q), q  # |a| in [0, 1)
            assert q == sorted(q)
    first, second = rows
    assert first["entropy_ep"][0] is not None and first["entropy_ep"][2] is None  # steps 0-149: episodes 1-2
    assert (
        second["entropy_ep"][1] is not None and second["entropy_ep"][2] is not None
    )  # 150-299: episodes 2-3


def test_instrumentation_leaves_training_unchanged(monkeypatch) -> None:
    """Exactly, on one compute path: the diagnostics' forward hooks send a gated block down its torch path
    (the fused one skips hooks; the two agree to rounding, test_gated_ssm), so both runs take that path."""
    from ssm_metarl.models import gated_fused

    monkeypatch.setattr(gated_fused, "supported", lambda *args: False)
    cfg = _tiny("gated_ssm").replace(total_steps=600)  # one update
    plain, _ = _train(cfg, instrument=False)
    watched, _ = _train(cfg, instrument=True)
    keys = ("value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm")
    rows = lambda res: [[r[k] for k in keys] for r in res.metrics if "sps" in r]  # noqa: E731
    assert rows(plain) == rows(watched) and len(rows(plain)) == 1
    for p, q in zip(plain.policy.parameters(), watched.policy.parameters()):
        assert torch.equal(p, q)


def test_parameter_groups_cover_every_parameter_once() -> None:
    from ssm_metarl.envs.trial import TrialEnv
    from ssm_metarl.models import policy_from_config

    env = TrialEnv("navigation-2d", 4)
    for model in ("gated_ssm", "ssm", "gru", "lstm", "transformer"):
        cfg = _tiny(model)
        policy = policy_from_config(cfg.model, env.observation_space, env.action_space, cfg.normalize_obs)
        groups = diag_mod.parameter_groups(policy)
        counted: dict[str, int] = {}
        for _, name, p, slc in groups:
            counted[name] = counted.get(name, 0) + (p.numel() if slc is None else p[slc].numel())
        for name, p in policy.named_parameters():
            assert counted[name] == p.numel(), (model, name)
        assert {g for g, *_ in groups} == set(diag_mod.GROUPS), model
