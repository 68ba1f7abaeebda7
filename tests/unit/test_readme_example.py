"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_example(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["action"].shape == (1,) and (tmp_path / "my_policy" / "config.json").exists()
    assert set(namespace["results"]) == {"random policy", "standard", "hybrid", "hybrid - standard"}
    assert namespace["result"].policy is not None
