"""A diverged run stops with DivergenceError naming the update and the last good checkpoint; metrics keep NaN
as NaN; the CLI exits 3 with a message, not a traceback."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ssm_metarl import cli
from ssm_metarl.checkpoint import load_policy
from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, PGConfig, PPOConfig, RunConfig
from ssm_metarl.envs.make import make_vec_env
from ssm_metarl.errors import DivergenceError
from ssm_metarl.meta.maml import train_maml
from ssm_metarl.rl.metrics import MetricsLogger, read_rows
from ssm_metarl.rl.pg import train_pg
from ssm_metarl.rl.ppo import build_policy, train_ppo

MODEL = ModelConfig(kind="ssm", hidden_dim=16, state_dim=8)


def ppo_cfg(out_dir=None, **kw) -> PPOConfig:
    run = RunConfig(progress=False, out_dir=out_dir, checkpoint_every=1)
    return PPOConfig(
        model=MODEL, total_steps=6 * 128, num_envs=4, rollout_steps=32, eval_episodes=1, run=run, **kw
    )


def test_a_policy_with_one_nan_parameter_is_refused_before_training():
    cfg = ppo_cfg()
    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=0)
    policy = build_policy(cfg, envs)
    envs.close()
    with torch.no_grad():
        policy.actor.weight[0, 0] = math.nan
    with pytest.raises(DivergenceError, match="actor.weight is not finite at the start of training"):
        train_ppo(cfg, policy=policy)


def test_nan_mid_run_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = ppo_cfg(str(tmp_path / "run"))
    holder = {}

    def poison(row):  # after update 2, a NaN reaches one weight (as an overflow would)
        if row.get("update") == 2:
            with torch.no_grad():
                holder["policy"].critic.weight.fill_(math.nan)

    envs = make_vec_env(cfg.env_id, cfg.num_envs, seed=0)
    holder["policy"] = build_policy(cfg, envs)
    envs.close()
    with pytest.raises(DivergenceError, match=r"update 3") as err:
        train_ppo(cfg, policy=holder["policy"], callback=poison)
    last = tmp_path / "run" / "checkpoints" / "000000002"
    assert str(last) in str(err.value) and err.value.last_checkpoint == str(last)
    good = load_policy(last)  # whole, finite, loadable
    assert all(torch.isfinite(p).all() for p in good.parameters())
    assert not (tmp_path / "run" / "final").exists()


def test_pg_and_maml_refuse_non_finite_parameters():
    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.maml import build_meta_policy

    pg = PGConfig(model=MODEL, episodes=8, num_envs=4, run=RunConfig(progress=False))
    envs = make_vec_env(pg.env_id, 4, seed=0)
    policy = build_policy(ppo_cfg(), envs)
    envs.close()
    with torch.no_grad():
        policy.actor.bias.fill_(math.inf)
    with pytest.raises(DivergenceError, match="pg: parameter actor.bias"):
        train_pg(pg, policy=policy)
    maml = MAMLConfig(
        family="cartpole-physics",
        model=MODEL,
        meta_iterations=1,
        meta_batch_size=1,
        inner=AdaptConfig(episodes=2),
        run=RunConfig(progress=False),
    )
    policy = build_meta_policy(maml, get_family("cartpole-physics"))
    with torch.no_grad():
        policy.critic.bias.fill_(math.nan)
    with pytest.raises(DivergenceError, match="maml: parameter critic.bias"):
        train_maml(maml, policy=policy)


def test_metrics_keep_nan_as_nan(tmp_path):
    log = MetricsLogger(tmp_path)
    log.log({"update": 1, "loss": math.nan, "kl": math.inf})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" in text and "Infinity" in text and "null" not in text
    row = read_rows(tmp_path / "metrics.jsonl")[0]
    assert math.isnan(row["loss"]) and row["kl"] == math.inf and json.loads(text)["update"] == 1


def test_cli_exits_3_on_divergence_without_a_traceback(monkeypatch, capsys):
    def diverge(cfg, *a, **k):
        raise DivergenceError("ppo: loss is nan at update 7", "runs/x/checkpoints/000000006")

    monkeypatch.setattr("ssm_metarl.rl.ppo.train_ppo", diverge)
    code = cli.main(["train", "--env", "CartPole-v1", "--total_steps", "512", "--progress", "False"])
    err = capsys.readouterr().err
    assert code == 3 and "update 7" in err and "000000006" in err and "Traceback" not in err
