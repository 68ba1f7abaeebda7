"""The benchmarks' results merging keeps, for every run, the commit that produced it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = module
    spec.loader.exec_module(module)
    return module


def test_merged_runs_carry_the_commit_that_produced_them(tmp_path: Path) -> None:
    common = _common()
    own = tmp_path / "own.json"  # a file that merged nothing: its runs are its commit's
    own.write_text(json.dumps({"commit": "aaa", "runs": [{"k": 1}, {"k": 2}]}))
    mixed = tmp_path / "mixed.json"  # a file that merged others: a run without a commit is unknown
    mixed.write_text(
        json.dumps(
            {"commit": "bbb", "merged_from": [{"file": "x"}], "runs": [{"k": 3}, {"k": 4, "commit": "ccc"}]}
        )
    )
    new = [{"k": 2}]  # replaces own.json's run 2
    runs, merged_from = common.merge_runs(new, [own, mixed], key=lambda r: r["k"])
    by_key = {r["k"]: r["commit"] for r in runs}
    assert by_key == {1: "aaa", 2: common.git_commit(), 3: None, 4: "ccc"}
    assert [m.get("commit") for m in merged_from] == ["aaa", None, "bbb"]  # own, mixed's own merge, mixed
