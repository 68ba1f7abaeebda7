"""`ssm-metarl rsi start|run` on a folder that holds a loop resumes it with the folder's configuration: flags
not given keep the folder's values, budgets may change, and a flag that changes what the loop is is refused
by name before anything runs (the kill -9 case: typing the first start's flags again is not needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from ssm_metarl import cli  # noqa: E402
from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, RSIConfig  # noqa: E402
from ssm_metarl.errors import InputError  # noqa: E402
from ssm_metarl.rsi import daemon, store  # noqa: E402
from ssm_metarl.rsi.loop import SelfImprovement, config_key  # noqa: E402

START = MAMLConfig(
    meta_iterations=1,
    meta_batch_size=2,
    model=ModelConfig(kind="mlp", hidden_dim=8, num_layers=1),
    inner=AdaptConfig(steps=1, lr=0.5, episodes=2, baseline="linear"),
    outer_epochs=1,
)


def first_start(tmp_path: Path, config_file: bool = True, **kw) -> RSIConfig:
    """A folder as a killed loop leaves it: the configuration it was started with and its manifest."""
    base = dict(cycles=1000, candidates=4, eval_tasks=4, search=("outer_lr_scale", "inner_lr_scale"))
    cfg = RSIConfig(start=START.replace(run__out_dir=str(tmp_path / "rsi")), **{**base, **kw})
    out = Path(cfg.out_dir)
    out.mkdir(parents=True)
    if config_file:  # `rsi start` writes it; a loop made by `rsi run` has the manifest's copy only
        (out / daemon.CONFIG).write_text(json.dumps(cfg.to_dict()))
    manifest = {
        "config": cfg.to_dict(),
        "config_key": config_key(cfg),
        "cycle": 3,
        "failures": 0,
        "env_steps": 1000,
        "stopped": None,
        "incumbent": {"cycle": 2, "hash": "0" * 64},
    }
    store.write_manifest(out, manifest)
    return cfg


def rsi(action: str, cfg: RSIConfig, *flags: str) -> RSIConfig:
    return cli.parse(["rsi", action, "--out_dir", cfg.out_dir, *flags]).config


@pytest.mark.parametrize("action", ["start", "run", "worker"])
def test_no_flags_resume_the_folders_configuration(tmp_path, monkeypatch, action):
    saved = first_start(tmp_path)
    monkeypatch.setenv("SSM_METARL_BUDGET", "0.1")  # the saved budgets were already what the loop used
    assert rsi(action, saved) == saved


def test_a_loop_made_by_rsi_run_resumes_from_its_manifest(tmp_path):
    saved = first_start(tmp_path, config_file=False, candidates=2)
    assert daemon.folder_config(saved.out_dir) == saved
    assert rsi("start", saved) == saved


def test_given_budgets_change_and_the_rest_keeps_the_folders_values(tmp_path):
    saved = first_start(tmp_path)
    given = rsi("start", saved, "--cycles", "5", "--max_minutes", "30")
    assert given == saved.replace(cycles=5, max_minutes=30.0)
    daemon.check_resumes(given)  # budgets and limits may change: not refused


def test_restart_stopped_is_asked_for_on_each_start(tmp_path):
    saved = first_start(tmp_path, restart_stopped=True)
    assert rsi("start", saved).restart_stopped is False
    assert rsi("start", saved, "--restart_stopped", "True").restart_stopped is True


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--candidates", "8"], "--candidates 8 differs from the folder's 4"),
        (["--start.model.hidden_dim", "16"], "--start.model.hidden_dim 16 differs from the folder's 8"),
        (["--seed", "3"], "--seed 3 differs from the folder's 0"),
        (["--family", "bandit"], "--start.family bandit differs from the folder's navigation-2d"),
        (
            ["--search", "hidden_scale"],
            "--search hidden_scale differs from the folder's outer_lr_scale inner_lr_scale",
        ),
    ],
)
def test_start_refuses_a_differing_flag_by_name_before_launching(tmp_path, capsys, flags, named):
    saved = first_start(tmp_path)
    before = (Path(saved.out_dir) / daemon.CONFIG).read_text()
    assert cli.main(["rsi", "start", "--out_dir", saved.out_dir, "--cycles", "7", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "another configuration" in err
    assert "--cycles" not in err  # a budget is not a difference
    assert (Path(saved.out_dir) / daemon.CONFIG).read_text() == before  # nothing written, nothing launched
    assert not (Path(saved.out_dir) / "rsi.stderr").exists()


def test_run_names_the_differing_flag_before_opening_the_study(tmp_path):
    saved = first_start(tmp_path)
    with pytest.raises(InputError, match="--w_speed 0.0 differs from the folder's 0.5"):
        SelfImprovement(saved.replace(w_speed=0.0))
    assert not (Path(saved.out_dir) / "study.db").exists()


def test_a_fresh_folder_starts_from_the_recipe(tmp_path):
    cfg = cli.parse(["rsi", "start", "--out_dir", str(tmp_path / "new"), "--family", "bandit"]).config
    assert cfg.family == "bandit" and cfg.start.meta_iterations == 20 and cfg.candidates == 3
    assert daemon.folder_config(tmp_path / "new") is None


def test_start_alone_after_a_kill_launches_the_daemon_with_the_folders_configuration(tmp_path, monkeypatch):
    saved = first_start(tmp_path)
    (Path(saved.out_dir) / daemon.CONFIG).unlink()  # even the manifest's copy is enough
    launched = []

    class Launch:  # stands in for the daemon process: records what it was given, reports it started
        def __init__(self, argv, **kw):
            launched.append(argv)
            (Path(saved.out_dir) / daemon.PID).write_text(json.dumps({"pid": 1 << 22}))

        def poll(self):
            return None

    monkeypatch.setattr(daemon.subprocess, "Popen", Launch)
    assert cli.main(["rsi", "start", "--out_dir", saved.out_dir]) == 0
    assert len(launched) == 1 and launched[0][-1] == str(Path(saved.out_dir).resolve())
    on_disk = json.loads((Path(saved.out_dir) / daemon.CONFIG).read_text())
    assert RSIConfig.from_dict(on_disk) == saved  # what the daemon process reads
