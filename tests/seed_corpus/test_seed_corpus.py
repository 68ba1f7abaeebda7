"""Every code block and command line of the seed documents, run as corpus.toml says (see its header).

The documents are copies (``seeds/``) of ``../shared/seeds`` so that a clean checkout tests them; when the
originals are present they must match. Snippets are extracted afresh from the documents: a snippet with no
row, or a row whose snippet is gone, fails. Budgets are shrunk by ``SSM_METARL_BUDGET``, never by editing a
snippet.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tomllib
import torch
from extract import COMMAND_START, SEEDS, fenced, has_fences, region, seed_text
from inprocess import run_cli

from ssm_metarl.config import BUDGET_ENV
from ssm_metarl.migrate import translate_imports

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "seeds"
ROWS: list[dict[str, Any]] = tomllib.loads((Path(__file__).parent / "corpus.toml").read_text())["row"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BUDGET = "0.002"
OUTCOMES = {"as-written", "changed", "refused", "issue", "outside", "text"}
PY_CHANGES = ("prelude", "replace", "code")
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.md"))


# ----- the table itself -------------------------------------------------------------------------------
def test_seed_documents_are_the_shared_ones():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (a checkout outside the workplace): the copies are the corpus")
    originals = {p.name.split("_")[0]: p for p in SHARED.glob("*.txt")}
    assert sorted(originals) == SEED_IDS
    for seed, path in originals.items():
        assert path.read_text(encoding="utf-8") == seed_text(seed), f"seeds/{seed}.md differs from {path}"


def test_rows_are_well_formed():
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    for r in ROWS:
        assert r["seed"] in SEED_IDS and r["kind"] in ("shell", "python", "text"), r["id"]
        assert r["outcome"] in OUTCOMES, r["id"]
        assert r.get("note", "").strip(), f"{r['id']}: every row says what happens, in `note`"
        if r["outcome"] == "as-written":
            assert not any(k in r for k in (*PY_CHANGES, "run")), f"{r['id']}: as-written rows change nothing"
        if r["outcome"] == "changed":
            assert any(k in r for k in (*PY_CHANGES, "run", "verify")), f"{r['id']}: the change must run"
        if r["outcome"] == "issue":
            assert isinstance(r.get("issue"), int) and r.get("gone"), r["id"]
        if r["outcome"] == "refused":
            assert r.get("match"), f"{r['id']}: a refusal names its message"
        if r["outcome"] == "text":
            assert r["kind"] == "text", r["id"]


def test_every_snippet_has_a_row_and_every_row_its_snippet():
    for seed in SEED_IDS:
        rows = [r for r in ROWS if r["seed"] == seed]
        if has_fences(seed):
            found = Counter((s.kind, s.key) for s in fenced(seed))
            covered: Counter[tuple[str, str]] = Counter()
            for r in rows:
                covered[r["kind"], r["key"]] += r.get("occurrences", 1)
            assert found == covered, {
                "snippets without a row": found - covered,
                "rows without a snippet": covered - found,
            }
        else:
            check_flat_seed(seed, rows)


def check_flat_seed(seed: str, rows: list[dict[str, Any]]) -> None:
    """Seed 003 lost its fences: every command line and every Python import line must lie in a row."""
    text = seed_text(seed)
    regions = []
    for r in rows:
        if r["kind"] == "python":
            regions.append(set(region(seed, r["start"], r["end"]).splitlines()))
        else:
            assert text.count(r["key"]) >= r.get("nth", 1), (
                f"{r['id']}: {r['key']!r} is not in seeds/{seed}.md"
            )
    keys = [r["key"] for r in rows if r["kind"] == "shell"]
    for line in text.splitlines():
        if COMMAND_START.match(line):
            assert any(line.startswith(k) for k in keys), f"seeds/{seed}.md: no row for the command {line!r}"
        if re.match(r"(import \w|from [\w.]+ import )", line):
            assert any(line in reg for reg in regions), f"seeds/{seed}.md: no row for the code at {line!r}"


# ----- running the rows -------------------------------------------------------------------------------
def source(row: dict[str, Any]) -> str:
    """The snippet a row names, as the document has it."""
    if "start" in row:
        return region(row["seed"], row["start"], row["end"])
    if row["kind"] == "shell":
        return row["key"]
    same = [s for s in fenced(row["seed"]) if (s.kind, s.key) == (row["kind"], row["key"])]
    return same[row.get("nth", 1) - 1].source


def runs_here(row: dict[str, Any]) -> bool:
    if row["outcome"] in ("text", "issue"):
        return "gone" in row
    if row["outcome"] == "outside":
        return any(k in row for k in ("run", "verify"))
    return True


RUNNABLE = [r for r in ROWS if runs_here(r)]


@pytest.mark.parametrize("row", RUNNABLE, ids=[r["id"] for r in RUNNABLE])
def test_row(row: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "gone" in row:
        assert not (ROOT / row["gone"]).exists(), (
            f"{row['gone']} exists now: turn row {row['id']} of corpus.toml into a check of it"
        )
    if "verify" in row:
        exec(compile(row["verify"], f"<{row['id']} verify>", "exec"), {"ROOT": ROOT, "PYPROJECT": PYPROJECT})
    if row["outcome"] == "issue":
        return
    if row["kind"] == "python":
        run_python(row, tmp_path, monkeypatch)
    elif "run" in row or (row["outcome"] != "outside" and "verify" not in row):
        run_shell(row, tmp_path)


def run_python(row: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = source(row)
    if "code" in row:  # a reformatted snippet: the same lines, only indented differently
        code = row["code"].strip("\n")
        assert [ln.strip() for ln in code.splitlines()] == [ln.strip() for ln in text.splitlines()], (
            f"{row['id']}: `code` must differ from the document only in indentation"
        )
    else:
        code = text
        for old, new in row.get("replace", []):
            assert old in code, f"{row['id']}: {old!r} is not in the snippet"
            code = code.replace(old, new)
    program = "\n".join([row.get("prelude", ""), translate_imports(code), row.get("check", "")])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(BUDGET_ENV, BUDGET)
    torch.manual_seed(0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if row["outcome"] == "refused":
            with pytest.raises(Exception, match=row["match"]) as info:
                exec(compile(program, f"<{row['id']}>", "exec"), {"__name__": "__seed__"})
            assert type(info.value).__name__ == row.get("error", type(info.value).__name__)
        else:
            exec(compile(program, f"<{row['id']}>", "exec"), {"__name__": "__seed__"})
    if "stdout" in row:
        assert re.search(row["stdout"], out.getvalue()), f"{row['id']} printed:\n{out.getvalue()}"


def shell_env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], BUDGET_ENV: BUDGET, **extra}


def run_shell(row: dict[str, Any], tmp_path: Path) -> None:
    for script in ("main.py", "app.py", "rsi_control.sh"):  # the seed commands run from the project's root
        (tmp_path / script).symlink_to(ROOT / script)
    command = row.get("run", row["key"]).format(root=ROOT)
    if row.get("serves"):
        serves_page(command, tmp_path)
        return
    entry = in_process_entry(command)
    if entry is not None and "after" not in row:
        args, main_py = entry
        proc = run_cli(args, tmp_path, ok=False, env={BUDGET_ENV: BUDGET}, main_py=main_py)
        check_shell_output(row, command, proc, tmp_path)
        return
    try:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=shell_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        if "after" in row:
            subprocess.run(
                ["bash", "-c", row["after"]], cwd=tmp_path, env=shell_env(), timeout=900, check=True
            )
    check_shell_output(row, command, proc, tmp_path)


def in_process_entry(command: str) -> tuple[list[str], bool] | None:
    """``(args, main_py)`` when ``command`` is one plain ``ssm-metarl ...`` or ``python main.py ...`` call (no
    shell syntax), which then runs through its entry point in this process; None for anything else."""
    if re.search(r"[|;&<>$`\\]", command):
        return None
    args = shlex.split(command)
    if args[:1] == ["ssm-metarl"]:
        return args[1:], False
    if args[:2] == ["python", "main.py"]:
        return args[2:], True
    return None


def check_shell_output(row: dict[str, Any], command: str, proc: Any, tmp_path: Path) -> None:
    """The exit status, the patterns and the files a shell row expects."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == row.get("exit", 0), f"{command} exited {proc.returncode}:\n{output[-3000:]}"
    if row["outcome"] != "refused":
        assert "Traceback" not in proc.stderr, output[-3000:]
    for pattern in [row.get("expect"), row.get("match")]:
        if pattern:
            assert re.search(pattern, output), f"{command}: no {pattern!r} in\n{output[-3000:]}"
    for name in row.get("files", []):
        assert (tmp_path / name).exists(), f"{command} wrote no {name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serves_page(command: str, cwd: Path) -> None:
    port = free_port()
    env = shell_env(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180  # not a speed assertion: how long a busy machine may take to start
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200 and b"gradio" in page.read().lower()
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"{command} served nothing on port {port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
