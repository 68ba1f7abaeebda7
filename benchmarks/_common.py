"""Shared helpers for benchmark scripts: machine description, provenance, fair timing, result files.

Every benchmark writes ``benchmarks/results/<name>.json`` (the numbers, with machine, command, commit,
seeds and date) and ``<name>.md`` (the same numbers as a table), through :func:`write_results`. Every benchmark
parses its arguments with :func:`start_run`, which refuses a working tree with uncommitted changes unless it is
given ``--allow-dirty``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


FROM_MULTITASK_MAML: dict[str, Any] = {
    "meta_iterations": 10,
    "meta_batch_size": 8,
    "inner__episodes": 8,
    "inner__gamma": 0.99,
    "outer_epochs": 10,
    "outer_lr": 3e-4,
    "gae_lambda": 0.95,
}
"""MAML started from a multi-task PPO policy (the shipped ``cartpole-ssm``'s recipe): overrides of
``recipe("maml", family, "ssm")`` shared by make_pretrained.py, meta_cartpole.py and adaptation.py."""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, core count, library versions and platform: what a reader needs to compare numbers."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


RESULTS_PATHSPECS = (":(exclude)benchmarks/results", ":(exclude)ssm_metarl/pretrained")
"""What :func:`dirty_files` leaves out: what benchmarks write (and rewrite) as they run, the results files and
the shipped models (``make_pretrained.py`` writes one after another, each recording the commit it ran from)."""


def dirty_files() -> list[str] | None:
    """Tracked files with uncommitted changes (staged or not) outside ``benchmarks/results/`` and
    ``ssm_metarl/pretrained/``; None outside git.

    Untracked files are not counted (``git status --porcelain --untracked-files=no``): a run writes new
    results files, and other tools leave scratch files, none of which is the code that ran; a new module the
    code imports must be committed (``git add``) to count. Changes under ``benchmarks/results/`` are not
    counted either, nor under ``ssm_metarl/pretrained/``: they are what a benchmark writes, so that
    ``make bench`` can run one benchmark after another and ``make pretrained`` one model after another.
    """
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *RESULTS_PATHSPECS],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line[3:].split(" -> ")[-1] for line in out.splitlines() if line.strip()]


def _read_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty_files() else head


_COMMIT_AT_START = _read_commit()
_ALLOW_DIRTY = False


def git_commit() -> str | None:
    """HEAD's hash when the benchmark started (the code that ran), with ``-dirty`` when the working tree had
    uncommitted changes then (see :func:`dirty_files`), or when HEAD moved or the tree changed while it ran;
    None outside git. :func:`start_run` reads it again when the run starts."""
    if _COMMIT_AT_START is not None and _read_commit() != _COMMIT_AT_START:
        return _COMMIT_AT_START.removesuffix("-dirty") + "-dirty"
    return _COMMIT_AT_START


def start_run(parser: Any, argv: Sequence[str] | None = None) -> Any:
    """Every benchmark's arguments, parsed, once the tree is known to be committed: the start of every run.

    Adds ``--allow-dirty`` to ``parser`` (an ``argparse.ArgumentParser``), parses ``argv`` (the command line
    when None), and reads the commit the run starts from. A tree with uncommitted changes (:func:`dirty_files`:
    tracked files only, results files aside) is refused with a message naming the files, since the results
    file would name a commit that is not the code that ran; ``--allow-dirty`` runs anyway, and the results file
    says so (``allow_dirty: true`` in :func:`provenance`, ``--allow-dirty`` in its command, the commit marked
    ``-dirty``).
    """
    global _COMMIT_AT_START, _ALLOW_DIRTY
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run on a working tree with uncommitted changes (the results file records the commit as "
        "<hash>-dirty and allow_dirty: true); without it such a run is refused",
    )
    args = parser.parse_args(argv)
    _COMMIT_AT_START = _read_commit()
    _ALLOW_DIRTY = bool(args.allow_dirty)
    dirty = dirty_files() or []
    if dirty and not args.allow_dirty:
        listed = "".join(f"\n  {f}" for f in dirty)
        raise SystemExit(
            f"refusing to start a benchmark on a working tree with uncommitted changes in {REPO_ROOT}:{listed}\n"
            "A results file names the commit its runs came from, and these changes are not in it. Commit them, "
            "or run from a clean clone (git clone <this repository> <dir> && cd <dir>/benchmarks), or pass "
            "--allow-dirty to run anyway (the results file then records the commit as <hash>-dirty and "
            "allow_dirty: true)."
        )
    return args


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def interleaved_timings(
    fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1, inner: int = 1
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of each function, measured round-robin so that machine noise hits all alike.

    Each of the ``reps`` rounds runs every function once (``inner`` calls, averaged), in turn. Returns
    (wall-clock seconds, this thread's CPU seconds): on a shared machine the CPU time is the better
    estimate of what the code costs, the wall clock what a user waits.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(inner):
                fn()
            wall[name].append((time.perf_counter() - t0) / inner)
            cpu[name].append((time.thread_time() - c0) / inner)
    return wall, cpu


def backbone_record(model: Any) -> dict[str, Any]:
    """What a results file records of a run's backbone (a :class:`~ssm_metarl.config.ModelConfig`): kind,
    layers, for the ssm whether its diagonal is complex, the ring's fastest decay where one is set, width and
    state size where they are not the default 64, and the convolution's width where there is one (runs without
    them keep their records)."""
    b = {"kind": model.kind, "layers": model.num_layers, "complex": model.complex and model.kind == "ssm"}
    if model.ring_min is not None:
        b["ring_min"] = model.ring_min
    for field in ("hidden_dim", "state_dim"):
        if getattr(model, field) != 64:
            b[field] = getattr(model, field)
    if getattr(model, "conv_width", 0):
        b["conv_width"] = model.conv_width
    return b


def backbone_of(r: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded backbone; runs recorded before it was (commit 4416955 and earlier) used the recipe of
    their day: one real layer of ``r["model"]``."""
    return r.get("backbone", {"kind": r["model"], "layers": 1, "complex": False})


