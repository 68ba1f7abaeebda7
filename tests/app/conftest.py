"""Fixtures for the web app's tests: a tiny meta-trained checkpoint, and the app served on a free local port
(in this process, so the tests' sessions really go through Gradio's server, queue and websocket/SSE)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
pytest.importorskip("gradio", reason="the web app needs the app extra: pip install -e '.[app]'")

torch.set_num_threads(1)

SHIPPED = "cartpole-ssm"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CartPole-physics SSM policy after 1 tiny MAML iteration (seconds), saved as a checkpoint."""
    from ssm_metarl.meta.maml import train_maml
    from ssm_metarl.recipes import recipe

    out = tmp_path_factory.mktemp("tiny-maml")
    cfg = recipe("maml", "cartpole-physics", "ssm").replace(
        model__hidden_dim=16,
        model__state_dim=16,
        meta_iterations=1,
        meta_batch_size=2,
        inner__episodes=2,
        run__out_dir=str(out),
        run__progress=False,
    )
    train_maml(cfg)
    return out / "final"


@pytest.fixture
def shipped_model() -> str:
    """The shipped CartPole model; the test is skipped (saying why) only if the package lacks it."""
    from ssm_metarl.pretrained import list_pretrained

    if SHIPPED not in list_pretrained():
        pytest.skip(f"the shipped model {SHIPPED!r} is not in ssm_metarl/pretrained/ (run `make pretrained`)")
    return SHIPPED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    """The app, launched as ``ssm-metarl app`` launches it, on 127.0.0.1 and a free port."""
    from ssm_metarl.app import launch

    port = free_port()
    demo = launch(host="127.0.0.1", port=port, runs_dir=tmp_path_factory.mktemp("app-runs"), block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
