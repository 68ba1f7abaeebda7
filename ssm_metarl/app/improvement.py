"""The "Self-improvement" tab: run a few cycles of :mod:`ssm_metarl.rsi` in a background job and watch them,
or attach to a loop (the daemon's, or any other) by its folder.

:func:`run_improvement` builds an :class:`~ssm_metarl.config.RSIConfig` from ``recipe("maml", family)`` and a
budget preset, and runs :class:`~ssm_metarl.rsi.SelfImprovement` in a thread with the Meta-training tab's
job runner (:func:`~ssm_metarl.app.jobs.run_job`): one job per session (``AppSession.busy``), the session's
stop flag (Stop sets the loop's ``stop_requested``: the cycle in flight finishes), a folder of its own
under the session's folder (``<runs_dir>/<session>/rsi-N``). What the page shows, the incumbent's metrics per cycle, the incumbent and
every decision, is read back from that folder (:func:`loop_view`: the manifest and ``decisions.jsonl``), so a
run of this tab and a daemon attached by :func:`attach` look the same. No decision is made here: the loop
decides, this module reads what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from matplotlib.figure import Figure

from ssm_metarl.app import plots
from ssm_metarl.app.jobs import Done, run_job, stop_job
from ssm_metarl.app.session import AppSession, UserError
from ssm_metarl.config import MODEL_KINDS, ModelKind, RSIConfig
from ssm_metarl.envs.tasks import TASK_FAMILIES, get_family
from ssm_metarl.errors import InputError
from ssm_metarl.recipes import recipe

JOB = "self-improvement"
"""``AppSession.job`` while this tab's loop runs."""
RSI_FAMILIES = sorted(f for f in TASK_FAMILIES if get_family(f).out_of_range and get_family(f).validation)
"""The families the loop can run on: MAML families with validation tasks (every choice is made on them) and
out-of-range tasks (the generalisation metric)."""
DEFAULT_FAMILY = "navigation-2d"
KINDS = list(MODEL_KINDS)
MAX_CYCLES = 10
MAX_CANDIDATES = 5
DECISION_HEADERS = ["cycle", "decision", "score", "reason"]
INCUMBENT_HEADERS = ["cycle", "score", "return", "speed", "generalisation", "efficiency", "stability"]


@dataclass(frozen=True)
class Budget:
    """A preset of the loop's budgets: the starting incumbent's training, each candidate's, the measuring."""

    start_iterations: int
    meta_batch: int
    episodes: int
    """episodes per task per inner step (training and measuring)"""
    hidden_dim: int
    num_layers: int
    candidate_iterations: int
    eval_tasks: int
    eval_seeds: int
    oor_tasks: int
    search: tuple[str, ...] | None
    """what Optuna may change; None: everything (RSIConfig's default)"""
    max_failures: int
    """consecutive failed cycles before the emergency stop"""


BUDGETS: dict[str, Budget] = {
    "tiny: a smoke test (seconds)": Budget(
        1, 2, 2, 8, 1, 1, 2, 2, 1, ("outer_lr_scale", "inner_lr_scale"), 1000
    ),
    "quick: about a minute": Budget(5, 4, 8, 16, 2, 2, 3, 2, 2, None, 3),
    "small: a few minutes": Budget(10, 10, 10, 32, 2, 3, 5, 3, 3, None, 3),
}
"""The tab's budget presets, fastest first (measured times: docs/app.md). A real run (``ssm-metarl rsi
start``, the CLI's defaults) is for the daemon, which this tab can attach to."""
DEFAULT_BUDGET = "quick: about a minute"


@dataclass(frozen=True)
class ImproveRequest:
    """What the Self-improvement tab's controls say."""

    family: str = DEFAULT_FAMILY
    kind: str = "mlp"
    """the backbone of the starting incumbent (``recipe("maml", family)`` uses mlp, as ``ssm-metarl rsi`` does)"""
    cycles: int = 3
    candidates: int = 2
    budget: str = DEFAULT_BUDGET
    seed: int = 0