def backbone_label(b: dict[str, Any]) -> str:
    """``"ssm, complex"``, ``"gated_ssm, 2 layers, ring_min 0.1"``, ``"gated_ssm, 2 layers, state 32"``, ``"gru"``."""
    diagonal = ("complex" if b["complex"] else "real") if b["kind"] == "ssm" else ""
    ring = f"ring_min {b['ring_min']:g}" if b.get("ring_min") is not None else ""
    dims = [
        f"width {b['hidden_dim']}" if "hidden_dim" in b else "",
        f"state {b['state_dim']}" if "state_dim" in b else "",
        f"conv {b['conv_width']}" if "conv_width" in b else "",
    ]
    extra = [diagonal, f"{b['layers']} layers" if b["layers"] > 1 else "", ring, *dims]
    return b["kind"] + "".join(f", {e}" for e in extra if e)


def is_backbone(b: dict[str, Any], model: Any) -> bool:
    """Whether the recorded backbone ``b`` is the one ``model`` (a ModelConfig) describes."""
    return b == backbone_record(model)


def summarize(seconds: Sequence[float], scale: float = 1e3) -> dict[str, float]:
    """Median, quartiles and minimum of timings, multiplied by ``scale`` (1e3: milliseconds)."""
    xs = sorted(seconds)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {
        "median": xs[len(xs) // 2] * scale if len(xs) % 2 else statistics.median(xs) * scale,
        "p25": q[0] * scale,
        "p75": q[2] * scale,
        "min": xs[0] * scale,
        "reps": len(xs),
    }


def ci_cell(mean: float, half: float | None, digits: int = 1) -> str:
    """``"12.3 ± 0.8"``, or ``"12.3"`` where there is no interval (``half`` None: a single seed)."""
    return f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance() -> dict[str, Any]:
    """What every results file records of where it came from: machine, command, commit (at the start), date,
    and whether the run was let start on a tree with uncommitted changes (``allow_dirty``, :func:`start_run`)."""
    return {
        "machine": machine_info(),
        "command": command_line(),
        "commit": git_commit(),
        "date": now_iso(),
        "allow_dirty": _ALLOW_DIRTY,
    }


def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (atomically: temp file, then rename)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = (RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md")
    for path, text in zip(paths, (json.dumps(payload, indent=2) + "\n", markdown.rstrip() + "\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def add_merge_arguments(parser: Any, default_name: str) -> None:
    """``--name`` (the results file stem) and ``--merge`` (earlier results files whose runs join this one's)."""
    parser.add_argument("--name", default=default_name, help="results/<name>.{json,md,png}")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="JSON",
        help="earlier results files of this benchmark: their runs are summarised together with this "
        "invocation's (a run with the same key here replaces the earlier one); each file's command, commit, "
        "machine and date are kept under 'merged_from', and every run keeps its own commit and machine",
    )


def merge_runs(
    runs: list[dict[str, Any]], paths: Sequence[str | Path], key: Callable[[dict[str, Any]], Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs recorded in earlier results files joined with ``runs``, and where each file came from.

    ``key(run)`` says which runs are the same measurement (e.g. kind, model, seed and budget); a run of
    ``runs`` replaces an earlier one with the same key, a later file an earlier file's. Reads the files
    first, so a benchmark can merge into the file it is about to overwrite; a file's own ``merged_from``
    entries are carried along, so the provenance chain survives repeated merges. Every run is stamped with the
    commit that produced it (``commit``), the machine it ran on (``machine``, as :func:`machine_info`) and the
    invocation it belongs to (``invocation``: a date, so timings are compared within one), so a merged file
    can be checked run by run: this invocation's runs with :func:`git_commit`, this machine and now, an
    earlier file's runs that lack them with that file's ``commit``, ``machine`` and ``date`` when the file
    merged nothing itself (otherwise they are unknown: None). Raises ``ValueError`` for a file without a ``runs`` list.
    """
    merged: dict[Any, dict[str, Any]] = {}
    provenance = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not isinstance(data.get("runs"), list):
            raise ValueError(f"{path} has no 'runs' list: not a results file this benchmark can merge")
        own = (
            {} if data.get("merged_from") else data
        )  # a file that merged others: its runs' origin is unknown
        for run in data["runs"]:
            run.setdefault("commit", own.get("commit"))
            run.setdefault("machine", own.get("machine"))
            run.setdefault("invocation", own.get("date"))
            merged[key(run)] = run
        provenance.extend(data.get("merged_from", []))  # what that file had merged itself
        provenance.append(
            {
                "file": str(path),
                "command": data.get("command"),
                "commit": data.get("commit"),
                "machine": data.get("machine"),
                "date": data.get("date"),
                "runs": len(data["runs"]),
                "minutes_total": data.get("minutes_total", data.get("headline", {}).get("minutes")),
            }
        )
    here, today = (machine_info(), now_iso()) if runs else (None, None)
    for run in runs:
        run.setdefault("commit", git_commit())
        run.setdefault("machine", here)
        run.setdefault("invocation", today)
        merged[key(run)] = run
    return list(merged.values()), provenance


def merged_markdown(merged_from: list[dict[str, Any]]) -> str:
    """The lines under a results table that say which earlier runs it merged (see :func:`merge_runs`)."""
    return "".join(
        f"\n\nMerged runs from `{m['file']}`: {m['runs']} runs by `{m['command']}` (commit "
        f"{short_commit(m['commit'])}, {m['date']}, {m['minutes_total'] or 0:.0f} minutes)."
        for m in merged_from
    )


def short_commit(commit: str | None) -> str:
    """A commit's first 7 digits, keeping the ``-dirty`` mark of a run from a tree with uncommitted changes."""
    text = str(commit)
    return text[:7] + ("-dirty" if text.endswith("-dirty") else "")
