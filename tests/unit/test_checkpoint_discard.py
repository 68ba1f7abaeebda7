"""Old checkpoints are removed so that a crash in the middle (``kill -9`` during the deletion) never leaves
a half-deleted folder under a checkpoint's name: a resume, or anyone listing the run, sees whole ones only."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssm_metarl import checkpoint
from ssm_metarl.checkpoint import atomic_folder_write, discard_folder
from ssm_metarl.rl.run import checkpoint_folders


def _write(path: Path) -> Path:
    def write(tmp: Path) -> None:
        for name in ("model.safetensors", "config.json", "optimizer.safetensors", "trainer.json"):
            (tmp / name).write_text(name)

    return atomic_folder_write(path, write)


def test_a_crash_during_deletion_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    first, second = _write(folder / "000000001"), _write(folder / "000000002")

    def dies_halfway(path, ignore_errors=False):  # deletes one file, then the process "dies"
        next(Path(path).iterdir()).unlink()
        raise SystemExit("killed")

    monkeypatch.setattr(checkpoint.shutil, "rmtree", dies_halfway)
    with pytest.raises(SystemExit):
        discard_folder(first)
    assert checkpoint_folders(tmp_path) == [second]
    for p in checkpoint_folders(tmp_path):
        assert len(list(p.iterdir())) == 4
    leftovers = list(folder.glob(".*.del-*"))
    assert len(leftovers) == 1 and len(list(leftovers[0].iterdir())) == 3


def test_discard_removes_the_folder(tmp_path):
    path = _write(tmp_path / "checkpoints" / "000000007")
    discard_folder(path)
    assert not path.exists() and list(path.parent.iterdir()) == []