def check_request(req: ImproveRequest) -> None:
    """UserError for a request that cannot run, saying what to change."""
    if req.family not in RSI_FAMILIES:
        raise UserError(
            f"The self-improvement loop cannot run on {req.family!r}: it needs a family with validation and "
            f"out-of-range tasks; pick one of {', '.join(RSI_FAMILIES)}."
        )
    if req.kind not in KINDS:
        raise UserError(f"Unknown model kind {req.kind!r}; pick one of {', '.join(KINDS)}.")
    if req.budget not in BUDGETS:
        raise UserError(f"Unknown budget {req.budget!r}; pick one of: {'; '.join(BUDGETS)}.")
    if not 1 <= req.cycles <= MAX_CYCLES:
        raise UserError(
            f"Run 1 to {MAX_CYCLES} cycles from this tab (you asked for {req.cycles}); for more, start the "
            "daemon (`ssm-metarl rsi start`) and attach to its folder here."
        )
    if not 1 <= req.candidates <= MAX_CANDIDATES:
        raise UserError(f"Give each cycle 1 to {MAX_CANDIDATES} candidates (you asked for {req.candidates}).")
    if req.seed < 0:
        raise UserError(f"The seed must be 0 or more (got {req.seed}).")


def rsi_config(req: ImproveRequest, out_dir: Path) -> RSIConfig:
    """``recipe("maml", family, kind)`` and the request's budget preset, as the loop's config on ``out_dir``."""
    check_request(req)
    b = BUDGETS[req.budget]
    start = recipe("maml", req.family, cast(ModelKind, req.kind)).replace(
        meta_iterations=b.start_iterations,
        meta_batch_size=b.meta_batch,
        inner__episodes=b.episodes,
        model__hidden_dim=b.hidden_dim,
        model__state_dim=b.hidden_dim,
        model__num_layers=b.num_layers,
        run__out_dir=str(out_dir),
        run__progress=False,
        run__seed=req.seed,
    )
    extra: dict[str, Any] = {} if b.search is None else {"search": b.search}
    try:
        return RSIConfig(
            start=start,
            cycles=req.cycles,
            candidates=req.candidates,
            candidate_iterations=b.candidate_iterations,
            eval_tasks=b.eval_tasks,
            eval_seeds=b.eval_seeds,
            recheck_seeds=b.eval_seeds,
            oor_tasks=b.oor_tasks,
            max_failures=b.max_failures,
            **extra,
        )
    except InputError as e:
        raise UserError(str(e)) from e


# ----- reading a loop's folder ------------------------------------------------------------------------------
@dataclass
class LoopView:
    """What the tab shows of one loop folder."""

    folder: Path
    status: str
    figure: Figure
    incumbent: str
    """Markdown: the current incumbent (cycle, weights hash, model and hyper-parameters, metrics)."""
    rows: list[list[Any]]
    """One row per decision (DECISION_HEADERS)."""
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    """(cycle, the incumbent's metrics and score after it), from cycle 0 (the start)."""
    cycle: int = 0
    stopped: str | None = None


def incumbent_history(decisions: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """(cycle, the incumbent's metrics after it) for cycle 0 and every finished cycle, as the log records
    them: ``started`` measures the start; an ``accepted`` candidate whose cycle ends ``installed`` becomes
    the incumbent; a cycle that ends ``failed`` (rejected, rolled back, every candidate failed) keeps it.
    A cycle that ran again after a kill counts once, with its last run."""
    by_cycle: dict[int, dict[str, float]] = {}
    current: dict[str, float] | None = None
    accepted: dict[int, dict[str, float]] = {}
    for d in decisions:
        kind, n = d.get("kind"), int(d.get("cycle", -1))
        if kind == "started" and isinstance(d.get("metrics"), dict):
            current = d["metrics"]
            by_cycle[0] = current
        elif kind == "accepted" and isinstance(d.get("candidate"), dict):
            accepted[n] = d["candidate"]
        elif kind == "installed" and n in accepted:
            current = accepted[n]
            by_cycle[n] = current
        elif kind == "failed" and current is not None:
            by_cycle[n] = current
    return sorted(by_cycle.items())


def _score(d: dict[str, Any]) -> float | None:
    for key in ("metrics", "candidate"):
        m = d.get(key)
        if isinstance(m, dict) and "score" in m:
            return float(m["score"])
    return None


def _interval(c: Any) -> str:
    if not isinstance(c, dict):
        return ""
    return f"gain {c['difference']:+.3f}, interval [{c['low']:+.3f}, {c['high']:+.3f}]"


def _params(p: Any) -> str:
    if not isinstance(p, dict):
        return ""
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(p.items()))


