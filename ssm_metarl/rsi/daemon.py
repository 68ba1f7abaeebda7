"""The self-improvement loop as a background process: start / status / logs / stop.

``start`` writes the config to ``<out_dir>/rsi-config.json`` and launches ``python -m ssm_metarl.rsi.daemon
<out_dir>`` in its own session. The child logs to ``rsi.log`` (rotated at 1 MB, 3 old files kept), builds the
loop (which trains the starting incumbent on a fresh folder, or resumes), and only then writes ``rsi.pid``;
while it initialises, ``rsi.starting`` holds its pid. SIGTERM asks the loop to finish the cycle in flight
and exit; ``stop --force`` escalates to SIGKILL, after which the next ``start`` resumes from the last
finished cycle. A pid file whose process is gone (or is another program: pid reuse) is stale: ``status``
says so and removes it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssm_metarl.checkpoint import atomic_file_write
from ssm_metarl.config import RSIConfig
from ssm_metarl.errors import ConfigError, InputError
from ssm_metarl.rsi import store

PID, STARTING, LOG, CONFIG = "rsi.pid", "rsi.starting", "rsi.log", "rsi-config.json"
MODULE = "ssm_metarl.rsi.daemon"


@dataclass(frozen=True)
class DaemonState:
    state: str
    """running, initialising, stopped (no process) or stale (a pid file without its process, now removed)"""
    pid: int | None
    summary: dict[str, Any] | None
    """the manifest's cycle, failures, env steps, incumbent and stop reason (None before the first init)"""
    last_decisions: list[dict[str, Any]]


