"""Run the command lines in this process: ``ssm-metarl ...`` through :func:`ssm_metarl.cli.main` and
``python main.py ...`` through :func:`ssm_metarl.legacy.main`, with stdout and stderr captured.

A subprocess pays torch's import (seconds) for every command; where the process boundary is not what a test
checks, this runs the same entry point on the same argument list instead. An exception that escapes the entry
point is a traceback a user would have seen: it fails the test rather than being turned into an exit status.
Tests that check the boundary itself (the console script, ``python main.py``, signals) keep a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Ran:
    """What a finished command left: its exit status and what it printed (as subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _working_dir(cwd: str | Path | None, env: dict[str, str] | None) -> Iterator[None]:
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env is not None:
            os.environ.update(env)
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def run_cli(
    args: Sequence[str],
    cwd: str | Path | None = None,
    ok: bool = True,
    env: dict[str, str] | None = None,
    main_py: bool = False,
) -> Ran:
    """``ssm-metarl <args>`` (or ``python main.py <args>`` with ``main_py``) in this process, in ``cwd`` with
    ``env`` added to the environment; with ``ok`` the exit status must be 0."""
    from ssm_metarl.cli import main
    from ssm_metarl.legacy import main as legacy_main

    out, err = io.StringIO(), io.StringIO()
    with _working_dir(cwd, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if main_py:
            code = legacy_main(list(args), announce=lambda line: print(line, flush=True))
        else:
            code = main(list(args))
    ran = Ran(int(code), out.getvalue(), err.getvalue())
    if ok:
        assert ran.returncode == 0, ran.stderr[-3000:]
    return ran