def decision_reason(d: dict[str, Any]) -> str:
    """One line of evidence for the decisions table."""
    kind = d.get("kind")
    if kind == "started":
        return "the starting incumbent, measured (cycle 0)"
    if kind == "trial":
        warm = "warm-started" if d.get("warm_start") else "fresh weights"
        return f"trial {d.get('trial')}: {_params(d.get('params'))} ({warm})"
    if kind == "trial-failed":
        return f"trial {d.get('trial')}: {d.get('error', '')}"
    if kind == "trial-lost":
        return f"trial {d.get('trial')} was left running by a killed process; its cycle runs again"
    if kind == "accepted":
        return f"trial {d.get('trial')} beats the incumbent: {_interval(d.get('comparison'))}"
    if kind == "rejected":
        inc = d.get("incumbent", {})
        vs = f" vs incumbent {inc['score']:.3f}" if isinstance(inc, dict) and "score" in inc else ""
        return f"best was trial {d.get('trial')}{vs}: {_interval(d.get('comparison'))}, not above 0"
    if kind == "installed":
        return f"weights {str(d.get('hash', ''))[:12]} installed; re-check on fresh seeds: {_interval(d.get('recheck'))}"
    if kind == "rolled-back":
        return (
            f"re-check regressed ({_interval(d.get('recheck'))}); restored {str(d.get('restored', ''))[:12]}"
        )
    if kind in ("failed", "stopped"):
        more = f" ({d['consecutive']} in a row)" if "consecutive" in d else ""
        return f"{d.get('reason', '')}{more}"
    if kind == "restarted":
        return f"restarted after: {d.get('after', '')}"
    return ""


def decision_rows(decisions: list[dict[str, Any]]) -> list[list[Any]]:
    """The decisions table: cycle, decision, score (of the policy it is about, when it has one), reason."""
    rows = []
    for d in decisions:
        score = _score(d)
        rows.append(
            [
                int(d.get("cycle", -1)),
                str(d.get("kind", "?")),
                "" if score is None else round(score, 4),
                decision_reason(d),
            ]
        )
    return rows


def incumbent_markdown(manifest: dict[str, Any] | None, history: list[tuple[int, dict[str, float]]]) -> str:
    """The current incumbent: where it comes from, its model and hyper-parameters, its metrics."""
    if manifest is None:
        return "No incumbent yet: the loop is training and measuring the starting one."
    inc = manifest["incumbent"]
    maml = inc.get("maml", {})
    model, inner = maml.get("model", {}), maml.get("inner", {})
    source = "the starting incumbent" if inc["cycle"] == 0 else f"installed in cycle {inc['cycle']}"
    lines = [
        f"**Incumbent**: {source}, weights `{inc['hash'][:12]}` (SHA-256), "
        f"{inc.get('train_env_steps', 0):,} training env steps.",
        "",
        "| model | hidden | state | layers | outer lr | inner lr | inner steps | episodes per step |",
        "|---|---|---|---|---|---|---|---|",
        f"| `{model.get('kind', '?')}` | {model.get('hidden_dim', '?')} | {model.get('state_dim', '?')} | "
        f"{model.get('num_layers', '?')} | {maml.get('outer_lr', float('nan')):.3g} | "
        f"{inner.get('lr', float('nan')):.3g} | {inner.get('steps', '?')} | {inner.get('episodes', '?')} |",
    ]
    if history:
        n, m = history[-1]
        values = ", ".join(f"{k} {m[k]:.3f}" for k in INCUMBENT_HEADERS[2:] if k in m)
        lines += ["", f"After cycle {n}: score **{m.get('score', float('nan')):.3f}** ({values})."]
    return "\n".join(lines)


def _summary(manifest: dict[str, Any] | None, n_decisions: int) -> str:
    if manifest is None:
        return f"{n_decisions} decision(s) so far; the starting incumbent is being trained"
    text = (
        f"cycle {manifest['cycle']}, {manifest['failures']} consecutive failed cycle(s), "
        f"{manifest['env_steps']:,} env steps, {n_decisions} decision(s)"
    )
    if manifest.get("stopped"):
        text += f"; stopped: {manifest['stopped']}"
    return text


