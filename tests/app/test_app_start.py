"""The app starts as a user starts it: ``python app.py`` in a subprocess, on 127.0.0.1, serving the page; and
as a Hugging Face Space starts it, with no arguments and the address and port from ``GRADIO_SERVER_*``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serves_page(cmd: list[str], url: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        page = ""
        for _ in range(600):  # up to a minute for torch + gradio to import on a busy machine
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
            try:
                page = urllib.request.urlopen(url, timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "ssm-metarl" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_python_app_py_serves_the_page_on_loopback(tmp_path):
    port = free_port()
    cmd = [sys.executable, "app.py", "--port", str(port), "--runs-dir", str(tmp_path)]
    serves_page(cmd, f"http://127.0.0.1:{port}/")


def test_space_start_takes_address_and_port_from_gradio_env(tmp_path):
    port = free_port()  # 127.0.0.2 is loopback too: only the environment can have chosen it
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.2", "GRADIO_SERVER_PORT": str(port)}
    serves_page([sys.executable, "app.py", "--runs-dir", str(tmp_path)], f"http://127.0.0.2:{port}/", env)


def test_ssm_metarl_app_subcommand():
    from ssm_metarl.cli import PARSERS

    assert "app" in PARSERS
    out = subprocess.run(
        [sys.executable, "-m", "ssm_metarl.cli", "app", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--host" in out.stdout and "--port" in out.stdout
