"""The self-improvement daemon end to end, through the CLI: start / status / logs / stop, start twice, stop
with no daemon, a stale pid file, and kill -9 mid-cycle then start again (nothing accepted is lost)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inprocess import Ran, run_cli

TINY = [
    "--start.meta_iterations", "1", "--start.meta_batch_size", "2", "--start.inner.episodes", "2",
    "--start.model.hidden_dim", "8", "--start.model.num_layers", "1", "--start.outer_epochs", "1",
    "--candidates", "1", "--candidate_iterations", "1", "--eval_tasks", "2", "--eval_seeds", "2",
    "--recheck_seeds", "2", "--oor_tasks", "1", "--search", "outer_lr_scale", "inner_lr_scale",
    "--max_failures", "1000",
]  # fmt: skip


def rsi(*args: str, ok: bool = True) -> Ran:
    """``ssm-metarl rsi <args>`` through the CLI's entry point in this process (the daemon that ``start``
    launches is a process of its own, as for a user)."""
    proc = run_cli(["rsi", *args], ok=False, env={"SSM_METARL_BUDGET": ""})
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def wait_for(cond, what: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit  # a bound on a hang, not a speed assertion
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_start_status_logs_stop(tmp_path):
    out = tmp_path / "rsi"
    started = rsi("start", "--out_dir", str(out), "--cycles", "1000", *TINY)
    assert "running" in started.stdout and (out / "rsi.pid").exists()
    again = rsi("start", "--out_dir", str(out), "--cycles", "1000", *TINY, ok=False)
    assert again.returncode == 2 and "already running" in again.stderr
    status = rsi("status", "--out", str(out))
    assert f"{out}: running" in status.stdout and '"cycle"' in status.stdout
    wait_for(lambda: manifest(out)["cycle"] >= 1, "a finished cycle")
    logs = rsi("logs", "--out", str(out))
    assert "initialising on" in logs.stdout and "running: cycle" in logs.stdout
    stopped = rsi("stop", "--out", str(out), "--timeout", "300")
    assert "stopped" in stopped.stdout and not (out / "rsi.pid").exists()
    assert "ended: stop requested" in (out / "rsi.log").read_text()
    assert "no self-improvement daemon is running" in rsi("stop", "--out", str(out)).stdout
    assert f"{out}: stopped" in rsi("status", "--out", str(out)).stdout


def test_a_stale_pid_file_is_detected_and_removed(tmp_path):
    out = tmp_path / "rsi"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "rsi.pid").write_text(json.dumps({"pid": dead.pid}))
    status = rsi("status", "--out", str(out))
    assert "stale" in status.stdout and not (out / "rsi.pid").exists()
    (out / "rsi.pid").write_text(json.dumps({"pid": os.getpid()}))  # a live process that is not the daemon
    assert "stale" in rsi("status", "--out", str(out)).stdout


def test_logs_without_a_run_says_so(tmp_path):
    proc = rsi("logs", "--out", str(tmp_path / "none"), ok=False)
    assert proc.returncode == 2 and "no daemon has run" in proc.stderr


def test_kill_9_mid_cycle_then_start_resumes(tmp_path):
    out = tmp_path / "rsi"
    rsi("start", "--out_dir", str(out), "--cycles", "1000", *TINY)
    wait_for(lambda: manifest(out)["cycle"] >= 1, "a finished cycle")
    pid = json.loads((out / "rsi.pid").read_text())["pid"]
    before = manifest(out)
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
        "the kill",
    )
    assert "stale" in rsi("status", "--out", str(out)).stdout
    rsi("start", "--out_dir", str(out), "--cycles", "1000", *TINY)
    after = manifest(out)
    assert after["cycle"] >= before["cycle"]  # no finished cycle is lost
    hashes = [h["hash"] for h in after["history"]]
    assert [h["hash"] for h in before["history"]] == hashes[: len(before["history"])]
    wait_for(lambda: manifest(out)["cycle"] > before["cycle"], "a cycle after the restart")
    rsi("stop", "--out", str(out), "--timeout", "300")
    kinds = [json.loads(line)["kind"] for line in (out / "decisions.jsonl").read_text().splitlines() if line]
    assert kinds.count("started") == 1  # the starting incumbent was trained once


def test_a_safety_stop_is_kept_until_restart_stopped(tmp_path):
    out = tmp_path / "rsi"
    args = ["--out_dir", str(out), "--cycles", "5", *TINY, "--max_env_steps", "1"]
    assert "env-step limit reached" in rsi("run", *args).stdout
    refused = rsi("start", *args, ok=False)
    assert refused.returncode == 2 and "--restart_stopped" in refused.stderr
    again = rsi("run", *args, "--restart_stopped", "True")
    assert "env-step limit reached" in again.stdout  # restarted, and the same limit stops it again
    kinds = [json.loads(line)["kind"] for line in (out / "decisions.jsonl").read_text().splitlines() if line]
    assert kinds.count("restarted") == 1 and kinds.count("stopped") == 2


def test_another_configuration_on_a_loop_folder_is_refused(tmp_path):
    out = tmp_path / "rsi"
    rsi("run", "--out_dir", str(out), "--cycles", "1", *TINY)
    proc = rsi("run", "--out_dir", str(out), "--cycles", "2", "--w_speed", "0", *TINY, ok=False)
    assert proc.returncode == 2 and "another configuration" in proc.stderr
    more = rsi("run", "--out_dir", str(out), "--cycles", "2", *TINY)  # a bigger budget continues the loop
    assert "2 cycles done" in more.stdout
