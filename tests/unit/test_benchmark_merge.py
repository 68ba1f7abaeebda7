"""The benchmarks' results merging keeps, for every run, the commit and the machine that produced it; a benchmark
refuses to start on a working tree with uncommitted changes unless it is given ``--allow-dirty``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(script: str):
    """A benchmark script as a module (``benchmarks/`` on the path while it imports, for its ``_common``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{script}", ROOT / "benchmarks" / f"{script}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _common():
    return load_script("_common")


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


def test_merged_runs_carry_the_machine_that_produced_them(tmp_path: Path) -> None:
    common = _common()
    intel, amd = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}, {"cpu": "AMD EPYC", "cores": 2}
    own = tmp_path / "own.json"  # a file that merged nothing: its runs ran on its machine
    own.write_text(json.dumps({"commit": "aaa", "machine": intel, "runs": [{"k": 1}, {"k": 2}]}))
    mixed = tmp_path / "mixed.json"  # a file that merged others: a run without a machine is unknown
    mixed.write_text(
        json.dumps(
            {
                "commit": "bbb",
                "machine": amd,
                "merged_from": [{"file": "x"}],
                "runs": [{"k": 3}, {"k": 4, "commit": "ccc", "machine": intel}],
            }
        )
    )
    runs, merged_from = common.merge_runs([{"k": 2}], [own, mixed], key=lambda r: r["k"])
    by_key = {r["k"]: r["machine"] for r in runs}
    here = by_key.pop(2)  # this invocation's run: this machine
    assert here["cpu"] == common.cpu_model() and here["cores"] == common.machine_info()["cores"]
    assert by_key == {1: intel, 3: None, 4: intel}
    assert [m.get("machine") for m in merged_from] == [intel, None, amd]  # own, mixed's own merge, mixed
    again, _ = common.merge_runs([], [mixed], key=lambda r: r["k"])  # a run keeps the machine it has
    assert {r["k"]: r["machine"] for r in again} == {3: None, 4: intel}


def test_merged_runs_carry_their_invocation_and_speed_ratios_stay_within_one(tmp_path: Path) -> None:
    common = _common()
    piece = tmp_path / "piece.json"  # one invocation: its runs are its date's
    piece.write_text(json.dumps({"date": "d1", "runs": [{"k": 1}], "commit": "aaa"}))
    runs, _ = common.merge_runs([{"k": 2}], [piece], key=lambda r: r["k"])
    stamps = {r["k"]: r["invocation"] for r in runs}
    assert stamps[1] == "d1" and stamps[2] not in (None, "d1")  # this invocation: now

    nav = load_script("meta_navigation")

    def run(model: str, seed: int, minutes: float, inv: str | None) -> dict:
        return {"kind": "rl2", "model": model, "seed": seed, "steps": 10, "env_steps": 10, "returns": [0.0] * 4,
                "train_seconds": 60 * minutes, "backbone": {"kind": model, "layers": 1, "complex": False},
                "invocation": inv}  # fmt: skip

    grid = [run("ssm", 0, 1.0, "a"), run("transformer", 0, 3.0, "a"), run("ssm", 1, 2.0, "b"),
            run("transformer", 1, 2.0, "b"), run("transformer", 2, 9.0, None), run("ssm", 2, 1.0, "c")]  # fmt: skip
    ratios = nav.speed_ratios(grid, lambda r: r["model"] == "ssm")
    assert ratios == {"transformer": [3.0, 1.0]}  # pieces a and b; no pair in c, the unknown one left out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _common_in(repo: Path):
    """``benchmarks/_common.py`` as a copy inside ``repo`` (so its repository is ``repo``), imported afresh."""
    spec = importlib.util.spec_from_file_location(f"common_{repo.name}", repo / "benchmarks" / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_benchmark_refuses_a_dirty_tree_unless_allowed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "_common.py", repo / "benchmarks" / "_common.py")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "benchmarks" / "results" / "old.json").write_text("{}\n")
    (repo / "ssm_metarl" / "pretrained" / "m").mkdir(parents=True)
    (repo / "ssm_metarl" / "pretrained" / "m" / "results.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "start")
    head = _git(repo, "rev-parse", "HEAD")

    # what a run writes (results, shipped models), and untracked files, leave the tree clean: the run starts
    # and its commit is HEAD
    (repo / "benchmarks" / "results" / "old.json").write_text('{"runs": []}\n')
    (repo / "ssm_metarl" / "pretrained" / "m" / "results.json").write_text('{"new": 1}\n')
    (repo / "benchmarks" / "results" / "new.json").write_text("{}\n")
    (repo / "scratch.txt").write_text("notes\n")
    common = _common_in(repo)
    assert common.dirty_files() == []
    args = common.start_run(argparse.ArgumentParser(), [])
    assert not args.allow_dirty and common.git_commit() == head

    # a change to tracked code is refused, naming the file and the ways on
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(SystemExit) as refused:
        common.start_run(argparse.ArgumentParser(), [])
    message = str(refused.value)
    assert "code.py" in message and "old.json" not in message and "scratch.txt" not in message
    assert "Commit them" in message and "clean clone" in message and "--allow-dirty" in message

    # --allow-dirty runs, and the results file says so: the commit marked -dirty, allow_dirty true
    args = common.start_run(argparse.ArgumentParser(), ["--allow-dirty"])
    assert args.allow_dirty and common.git_commit() == f"{head}-dirty"
    record = common.provenance()
    assert record["allow_dirty"] is True and record["commit"] == f"{head}-dirty"


def test_every_benchmark_starts_through_start_run() -> None:
    """Each script under benchmarks/ that uses ``_common`` parses its arguments with ``start_run``."""
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if p.name != "_common.py"]
    for script in scripts:
        text = script.read_text()
        if "_common" in text:
            assert "start_run(parser)" in text and ".parse_args(" not in text, script.name


