"""Resume after kill -9: a run killed with SIGKILL at a random update, then started again with ``--resume``,
ends with exactly the parameters of a run that was never interrupted; and whatever the moment of the kill,
every checkpoint on disk is whole."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from inprocess import run_cli
from safetensors.torch import load_file

from ssm_metarl.checkpoint import load_policy, read_tensors
from ssm_metarl.rl.run import TRAINER_JSON, checkpoint_folders

CLI = [sys.executable, "-m", "ssm_metarl.cli"]

# Small updates (what is resumed does not depend on their size: the parameters, Adam's state, the annealed
# lr, the RNG states and the update counter), each still long enough that the killed process cannot finish
# the 2+ updates after its checkpoint before the kill: PPO and RL² take 2 epochs per update (not 10), RL² 4
# envs (not 16); a MAML iteration's time goes to its 100-step rollouts, whatever the number of episodes, so
# it runs 8 iterations (was 12).
COMMANDS = {
    "ppo": "train --env CartPole-v1 --total_steps 8192 --num_envs 4 --rollout_steps 128 --update_epochs 2 "
    "--model.hidden_dim 16 --eval_episodes 1",
    "maml": "meta-train --method maml --tasks navigation-2d --meta_iterations 8 --meta_batch_size 2 "
    "--inner.episodes 4 --model.hidden_dim 16 --eval.num_tasks 1 --eval.steps 0",
    "rl2": "meta-train --method rl2 --tasks bandit --episodes_per_trial 2 --total_steps 6144 --num_envs 4 "
    "--update_epochs 2 --model.hidden_dim 16 --eval.num_tasks 1",
}
UPDATES = {"ppo": 16, "maml": 8, "rl2": 12}


def arguments(name: str, out: Path, *extra: str) -> list[str]:
    """The ``ssm-metarl`` arguments of run ``name`` into ``out``."""
    return [
        *COMMANDS[name].split(),
        "--out",
        str(out),
        "--progress",
        "False",
        "--checkpoint_every",
        "1",
        *extra,
    ]


def command(name: str, out: Path, *extra: str) -> list[str]:
    """The same run as a process of its own, for the tests that kill it."""
    return [*CLI, *arguments(name, out, *extra)]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


def check_whole(out: Path) -> int:
    """Every checkpoint folder loads completely; returns how many there are."""
    found = checkpoint_folders(out)
    for folder in found:
        load_policy(folder)
        json.loads((folder / TRAINER_JSON).read_text())
        read_tensors(folder, "optimizer.safetensors")
        read_tensors(folder, "trainer.safetensors")
    return len(found)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_killed_run_resumes_to_the_same_parameters(tmp_path, name):
    ref = tmp_path / "ref"
    run_cli(arguments(name, ref))  # the uninterrupted run, in this process

    rng = random.Random()
    kill_after = rng.randint(1, UPDATES[name] - 2)  # the update whose checkpoint must exist before the kill
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(name, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / f"{kill_after:09d}").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final").exists(), f"the run finished before the kill (update {kill_after})"
    assert check_whole(out) >= 1

    run_cli(arguments(name, out, "--resume", str(out)))  # the killed process's checkpoint, resumed here
    want, got = final_weights(ref), final_weights(out)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), f"{key} differs after a kill at update {kill_after}"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    counter = "iteration" if name == "maml" else "update"
    assert [r[counter] for r in rows if counter in r] == list(range(1, UPDATES[name] + 1))


def test_kills_at_random_instants_never_leave_a_half_written_checkpoint(tmp_path):
    rng = random.Random()
    for i in range(4):
        out = tmp_path / f"run{i}"
        proc = subprocess.Popen(command("ppo", out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.5 + rng.random() * 3.0)  # anywhere in the run: mid-update, mid-write, ...
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        check_whole(out)


def test_resume_with_another_config_is_refused(tmp_path):
    out = tmp_path / "run"
    run_cli(arguments("ppo", out))
    proc = run_cli(arguments("ppo", out, "--lr", "0.5", "--resume", str(out)), ok=False)
    assert (
        proc.returncode == 2 and "lr: saved 0.001, now 0.5" in proc.stderr and "Traceback" not in proc.stderr
    )
    proc = run_cli(arguments("ppo", tmp_path / "new", "--resume", str(tmp_path / "nothing")), ok=False)
    assert proc.returncode == 2 and "no resumable checkpoint" in proc.stderr
