"""Imports flow one way (docs/architecture.md): a module never imports a higher layer, not even lazily
inside a function. No module imports the package root (the version lives in ``ssm_metarl/_version.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ssm_metarl"

LAYERS = [
    {"_version", "errors", "types", "seeding", "spaces", "config", "results", "checkpoint", "migrate"},
    {"models"},
    {"envs", "pretrained"},
    {"recipes"},
    {"rl"},
    {"meta"},
    {"adapt"},
    {"rsi"},
    {"demo"},
    {"app", "cli", "legacy", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _top(module: str) -> str:
    """``ssm_metarl.rl.ppo`` -> ``rl``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("ssm_metarl.")}


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert tops <= set(RANK), (
        f"give these a layer in this test and in docs/architecture.md: {tops - set(RANK)}"
    )


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts == ("__init__.py",):
            continue
        own = RANK[rel.parts[0].removesuffix(".py")]
        for module in sorted(imports_of(path)):
            target = _top(module)
            if target and RANK[target] > own:
                problems.append(f"{rel} (layer {own}) imports {module} (layer {RANK[target]})")
    assert not problems, "\n".join(problems)


def test_config_and_checkpoint_import_no_model_code():
    for name in ("config.py", "checkpoint.py"):
        assert not any(_top(m) == "models" for m in imports_of(PACKAGE / name)), name