def test_a_merged_file_keeps_the_dirty_mark_of_its_commit() -> None:
    common = _common()
    text = common.merged_markdown(
        [
            {
                "file": "a.json",
                "runs": 6,
                "command": "python x.py",
                "commit": "0852de35ae6a-dirty",
                "date": "d",
                "minutes_total": 12.0,
            }
        ]
        + [
            {
                "file": "b.json",
                "runs": 1,
                "command": "python y.py",
                "commit": "4c02a273916d31",
                "date": "d",
                "minutes_total": None,
            }
        ]
    )
    assert "commit 0852de3-dirty," in text and "commit 4c02a27," in text


def test_ppo_mujoco_summarises_each_env_and_model_with_its_headline_keys() -> None:
    bench = load_script("ppo_mujoco")
    # checkpoints: the last row at or before N; none past the budget; none while no episode has ended
    at = bench._checkpoints([(100_000, None, 1.0), (299_000, 10.0, 2.0), (301_000, 20.0, 3.0)], 400_000)
    assert at == {"300000": {"return_mean20": 10.0, "seconds": 2.0}}
    assert bench._checkpoints([(2048, None, 1.0), (300_000, None, 2.0)], 300_000) == {}

    def run(env: str, model: str, seed: int, ret: float) -> dict:
        ev = None if model == "sb3" else {"eval_return_det": ret, "eval_return_stoch": ret - 1}
        at = {"300000": {"return_mean20": ret, "seconds": 60.0}}
        return {"env": env, "model": model, "seed": seed, "at": at, "final_eval": ev, "sps": 1e3, "curve": []}

    runs = [run("Ant-v5", m, s, r + s) for s in (0, 1, 2) for m, r in (("ssm", 900.0), ("sb3", 500.0))]
    runs += [run("HalfCheetah-v5", "mlp", 0, 2000.0)]
    rows = bench.summarize(runs, ["HalfCheetah-v5", "Ant-v5"], ["ssm", "mlp", "sb3"])
    assert [(r["env"], r["name"]) for r in rows] == [
        ("HalfCheetah-v5", "mlp"),
        ("Ant-v5", "ssm"),
        ("Ant-v5", "sb3"),
    ]
    ssm = rows[1]
    assert ssm["return_300000"] == [900.0, 901.0, 902.0] and ssm["return_300000_median"] == 901.0
    assert ssm["eval_det"] == [900.0, 901.0, 902.0] and rows[2]["eval_det"] == []  # sb3: no final eval
    headline = bench.headline_of(rows, ["HalfCheetah-v5", "Ant-v5"])
    assert headline == {
        "halfcheetah_mlp_return_300k": 2000.0,
        "ant_ssm_return_300k": 901.0,
        "ant_ssm_return_1m": None,  # the key stays, empty, where the budget stopped short of 1M
        "ant_sb3_return_300k": 501.0,
    }


def test_ppo_mujoco_refuses_sb3_settings_it_does_not_have() -> None:
    bench = load_script("ppo_mujoco")
    assert bench.zoo_settings("Humanoid-v5")["batch_size"] == 256
    assert bench.zoo_settings("Ant-v5") == {}  # the zoo's MuJoCo defaults: SB3's own
    with pytest.raises(SystemExit, match="no RL Zoo PPO settings for Walker2d-v5"):
        bench.zoo_settings("Walker2d-v5")