def _rsi() -> Any:
    """The rsi package's readers (they need no Optuna); a UserError when the package cannot be imported."""
    try:
        from ssm_metarl.rsi import daemon, store
    except ModuleNotFoundError as e:
        raise UserError(
            f"The self-improvement loop needs Optuna ({e}): pip install 'ssm-metarl[rsi]'."
        ) from None
    return daemon, store


def loop_view(folder: Path, status: str | None = None) -> LoopView:
    """Everything the tab shows of the loop in ``folder``, read from its manifest and decisions log;
    ``status``: the status line (default: the daemon's state and the manifest's summary)."""
    daemon, store = _rsi()
    try:
        manifest = store.read_manifest(folder) if folder.is_dir() else None
        decisions = store.read_decisions(folder) if folder.is_dir() else []
        if status is None:
            st = daemon.daemon_state(folder)
            how = {
                "running": f"a daemon is running (pid {st.pid})",
                "initialising": f"a daemon is initialising (pid {st.pid})",
                "stale": "no daemon (a stale pid file was removed)",
            }.get(st.state, "no daemon is running")
            status = f"`{folder}`: {how}; {_summary(manifest, len(decisions))}."
    except InputError as e:  # a damaged manifest or log: the reader's message says what to do
        raise UserError(str(e)) from e
    history = incumbent_history(decisions)
    trials = [
        (int(d["cycle"]), s) for d in decisions if d.get("kind") == "trial" and (s := _score(d)) is not None
    ]
    return LoopView(
        folder=folder,
        status=status,
        figure=plots.improvement_curves(history, trials, f"incumbent per cycle · {folder.name}"),
        incumbent=incumbent_markdown(manifest, history),
        rows=decision_rows(decisions),
        history=history,
        cycle=0 if manifest is None else int(manifest["cycle"]),
        stopped=None if manifest is None else manifest.get("stopped"),
    )


def default_attach_folder(runs_dir: Path) -> Path:
    """Where the tab looks for a daemon first: ``<runs_dir>/rsi``
    (``ssm-metarl rsi start --out_dir <runs_dir>/rsi`` puts one there)."""
    return Path(runs_dir).resolve() / "rsi"


def resolve_folder(runs_dir: Path, text: str | None) -> Path:
    """The folder named in the attach field: a path inside the app's runs dir (relative paths are taken from
    the app's working directory, as the CLI takes them); a UserError otherwise."""
    root = Path(runs_dir).resolve()
    text = (text or "").strip()
    if not text:
        raise UserError(f"Name a loop folder to attach to, e.g. {default_attach_folder(root)}.")
    folder = Path(text).expanduser().resolve()
    if not folder.is_relative_to(root):
        raise UserError(
            f"{folder} is outside the app's runs folder {root}: the app only reads loops under it. Start the "
            f"daemon there (`ssm-metarl rsi start --out_dir {root / 'rsi'}`) or launch the app with a "
            "--runs_dir above the loop's folder."
        )
    return folder


def attach(runs_dir: Path, text: str | None) -> LoopView:
    """The loop in the folder named by ``text`` (see :func:`resolve_folder`), as :func:`loop_view` reads it;
    a UserError when the folder holds no loop, saying how to start one."""
    folder = resolve_folder(runs_dir, text)
    _, store = _rsi()
    has_loop = folder.is_dir() and ((folder / store.MANIFEST).exists() or (folder / store.DECISIONS).exists())
    if not has_loop:
        daemon, _ = _rsi()
        st = daemon.daemon_state(folder) if folder.is_dir() else None
        if st is not None and st.state == "initialising":
            return loop_view(folder)
        what = (
            "does not exist" if not folder.exists() else "holds no self-improvement loop (no manifest.json)"
        )
        raise UserError(
            f"{folder} {what}. Start a daemon there with `ssm-metarl rsi start --out_dir {folder}`, or press "
            "Start above to run a few cycles in this tab."
        )
    return loop_view(folder)


# ----- running a loop in this session ----------------------------------------------------------------------
@dataclass
class ImproveProgress:
    """A snapshot of this tab's run: the folder's view, and whether the job has ended."""

    view: LoopView
    done: bool = False


def loop_folder(session: AppSession) -> Path:
    """A fresh folder for this session's next loop: ``<runs_dir>/<session>/rsi-N``."""
    i = 1
    while (session.run_dir / f"rsi-{i}").exists():
        i += 1
    return session.run_dir / f"rsi-{i}"


