"""Two worker processes and the loop on one study, on SQLite and on a PostgreSQL server this test starts
(Debian's ``postgresql`` package, which .ci/run installs, and the ``postgres`` extra's psycopg): every trial runs exactly
once, on whichever process claimed it, and the loop decides from all of them."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from test_rsi_daemon import TINY

CLI = [sys.executable, "-m", "ssm_metarl.cli", "rsi"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth), its URL; stopped afterwards."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries: apt-get install postgresql (.ci/run does)")
    pytest.importorskip("psycopg", reason="pip install 'ssm-metarl[postgres]' (make installs it)")
    bin_dir = Path(found[-1]).parent
    top = Path(tempfile.mkdtemp(prefix="ssm-metarl-pg-"))  # not under pytest's private (0700) tmp folders
    top.chmod(0o755)
    data = top / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's postgres user
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    port = _free_port()
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w"]
    subprocess.run([*ctl, "-o", opts, "start"], check=True, capture_output=True)
    try:
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "rsi"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/rsi"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_the_cycles_and_every_trial_runs_once(tmp_path, backend, request):
    out = tmp_path / "rsi"
    url = (
        f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue("postgres")
    )
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
            [*CLI, "run", *args, "--cycles", "2"], env=env, capture_output=True, text=True, timeout=900
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
    assert all(per_cycle[c] >= 4 for c in (1, 2)), per_cycle
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len({t.number for t in done}) == len(done)  # one result per trial
    assert len({t.user_attrs["worker"] for t in done}) >= 2, "the workers trained none of the candidates"
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines() if line]
    logged = Counter(r["trial"] for r in rows if r["kind"] == "trial")
    assert set(logged) == {t.number for t in done} and max(logged.values()) == 1  # each logged once
    assert sum("worker ended after" in o for o, _ in logs) == 2
