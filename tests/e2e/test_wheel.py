"""The package people install: ``python -m build`` makes a wheel and an sdist; the wheel carries the shipped
models, their cards and ``py.typed``; installed on its own (not the editable checkout), it loads a shipped
model offline and acts."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = textwrap.dedent(
    """
    import sys
    import ssm_metarl
    from ssm_metarl import load_pretrained, list_pretrained
    from ssm_metarl.envs.tasks import get_family

    assert ssm_metarl.__file__.startswith(sys.argv[1]), ssm_metarl.__file__
    from ssm_metarl.models import native
    assert native.available() and native.SOURCE.is_relative_to(sys.argv[1])  # built from the wheel's C source
    assert {"bandit-ssm", "cartpole-ssm", "navigation-maml-ssm", "navigation-ssm"} <= set(list_pretrained())
    policy = load_pretrained("cartpole-ssm")
    env = get_family("cartpole-physics").make_env(get_family("cartpole-physics").test[0])
    obs, _ = env.reset(seed=0)
    state, reset, total, done = policy.initial_state(1), [True], 0.0, False
    while not done:
        action, state = policy.predict(obs[None], state, reset=reset)
        obs, reward, terminated, truncated, _ = env.step(action[0])
        total, reset, done = total + reward, [False], terminated or truncated
    print(f"return {total:.1f}")
    """
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def test_wheel_and_sdist_carry_what_the_code_loads(dist):
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "ssm_metarl/py.typed",
        "ssm_metarl/models/_scan.c",
        "ssm_metarl/pretrained/cartpole-ssm/model.safetensors",
        "ssm_metarl/pretrained/cartpole-ssm/config.json",
        "ssm_metarl/pretrained/cartpole-ssm/README.md",
        "ssm_metarl/pretrained/navigation-ssm/results.json",
    ):
        assert needed in names, needed
    assert any(n.endswith("LICENSE") for n in names)
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/pyproject.toml") for n in tar.getnames())


def test_installed_wheel_loads_a_shipped_model_and_acts(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(target), "SSM_METARL_NATIVE": "1"}
    env["SSM_METARL_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-c", SMOKE, str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.split()[-1]) > 100  # the shipped policy balances the pole