def test_metaworld_keeps_runs_of_an_earlier_rl2_recipe_apart_from_todays() -> None:
    mw = load_script("metaworld_ml1")
    ring = {"kind": "gated_ssm", "layers": 2, "complex": False, "ring_min": 0.1}
    today = {**ring, "state_dim": 32, "conv_width": 4}  # recipes.RL2_BACKBONES["gated_ssm"]
    assert mw.primary_label() == mw.backbone_label(today)

    def run(seed: int, success: float, **extra: object) -> dict:
        return {
            "env": "reach-v3",
            "algo": "rl2",
            "backbone": "gated_ssm",
            "seed": seed,
            "env_steps": 300_000,
            "train_seconds": 1.0,
            "steps_per_second": 1.0,
            "success_before": 0.0,
            "success_after": success,
            "metaworld_success_after": success,
            **extra,
        }

    runs = [
        run(0, 0.9, commit=None),  # 645da0f's file: no record, two layers without ring_min
        run(0, 0.2, commit="4f928a6feff63d5a17b80366ece294a604aae5fd"),  # no record: ring_min 0.1 by commit
        run(1, 0.6, model=ring),
        run(0, 0.3, model=today),
        run(1, 0.5, model=today),
    ]
    assert len({mw.run_key(r) for r in runs[:2]}) == 2  # a merge keeps both seed-0 runs
    rows, headline = mw.summarise(runs)
    by_label = {r["model"]: r for r in rows}
    assert by_label["gated_ssm, earlier recipe"]["seeds"] == [0]
    assert by_label[mw.backbone_label(ring)]["seeds"] == [0, 1]  # the 4f928a6 run pools with its recipe
    assert by_label[mw.backbone_label(today)]["seeds"] == [0, 1]
    assert headline["reach_success_after_adaptation_every_episode"] == pytest.approx(0.4)  # today's only
    assert headline["reach_rl2_gated_ssm_earlier_recipe_success_after"] == pytest.approx(0.9)


def test_rl2_recipe_keeps_a_variant_name_of_two_recipes_in_two_rows() -> None:
    rr = load_script("rl2_recipe")
    wide = {"kind": "gated_ssm", "layers": 2, "complex": False, "ring_min": 0.1}
    narrow = {**wide, "state_dim": 32}

    def run(seed: int, backbone: dict, ep2: float) -> dict:
        return {
            "variant": "recipe",
            "seed": seed,
            "steps": 600_000,
            "backbone": backbone,
            "returns": [-5.0, ep2, -2.0, -2.0],
            "seconds": 1.0,
        }

    runs = [run(100, wide, -1.5), run(100, narrow, -2.0), run(101, narrow, -3.0)]
    assert rr._run_key(runs[0]) != rr._run_key(runs[1])  # a merge keeps both seed-100 runs
    table = rr.summarize(runs)
    assert set(table) == {f"recipe [{rr.backbone_label(wide)}]", f"recipe [{rr.backbone_label(narrow)}]"}
    assert table[f"recipe [{rr.backbone_label(narrow)}]"]["episode_2_per_seed"] == [-2.0, -3.0]
    assert rr.summarize(runs[1:]).keys() == {"recipe"}  # one recipe: the plain name


def test_rl2_recipe_splits_lost_goals_into_failed_searches_and_failed_memories() -> None:
    """A lost sampled goal that episode 1 reached counts as found; the table says how many of them were."""
    rr = load_script("rl2_recipe")
    n = len(rr.meta_navigation.sampled_goals(10))
    ep2 = [-2.0] * n
    ep2[0] = ep2[1] = -50.0  # two lost goals
    found = [True] * n
    found[0] = False  # the first never reached in episode 1
    r = {
        "variant": "recipe",
        "seed": 100,
        "steps": 600_000,
        "backbone": {"kind": "gated_ssm", "layers": 2, "complex": False},
        "returns": [-5.0, -2.0, -2.0, -2.0],
        "seconds": 1.0,
        "sampled_goals": 10,
        "returns_sampled": [-5.0, -6.0, -2.0, -2.0],
        "lost_sampled": 2 / n,
        "episode_2_per_goal_sampled": ep2,
        "episode_1_found_sampled": found,
    }
    row = rr.summarize([r])["recipe"]
    assert (row["sampled_lost_count"], row["sampled_lost_found_in_episode_1"]) == (2, 1)
    assert row["sampled_episode_1_found_mean"] == (n - 1) / n
    assert "1 of its 2 lost goals" in rr._sampled_table({"recipe": row}, ["recipe"])
