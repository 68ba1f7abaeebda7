"""``notebooks/quickstart.ipynb``: committed exactly as ``notebooks/make_quickstart.py`` writes it (outputs
stripped), and executed top to bottom at a small budget, every cell without an error, the figures drawn."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_quickstart", ROOT / "notebooks" / "make_quickstart.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebook_is_the_generated_one_without_outputs() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert nbformat.writes(committed) == nbformat.writes(_generator().build()), (
        "notebooks/quickstart.ipynb differs from notebooks/make_quickstart.py: run python notebooks/make_quickstart.py"
    )
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    env = {**os.environ, "SSM_METARL_NOTEBOOK_BUDGET": "0.05", "PYTHONPATH": str(ROOT)}  # this checkout
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert "shipped models: ['bandit-ssm', 'cartpole-ssm', 'navigation-maml-ssm', 'navigation-ssm']" in text
    assert "test tasks" in text and "out_of_range tasks" in text  # the gradient-adaptation tables
    assert "episode 1" in text and "episode 4" in text  # the in-context table, one column per inner episode
    assert "final evaluation" in text  # trained from scratch
    assert len(images) == 5, [o.output_type for o in outputs]  # frames, two curve plots, paths, training
