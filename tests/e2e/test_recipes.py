"""One recipe per family: the CLI's defaults are the recipes the benchmarks (and so the README's numbers) use,
and the README's quick-tour commands, run as written at a tiny budget, train exactly those configs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from inprocess import run_cli

from ssm_metarl import cli
from ssm_metarl.config import scale_budget
from ssm_metarl.envs.tasks import TASK_FAMILIES, get_family
from ssm_metarl.pretrained import list_pretrained, pretrained_info
from ssm_metarl.recipes import recipe

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def _without_out_dir(cfg):
    return cfg.replace(run__out_dir=None)


@pytest.mark.parametrize("family", sorted(TASK_FAMILIES))
@pytest.mark.parametrize("method", ["maml", "rl2"])
def test_meta_train_defaults_are_the_family_recipe(family, method):
    parsed = cli.parse(["meta-train", "--method", method, "--tasks", family])
    assert _without_out_dir(parsed.config) == recipe(method, family)
    assert parsed.config.run.out_dir == f"runs/meta-{method}-{family}-{parsed.config.model.kind}-s0"


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "HalfCheetah-v5", "Acrobot-v1"])
@pytest.mark.parametrize("algo", ["ppo", "pg"])
def test_train_defaults_are_the_env_recipe(env_id, algo):
    parsed = cli.parse(["train", "--algo", algo, "--env", env_id])
    assert _without_out_dir(parsed.config) == recipe(algo, env_id)
    one = cli.parse(["train", "--algo", algo, "--env", env_id, "--model", "gru", "--seed", "3"]).config
    assert one.model.kind == "gru" and one.run.seed == 3 and one.run.out_dir.endswith(f"gru-{algo}-s3")
    assert _without_out_dir(one) == recipe(algo, env_id, "gru").replace(run__seed=3)


@pytest.mark.parametrize("kind", ["ssm", "gated_ssm", "gru", "mlp"])
def test_memory_tasks_get_the_backbones_chosen_on_recall(kind, monkeypatch):
    """PPO on a POPGym id takes ``MEMORY_BACKBONES``; the same env under another id keeps the plain recipe."""
    from ssm_metarl import recipes

    monkeypatch.setattr(recipes, "is_discrete", lambda env_id: True)  # popgym is an optional extra
    memory = recipe("ppo", "popgym-RepeatPreviousEasy-v0", kind)
    plain = recipe("ppo", "RepeatPreviousEasy-v0", kind)
    assert recipes.is_memory_task(memory.env_id) and not recipes.is_memory_task(plain.env_id)
    assert memory.model == plain.model.replace(**recipes.MEMORY_BACKBONES.get(kind, {}))
    assert memory.replace(env_id="x", model=plain.model) == plain.replace(env_id="x")
    if kind == "ssm":
        assert memory.model.complex and memory.model.num_layers == 2
        assert not plain.model.complex and plain.model.num_layers == 1
    if kind == "gru":
        assert memory.model == plain.model  # not named: the recipe's one layer


@pytest.mark.parametrize("name", list_pretrained())
def test_adapt_defaults_are_the_family_adapt_recipe(name):
    from ssm_metarl.pretrained import load_pretrained

    family = pretrained_info(name)["family"]
    kind = load_pretrained(name).describe()["kind"]
    assert cli.parse(["adapt", name]).config.adapt == recipe("adapt", family, kind)


def test_the_ssm_adapts_on_navigation_with_its_own_step_sizes(tmp_path):
    """navigation-2d MAML with the ssm takes ``MAML_SSM`` (a small inner lr, learned step sizes); a saved ssm
    policy of that family is adapted with it by default, an mlp one with the mlp's lr."""
    from ssm_metarl.checkpoint import save_policy
    from ssm_metarl.errors import ConfigError
    from ssm_metarl.meta.maml import build_meta_policy
    from ssm_metarl.recipes import adapt_recipe

    ssm, mlp = recipe("maml", "navigation-2d", "ssm"), recipe("maml", "navigation-2d", "mlp")
    assert (ssm.inner.lr, ssm.inner.later_lr, ssm.model.learned_step_sizes) == (0.03, 0.015, True)
    assert (mlp.inner.lr, mlp.inner.later_lr, mlp.model.learned_step_sizes) == (1.0, 0.5, False)
    assert ssm.replace(inner=mlp.inner, model=mlp.model) == mlp  # nothing else differs
    assert not recipe("maml", "halfcheetah-dir", "ssm").model.learned_step_sizes  # navigation only
    for cfg in (ssm, mlp):
        path = save_policy(
            tmp_path / cfg.model.kind,
            build_meta_policy(cfg, get_family("navigation-2d")),
            {"family": "navigation-2d"},
        )
        assert cli.parse(["adapt", str(path)]).config.adapt == cfg.inner.replace(steps=3)
    with pytest.raises(ConfigError, match="unknown model kind"):
        adapt_recipe("navigation-2d", "rnn")


def test_benchmarks_start_from_the_recipes():
    """Every training script takes its configs from ``recipe(...)``; none builds a config of its own."""
    for script in sorted(BENCHMARKS.glob("*.py")):
        text = script.read_text()
        for cls in ("PPOConfig(", "MAMLConfig(", "PGConfig(", "AdaptConfig("):
            assert cls not in text, (
                f"{script.name} builds {cls[:-1]} by hand instead of starting from a recipe"
            )


def quick_tour() -> list[str]:
    block = (
        (ROOT / "README.md").read_text().split("## Quick tour", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    )
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_quick_tour_runs_as_written_and_trains_the_recipes(tmp_path):
    lines = [c for c in quick_tour() if not re.search(r"ssm-metarl (app|demo)\b", c)]
    assert len(lines) >= 9, lines
    for line in lines:
        # `ssm-metarl <args>` and `python main.py <args>`, each through its entry point in this process
        args = shlex.split(line.replace(".venv/bin/", ""))
        assert args[0] == "ssm-metarl" or args[:2] == ["python", "main.py"], line
        main_py = args[0] == "python"
        proc = run_cli(args[2 if main_py else 1 :], tmp_path, env={cli.BUDGET_ENV: "0.01"}, main_py=main_py)
        if "SSM_METARL_BUDGET=0.01" not in proc.stdout:
            assert args[1] == "evaluate", line  # every other command has a budget, and says it was scaled
    runs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")}
    expected = {
        "CartPole-v1-ssm-ppo-s0": recipe("ppo", "CartPole-v1", "ssm"),
        "CartPole-v1-ssm-pg-s0": recipe("pg", "CartPole-v1").replace(episodes=800),
        "meta-maml-navigation-2d-mlp-s0": recipe("maml", "navigation-2d", "mlp"),
        "meta-rl2-bandit-ssm-s0": recipe("rl2", "bandit", "ssm"),
        "main-policy_gradient-CartPole-v1-s0": recipe("pg", "CartPole-v1"),
        "main-improved-HalfCheetah-v5-s0": recipe("ppo", "HalfCheetah-v5", "improved").replace(
            lr=3e-4, total_steps=300_000
        ),
        "main-meta_rl-CartPole-v1-s0": recipe("maml", "cartpole-physics", "ssm").replace(
            meta_iterations=100, meta_batch_size=5, inner__lr=0.01, outer_lr=0.001, inner__episodes=10
        ),
    }
    for folder, cfg in expected.items():
        assert folder in runs, sorted(runs)
        want = scale_budget(cfg, 0.01).replace(run__out_dir=f"runs/{folder}").to_dict()
        assert runs[folder]["config"] == json.loads(json.dumps(want)), folder
