"""Two worker processes and the loop on one study (SQLite here; any SQLAlchemy URL the same way): every trial
runs exactly once, on whichever process claimed it, and the loop decides from all of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import optuna
from test_rsi_daemon import TINY

CLI = [sys.executable, "-m", "ssm_metarl.cli", "rsi"]


def test_two_workers_share_the_cycles_and_every_trial_runs_once(tmp_path):
    out, url = tmp_path / "rsi", f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["--out_dir", str(out), "--storage", url, *TINY, "--candidates", "4", "--poll_s", "0.2"]
    env = {**os.environ, "SSM_METARL_BUDGET": ""}
    workers = [
        subprocess.Popen(
            [*CLI, "worker", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        loop = subprocess.run(
            [*CLI, "run", *args, "--cycles", "3"], env=env, capture_output=True, text=True, timeout=900
        )
        assert loop.returncode == 0, loop.stdout + loop.stderr
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        logs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
    study = optuna.load_study(study_name="rsi", storage=url)
    trials = [t for t in study.trials if "cycle" in t.user_attrs]
    per_cycle = Counter(t.user_attrs["cycle"] for t in trials if t.state.name in ("COMPLETE", "FAIL"))
    assert all(per_cycle[c] >= 4 for c in (1, 2, 3)), per_cycle
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len({t.number for t in done}) == len(done)  # one result per trial
    assert len({t.user_attrs["worker"] for t in done}) >= 2, "the workers trained none of the candidates"
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines() if line]
    logged = Counter(r["trial"] for r in rows if r["kind"] == "trial")
    assert set(logged) == {t.number for t in done} and max(logged.values()) == 1  # each logged once
    assert sum("worker ended after" in o for o, _ in logs) == 2