def _alive(pid: int) -> bool:
    """The process exists and is this daemon (not another program that reused the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":  # a zombie has exited
        return False
    return MODULE in cmdline


def _read_pid(path: Path) -> int | None:
    if not path.exists():
        return None
    try:
        return int(json.loads(path.read_text())["pid"])
    except (ValueError, KeyError, TypeError):
        return -1  # a damaged pid file: treated as stale


def daemon_state(out: str | Path) -> DaemonState:
    out = Path(out)
    state, pid = "stopped", None
    for name, live in ((PID, "running"), (STARTING, "initialising")):
        found = _read_pid(out / name)
        if found is None:
            continue
        if found > 0 and _alive(found):
            state, pid = live, found
            break
        (out / name).unlink(missing_ok=True)
        state, pid = "stale", found if found > 0 else None
    manifest = store.read_manifest(out) if out.is_dir() else None
    summary = None
    if manifest is not None:
        summary = {k: manifest[k] for k in ("cycle", "failures", "env_steps", "stopped")}
        summary["incumbent"] = {k: manifest["incumbent"][k] for k in ("cycle", "hash")}
        if "pareto_front" in manifest:
            summary["pareto_front"] = manifest["pareto_front"]
    decisions = store.read_decisions(out) if out.is_dir() else []
    return DaemonState(state, pid, summary, decisions[-5:])


def folder_config(out: str | Path) -> RSIConfig | None:
    """The configuration of the loop in ``out``: the last daemon start's ``rsi-config.json``, else the one
    the manifest was made with (a loop made by ``rsi run``); None when ``out`` holds neither.

    A start (or run, or worker) on such a folder resumes it with this configuration: flags not given keep
    the folder's values (the CLI parses them against it), and a given flag that changes what the loop
    belongs to is refused by name (:func:`check_resumes`). ``restart_stopped`` is not kept: it is asked for
    on each start, after reading why the loop stopped."""
    out = Path(out)
    path = out / CONFIG
    try:
        if path.exists():
            data = json.loads(path.read_text())
        else:
            manifest = store.read_manifest(out) if out.is_dir() else None
            if manifest is None or "config" not in manifest:
                return None
            data = manifest["config"]
        return RSIConfig.from_dict(data).replace(restart_stopped=False)
    except (ValueError, ConfigError) as e:
        raise InputError(f"cannot read the loop's configuration in {out}: {e}; use another --out_dir") from e


def check_resumes(cfg: RSIConfig) -> None:
    """Refuse ``cfg`` on a folder whose loop was made with another configuration, naming each flag that
    differs (``--candidates 8 differs from the folder's 4``); budgets and limits may change."""
    from ssm_metarl.rsi.state import check_same_config, config_key

    out = Path(cfg.out_dir)
    manifest = store.read_manifest(out) if out.is_dir() else None
    if manifest is not None and "config_key" in manifest:
        check_same_config(out, cfg, manifest["config_key"])
    elif (folder := folder_config(out)) is not None:
        check_same_config(out, cfg, config_key(folder))


def start(cfg: RSIConfig, wait_s: float = 900.0) -> DaemonState:
    """Launch the daemon on ``cfg.out_dir``; wait up to ``wait_s`` for it to finish initialising. On a folder
    that holds a loop, ``cfg`` must be that loop's configuration (:func:`check_resumes`)."""
    out = Path(cfg.out_dir)
    current = daemon_state(out)
    if current.state in ("running", "initialising"):
        raise InputError(
            f"the self-improvement daemon is already {current.state} on {out} (pid {current.pid})"
        )
    check_resumes(cfg)
    manifest = store.read_manifest(out) if out.is_dir() else None
    if manifest is not None and manifest.get("stopped") and not cfg.restart_stopped:
        raise InputError(
            f"the loop on {out} stopped: {manifest['stopped']}. Read {out / store.DECISIONS}, then start it "
            "with --restart_stopped to continue, or use another --out_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    atomic_file_write(out / CONFIG, lambda tmp: Path(tmp).write_text(text))
    with (out / "rsi.stderr").open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(out.resolve())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if (out / PID).exists():
            return daemon_state(out)
        code = proc.poll()
        if code is not None:
            raise InputError(f"the daemon exited ({code}) while it initialised: {_tail(out, 15)}")
        time.sleep(0.2)
    return daemon_state(out)


def stop(out: str | Path, timeout_s: float = 600.0, force: bool = False) -> str:
    """SIGTERM (the cycle in flight finishes), wait up to ``timeout_s``; ``force``: then SIGKILL."""
    st = daemon_state(out)
    if st.state not in ("running", "initialising") or st.pid is None:
        return f"no self-improvement daemon is running on {out} ({st.state})"
    os.kill(st.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(st.pid):
            return f"stopped (pid {st.pid})"
        time.sleep(0.2)
    if not force:
        return f"asked pid {st.pid} to stop; it is finishing its cycle (stop --force kills it)"
    os.kill(st.pid, signal.SIGKILL)
    for name in (PID, STARTING):
        (Path(out) / name).unlink(missing_ok=True)
    return f"killed (pid {st.pid}); the next start resumes after the last finished cycle"


def _tail(out: Path, lines: int) -> str:
    texts = [(out / n).read_text(errors="replace") for n in (LOG, "rsi.stderr") if (out / n).exists()]
    return "\n".join("\n".join(t.splitlines()[-lines:]) for t in texts)


def log_lines(out: str | Path, lines: int = 40, follow: bool = False) -> Iterator[str]:
    """The last ``lines`` lines of the daemon's log (without newlines); ``follow``: then each new line, for as
    long as the daemon runs. The CLI prints them."""
    path = Path(out) / LOG
    if not path.exists():
        raise InputError(
            f"{path} does not exist: no daemon has run on {out}; start one with `ssm-metarl rsi start` "
            "(./rsi_control.sh start)"
        )
    yield from path.read_text(errors="replace").splitlines()[-lines:]
    if not follow:
        return
    with path.open(errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while daemon_state(out).state in ("running", "initialising"):
            line = f.readline()
            if line:
                yield line.rstrip("\n")
            else:
                time.sleep(0.5)


def child_main(out_dir: str) -> int:
    """The daemon process: log, build the loop, write the pid file, run, clean up."""
    from ssm_metarl.rsi.loop import SelfImprovement
    from ssm_metarl.seeding import set_training_threads

    out = Path(out_dir)
    handler = logging.handlers.RotatingFileHandler(out / LOG, maxBytes=1_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log = logging.getLogger("ssm_metarl.rsi.daemon")
    set_training_threads(1)
    me = json.dumps({"pid": os.getpid(), "started": time.time()})
    atomic_file_write(out / STARTING, lambda tmp: Path(tmp).write_text(me))
    asked = {"stop": False}
    loop_box: list[Any] = []

    def on_term(*_: Any) -> None:  # finish the cycle in flight (or the initialisation), then exit
        asked["stop"] = True
        for x in loop_box:
            x.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        cfg = RSIConfig.from_dict(json.loads((out / CONFIG).read_text()))
        log.info("initialising on %s", out)
        loop = SelfImprovement(cfg)
        loop_box.append(loop)
        loop.stop_requested = asked["stop"]
        atomic_file_write(out / PID, lambda tmp: Path(tmp).write_text(me))
        (out / STARTING).unlink(missing_ok=True)
        log.info("running: cycle %d, incumbent score %.4f", loop.state["cycle"], loop.incumbent_metrics.score)
        reason = loop.run(
            on_cycle=lambda r: log.info(
                "cycle %d: %s (incumbent %.4f, best %s)", r.cycle, r.outcome, r.incumbent_score, r.best_score
            )
        )
        log.info("ended: %s", reason)
        return 0
    except Exception:
        log.exception("the daemon failed")
        raise
    finally:
        for name in (PID, STARTING):
            (out / name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
