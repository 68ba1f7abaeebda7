"""Seed names -> ours (``ssm_metarl.migrate``), the seed class names as classes, and main.py's refusals."""

from __future__ import annotations

import importlib

import pytest

import ssm_metarl
from ssm_metarl import ActorCritic, ImprovedSSM, SSMMetaPolicy
from ssm_metarl.legacy import DEFAULT_MODE, build_parser, main, to_command
from ssm_metarl.migrate import NOT_PORTED, SEED_NAMES, MigrationError, translate_imports, where


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in SEED_NAMES.items() for n in names])
def test_every_seed_name_is_defined_where_the_table_says_and_exported(module, name):
    ours = importlib.import_module(where(module, name))
    assert getattr(ours, name) is getattr(ssm_metarl, name)


def test_translate_imports_rewrites_seed_imports_only():
    code = "import torch\nfrom core.ssm import StateSpaceModel\n    from meta_rl.meta_maml import (MetaMAML, TaskBatch)\n"
    out = translate_imports(code)
    assert (
        out
        == "import torch\nfrom ssm_metarl import StateSpaceModel\n    from ssm_metarl import MetaMAML, TaskBatch\n"
    )
    ns: dict[str, object] = {}
    exec(translate_imports("from adaptation.test_time_adaptation import Adapter as A"), ns)
    assert ns["A"] is ssm_metarl.Adapter


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("from core.ssm import S4", "had no 'S4'"),
        ("from rsi_daemon import Daemon", "ssm-metarl rsi start"),
        ("import core.ssm", "from ssm_metarl import"),
        ("from core.nothing import X", "not a seed module"),
    ],
)
def test_unknown_seed_imports_fail_with_what_to_use(code, message):
    with pytest.raises(MigrationError, match=message):
        translate_imports(code)


def test_not_ported_modules_say_why():
    assert all(reason for reason in NOT_PORTED.values())


def test_seed_class_names_are_classes():
    m = ImprovedSSM(input_dim=4, action_dim=2, discrete=True, hidden_dim=16, state_dim=8)
    assert isinstance(m, ImprovedSSM) and isinstance(m, ActorCritic) and m.spec["kind"] == "improved"

    class Mine(SSMMetaPolicy):
        pass

    p = Mine(state_dim=84, action_dim=4)
    assert isinstance(p, SSMMetaPolicy) and p.obs_dim == 84 and p.action_space.shape == (4,)
    assert SSMMetaPolicy(state_dim=3, action_dim=5, discrete=True).action_space.n == 5
    with pytest.raises(ValueError, match="observation size 2"):
        SSMMetaPolicy(state_dim=84, action_dim=4, family="navigation-2d")


def test_main_without_mode_meta_trains():
    args = build_parser().parse_args(["--env_name", "CartPole-v1", "--num_epochs", "20"])
    cmd = to_command(args)
    assert DEFAULT_MODE == "meta_rl" and cmd[:2] == ["meta-train", "--method"]
    assert cmd[cmd.index("--meta_iterations") + 1] == "20"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--mode", "policy_gradient", "--num_epochs", "10"],
            "run `python main.py --mode meta_rl --epochs 10`",
        ),
        (["--env_name", "CartPole-v1", "--episodes", "5"], "without --mode, main.py runs --mode meta_rl"),
        (["--mode", "meta_rl", "--lr", "0.1"], "--outer_lr"),
        (["--mode", "ppo", "--epochs", "3", "--tasks_per_epoch", "2"], "run `python main.py --mode meta_rl"),
        (["--mode", "meta_rl", "--nm_epochs", "3"], "did you mean --num_epochs"),
    ],
)
def test_main_refuses_ignored_and_unknown_flags(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_migrating_page_lists_every_seed_name_and_is_linked():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "migrating.md").read_text()
    for module, names in SEED_NAMES.items():
        for name in names:
            assert module in page and name in page, (module, name)
    for module in NOT_PORTED:
        assert module in page, module
    assert "docs/migrating.md" in (root / "README.md").read_text()
    assert "migrating.md" in (root / "mkdocs.yml").read_text()