def _refusal(running: str | None) -> str:
    doing = "running the self-improvement loop" if running == JOB else "meta-training a model"
    return f"This session is already {doing}: wait for it or stop it first."


def _running_status(req: ImproveRequest, out: Path, last: Any, ready: bool, stopping: bool) -> str:
    """The status line while the loop runs; ``last``: the latest cycle's report (None before the first)."""
    asked = " Stopping after the cycle in flight ..." if stopping else ""
    if not ready:
        return (
            f"Initialising `{out}`: training and measuring the starting incumbent and the baseline ...{asked}"
        )
    if last is None:
        return f"Cycle 1/{req.cycles} running in `{out}` ...{asked}"
    more = f" Cycle {last.cycle + 1}/{req.cycles} running ..." if last.cycle < req.cycles else ""
    return (
        f"Cycle {last.cycle}/{req.cycles}: **{last.outcome}** (incumbent score "
        f"{last.incumbent_score:.3f}).{more}{asked}"
    )


def run_improvement(
    session: AppSession, req: ImproveRequest, poll_seconds: float = 0.5
) -> Iterator[ImproveProgress]:
    """Run ``req.cycles`` cycles of the loop as the session's job; yields a view of its folder whenever the
    decisions log grows, and a final one (``done``). The session's stop flag (Stop, or the page closing)
    sets the loop's ``stop_requested``: the cycle in flight finishes, then the run ends.

    Raises UserError before starting for a request that cannot run, or when this session already runs a job.
    """
    check_request(req)
    _rsi()
    try:
        from ssm_metarl.rsi import SelfImprovement
    except ModuleNotFoundError as e:
        raise UserError(
            f"The self-improvement loop needs Optuna ({e}): pip install 'ssm-metarl[rsi]'."
        ) from None
    out = loop_folder(session)
    cfg = rsi_config(req, out)
    loops: list[SelfImprovement] = []

    def body(report: Callable[[tuple[str, Any]], None]) -> str:
        loop = SelfImprovement(cfg)
        loop.stop_requested = session.stop.is_set()
        loops.append(loop)
        report(("ready", loop.incumbent_metrics.score))
        return loop.run(req.cycles, on_cycle=lambda r: report(("cycle", r)))

    def stop_loop() -> None:
        for loop in loops:
            loop.stop_requested = True

    job = run_job(
        session,
        JOB,
        body,
        refusal=_refusal,
        failed="The self-improvement loop failed",
        on_stop=stop_loop,
        poll_seconds=poll_seconds,
    )
    last, ready, seen = None, False, -1
    with closing(job):
        for event in job:
            if isinstance(event, Done):
                view = loop_view(out)
                how = "Stopped" if session.stop.is_set() else "Done"
                view.status = (
                    f"{how}: {event.result}. The loop's folder is `{out}` (continue it with `ssm-metarl rsi "
                    f"run --out_dir {out}` and the same settings)."
                )
                yield ImproveProgress(view, done=True)
                continue
            for kind, value in event.updates:  # ("ready", score), then ("cycle", report) per cycle
                ready = True
                if kind == "cycle":
                    last = value
            ready = ready or (out / "manifest.json").exists()
            size = (out / "decisions.jsonl").stat().st_size if (out / "decisions.jsonl").exists() else 0
            if size != seen:
                seen = size
                status = _running_status(req, out, last, ready, session.stop.is_set())
                yield ImproveProgress(loop_view(out, status))


def request_stop(session: AppSession | None) -> str:
    """The Stop button: the running loop finishes the cycle in flight, then ends."""
    if not stop_job(session, JOB):
        return "Nothing to stop: no self-improvement loop is running in this session."
    return "Stopping after the cycle in flight (a cycle is not cut short: its decisions stay whole) ..."


__all__ = [
    "BUDGETS",
    "DECISION_HEADERS",
    "DEFAULT_BUDGET",
    "RSI_FAMILIES",
    "Budget",
    "ImproveProgress",
    "ImproveRequest",
    "LoopView",
    "attach",
    "check_request",
    "decision_rows",
    "default_attach_folder",
    "incumbent_history",
    "loop_view",
    "request_stop",
    "resolve_folder",
    "rsi_config",
    "run_improvement",
]
