"""Every CLI command runs end to end on a tiny budget, as a user would call it: in this process through the
entry point (:mod:`inprocess`), and across the process boundary (the module, ``python main.py``) where the
exit status and stderr of a real process are what is tested."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import run_cli

from ssm_metarl.envs.tasks import get_family

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ssm_metarl.cli"]


def run(args, cwd, ok=True):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_main_py(args, cwd, ok=True):
    return run_cli(args, cwd, ok=ok, main_py=True)


def test_train_ppo_then_evaluate(tmp_path):
    out = tmp_path / "run"
    run_cli(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "--model",
            "ssm",
            "--total_steps",
            "2048",
            "--out",
            str(out),
            "--eval_episodes",
            "2",
            "--progress",
            "False",
        ],
        tmp_path,
    )
    assert (out / "final" / "model.safetensors").exists() and (out / "best" / "config.json").exists()
    assert json.loads((out / "run.json").read_text())["config"]["total_steps"] == 2048
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["final"] is True and rows[0]["global_step"] == 512
    proc = run_cli(["evaluate", str(out / "final"), "--episodes", "3", "--json_out", "True"], tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["env_id"] == "CartPole-v1"
    assert result["deterministic"]["episodes"] == 3 and result["stochastic"]["episodes"] == 3


def test_train_pg_continuous(tmp_path):
    out = tmp_path / "pg"
    run_cli(
        [
            "train",
            "--algo",
            "pg",
            "--env",
            "Pendulum-v1",
            "--model",
            "gru",
            "--episodes",
            "8",
            "--out",
            str(out),
            "--eval_episodes",
            "2",
            "--progress",
            "False",
        ],
        tmp_path,
    )
    assert (out / "final" / "config.json").exists()


def test_seed_main_policy_gradient(tmp_path):
    proc = run_main_py(
        [
            "--mode",
            "policy_gradient",
            "--env",
            "CartPole-v1",
            "--episodes",
            "16",
            "--out",
            str(tmp_path / "m"),
        ],
        tmp_path,
    )
    assert "eval_return_det" in proc.stdout
    assert (tmp_path / "m" / "final" / "model.safetensors").exists()


def test_seed_main_improved_mujoco(tmp_path):
    # --episodes 2 on HalfCheetah-v5 = 2 x 1000 env steps of PPO with the ImprovedSSM backbone
    proc = run_main_py(
        [
            "--mode",
            "improved",
            "--env",
            "HalfCheetah-v5",
            "--episodes",
            "2",
            "--lr",
            "3e-4",
            "--out",
            str(tmp_path / "hc"),
        ],
        tmp_path,
    )
    cfg = json.loads((tmp_path / "hc" / "final" / "config.json").read_text())
    assert cfg["policy"]["kind"] == "improved" and cfg["metadata"]["env_id"] == "HalfCheetah-v5"
    assert "eval_return_det" in proc.stdout


def test_seed_main_env_name_spelling(tmp_path):
    run_main_py(
        [
            "--mode",
            "policy_gradient",
            "--env_name",
            "CartPole-v1",
            "--num_episodes",
            "8",
            "--out",
            str(tmp_path / "m"),
        ],
        tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--env", "CartPole-v9", "--total_steps", "512"], "CartPole-v9"),
        (["train", "--env", "NoSuchEnv-v0", "--total_steps", "512"], "NoSuchEnv-v0"),
        (["evaluate", "does/not/exist"], "does not exist"),
    ],
)
def test_bad_input_gives_clear_error_and_nonzero_exit(tmp_path, args, message):
    proc = run_cli(args, tmp_path, ok=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_checkpoint_for_another_observation_size(tmp_path):
    out = tmp_path / "cp"
    run_cli(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--total_steps",
            "1024",
            "--out",
            str(out),
            "--eval_episodes",
            "1",
            "--progress",
            "False",
        ],
        tmp_path,
    )
    proc = run_cli(["evaluate", str(out / "final"), "--env", "Acrobot-v1"], tmp_path, ok=False)
    assert proc.returncode == 2 and "observation features" in proc.stderr and "Traceback" not in proc.stderr


def test_main_py_unknown_env(tmp_path):
    proc = run_main_py(["--mode", "improved", "--env", "HalfCheetah-v99"], tmp_path, ok=False)
    assert proc.returncode == 2 and "HalfCheetah-v99" in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [*CLI, "train", "--env", "CartPole-v9", "--total_steps", "512"],
        [sys.executable, str(ROOT / "main.py"), "--mode", "improved", "--env", "HalfCheetah-v99"],
    ],
    ids=["module", "main.py"],
)
def test_a_real_process_exits_with_status_2_and_no_traceback(tmp_path, argv):
    """Across the process boundary: the exit status and stderr a shell sees (the rest runs in-process)."""
    proc = run(argv, tmp_path, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("CartPole-v9" if "train" in argv else "HalfCheetah-v99") in proc.stderr


def test_help_documents_every_field():
    proc = run_cli(["train", "--help"], ROOT, env={"COLUMNS": "200"})
    for flag in ("--algo", "--env", "--model", "--total_steps", "--resume", "--model.hidden_dim", "--seed"):
        assert flag in proc.stdout
    assert "Gymnasium environment id" in proc.stdout and "recipe('ppo', 'CartPole-v1')" in proc.stdout
    pg = run_cli(["train", "--algo", "pg", "--help"], ROOT)
    assert "--episodes" in pg.stdout and "REINFORCE" in pg.stdout
    maml = run_cli(["meta-train", "--help"], ROOT)
    assert "--inner.lr" in maml.stdout and "--eval.num_tasks" in maml.stdout


def test_discrete_checkpoint_on_continuous_env(tmp_path):
    """CartPole and InvertedPendulum both have 4 observation features; the action spaces differ."""
    out = tmp_path / "cp"
    run_cli(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--total_steps",
            "512",
            "--out",
            str(out),
            "--eval_episodes",
            "1",
            "--progress",
            "False",
        ],
        tmp_path,
    )
    proc = run_cli(["evaluate", str(out / "final"), "--env", "InvertedPendulum-v5"], tmp_path, ok=False)
    assert proc.returncode == 2 and "Discrete(2)" in proc.stderr and "Traceback" not in proc.stderr


def test_meta_train_maml_and_rl2(tmp_path):
    proc = run_cli(
        [
            "meta-train",
            "--method",
            "maml",
            "--tasks",
            "navigation-2d",
            "--model",
            "ssm",
            "--meta_iterations",
            "2",
        ]
        + ["--meta_batch_size", "2", "--inner.episodes", "3", "--eval.num_tasks", "2", "--eval.steps", "1"]
        + ["--out", str(tmp_path / "maml"), "--progress", "False"],
        tmp_path,
    )
    assert "1 step" in proc.stdout and "random policy" in proc.stdout
    cfg = json.loads((tmp_path / "maml" / "final" / "config.json").read_text())
    assert cfg["metadata"]["family"] == "navigation-2d"
    proc = run_cli(
        [
            "meta-train",
            "--method",
            "rl2",
            "--tasks",
            "bandit",
            "--model",
            "gru",
            "--episodes_per_trial",
            "2",
        ]
        + [
            "--total_steps",
            "2048",
            "--eval.num_tasks",
            "2",
            "--out",
            str(tmp_path / "rl2"),
            "--progress",
            "False",
        ]
        + ["--checkpoint_every", "1"],
        tmp_path,
    )
    assert "episode 2" in proc.stdout
    meta = json.loads((tmp_path / "rl2" / "final" / "config.json").read_text())["metadata"]
    assert meta["algo"] == "rl2" and meta["family"] == "bandit" and meta["episodes_per_trial"] == 2
    assert (tmp_path / "rl2" / "checkpoints").is_dir()


def test_seed_main_meta_rl(tmp_path):
    proc = run_main_py(
        [
            "--mode",
            "meta_rl",
            "--env",
            "CartPole-v1",
            "--epochs",
            "1",
            "--tasks_per_epoch",
            "2",
            "--inner_lr",
            "0.01",
            "--outer_lr",
            "0.001",
            "--trajectories",
            "2",
            "--out",
            str(tmp_path / "mr"),
        ],
        tmp_path,
    )
    assert "cartpole-physics" in proc.stdout
    assert (
        json.loads((tmp_path / "mr" / "final" / "config.json").read_text())["metadata"]["family"]
        == "cartpole-physics"
    )


def test_meta_rl_unknown_env(tmp_path):
    proc = run_main_py(
        ["--mode", "meta_rl", "--env", "Humanoid-v5"],
        tmp_path,
        ok=False,
    )
    assert proc.returncode == 2 and "no task family" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_command_prints_the_table(tmp_path):
    proc = run_cli(
        [
            "demo",
            "--steps",
            "1",
            "--tasks",
            "1",
            "--seeds",
            "1",
            "--episodes",
            "2",
            "--out",
            str(tmp_path / "demo"),
        ],
        tmp_path,
    )
    for row in (
        "random policy",
        "constant action",
        "zero-shot (meta-trained)",
        "standard, after 1 steps",
        "hybrid, after 1 steps",
        "PPO from scratch",
    ):
        assert row in proc.stdout
    assert "test tasks" in proc.stdout and "out-of-range tasks" in proc.stdout
    # the in-context part: the shipped RL² model, the return of every episode of a trial, per split
    assert "navigation-ssm on navigation-2d, in context" in proc.stdout
    in_context = [line for line in proc.stdout.splitlines() if "in-context (RL²)" in line]
    assert [line.split()[0] for line in in_context] == ["test", "out-of-range"]
    assert all(line.count("±") == 0 and len(line.split()) == 7 for line in in_context)  # 1 seed: no interval
    assert (tmp_path / "demo" / "adaptation.png").stat().st_size > 10_000


def test_adapt_command_on_a_shipped_model(tmp_path):
    proc = run_cli(
        [
            "adapt",
            "cartpole-ssm",
            "--tasks",
            "out_of_range",
            "--steps",
            "1",
            "--num_tasks",
            "1",
            "--seeds",
            "2",
            "--episodes",
            "2",
            "--out",
            str(tmp_path / "cmp"),
        ],
        tmp_path,
    )
    assert "standard" in proc.stdout and "hybrid" in proc.stdout and "random" in proc.stdout
    saved = json.loads((tmp_path / "cmp.json").read_text())["results"]
    assert (
        saved["standard"]["meta"]["family"] == "cartpole-physics" and saved["standard"]["meta"]["lr"] == 0.1
    )
    assert saved["standard"]["tasks"] == [str(get_family("cartpole-physics").out_of_range[0])]
    proc = run_cli(["adapt", str(tmp_path / "missing")], tmp_path, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
