"""The repository is a deployable Hugging Face Space: the README's front matter names the gradio SDK (the
installed major version), ``app.py`` and Python 3.11; ``requirements.txt`` installs the CPU torch wheel the
Makefile pins and every requirement of the package and its app, with the same version ranges."""

from __future__ import annotations

import re
from pathlib import Path

import gradio
import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = {"playwright", "gradio-client"}  # the app extra's test tools (gradio brings its own client)


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's metadata block"
    return yaml.safe_load(match.group(1))


def requirements() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith(("#", "--"))]
    return {r.name: r for r in reqs}


def test_front_matter_names_gradio_app_py_and_python() -> None:
    meta = front_matter()
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file()
    assert meta["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]
    assert meta["python_version"] == "3.11" and meta["license"] == "mit"
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_requirements_cover_the_package_and_its_app() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["app"]]
    have = requirements()
    for req in wanted:
        if req.name in TEST_ONLY:
            continue
        assert req.name in have, f"requirements.txt lacks {req}"
        got = have[req.name]
        if req.name == "torch":
            assert str(got.specifier) == "==2.13.0" and req.specifier.contains("2.13.0")
        else:
            assert got.specifier == req.specifier, f"{got} != {req}"
            assert req.extras <= got.extras, f"{got} lacks the extras of {req}"
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet torch==2.13.0" in makefile  # the same torch as `make test`
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / "requirements.txt").read_text()
