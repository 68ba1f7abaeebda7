"""The version is one number everywhere a user reads it, and the package says how to cite and license it."""

import re
from pathlib import Path

import ssm_metarl

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_in_package_pyproject_citation_and_changelog():
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert ssm_metarl.__version__ == version
    assert re.search(rf"^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
