"""The package version has one home, ``ssm_metarl/_version.py``, equal to pyproject's; reading it (as
``checkpoint.py`` does for every checkpoint it writes) imports neither the package root nor any model."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import ssm_metarl
from ssm_metarl import _version, checkpoint

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ssm_metarl"


def test_the_version_module_agrees_with_pyproject_and_the_package_root():
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert _version.__version__ == version
    assert ssm_metarl.__version__ == version and checkpoint.package_version() == version


# The package root's __init__ is replaced by an empty module with the same __path__, so what gets imported
# is exactly what ssm_metarl.checkpoint itself imports.
WITHOUT_ROOT = """
import sys, types
root = types.ModuleType("ssm_metarl")
root.__path__ = [{package!r}]
sys.modules["ssm_metarl"] = root
import ssm_metarl.checkpoint as c
print(c.package_version())
print(sorted(m for m in sys.modules if m.startswith("ssm_metarl")))
"""


def test_checkpoint_reads_the_version_without_the_package_root_or_any_model():
    code = WITHOUT_ROOT.format(package=str(PACKAGE))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    version, modules = proc.stdout.splitlines()
    assert version == _version.__version__
    loaded = set(ast.literal_eval(modules))
    assert "ssm_metarl.models" not in loaded
    assert loaded <= {"ssm_metarl", "ssm_metarl.checkpoint", "ssm_metarl._version", "ssm_metarl.errors"}


def test_checkpoint_does_not_import_from_the_package_root():
    tree = ast.parse((PACKAGE / "checkpoint.py").read_text())
    roots = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.ImportFrom) and node.module == "ssm_metarl" and node.level == 0)
        or (isinstance(node, ast.Import) and any(a.name == "ssm_metarl" for a in node.names))
    ]
    assert not roots, f"checkpoint.py imports the package root on lines {roots}"
