"""The Self-improvement tab without a browser: a tiny loop run from the tab's callback, Stop, attaching to a
folder (with a loop, without one, outside the runs folder), and the view of every kind of decision."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("optuna", reason="the self-improvement loop needs the rsi extra: pip install -e '.[rsi]'")

from ssm_metarl.app import improvement as imp  # noqa: E402
from ssm_metarl.app.callbacks import Callbacks  # noqa: E402
from ssm_metarl.app.session import AppSession, UserError  # noqa: E402
from ssm_metarl.app.training import TrainRequest, run_training  # noqa: E402
from ssm_metarl.rsi import store  # noqa: E402

TINY = next(iter(imp.BUDGETS))  # the fastest preset
END = ("installed", "failed")  # every finished cycle ends with one of these


def page_request(session_hash: str = "page-1") -> SimpleNamespace:
    return SimpleNamespace(session_hash=session_hash)


def kinds_by_cycle(rows: list[list]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for cycle, kind, *_ in rows:
        out.setdefault(int(cycle), []).append(kind)
    return out


def test_a_tiny_run_from_the_tab_completes_cycles_and_shows_them(tmp_path):
    cb = Callbacks(tmp_path)
    outputs = list(cb.improve("navigation-2d", "mlp", 2, 1, TINY, 0, None, page_request()))
    status, fig, incumbent, table, folder, session = outputs[-1]
    assert status.startswith("Done: 2 cycles done"), status
    assert not session.busy and session.job is None
    out = Path(folder.value)
    assert out.parent == session.run_dir and out.name == "rsi-1"
    assert any(o[0].startswith("Initialising") for o in outputs[:-1])  # streamed while it ran

    by_cycle = kinds_by_cycle(table.values.tolist())
    assert by_cycle[0] == ["started"]
    for n in (1, 2):
        assert by_cycle[n][0] == "trial" and by_cycle[n][-1] in END, by_cycle[n]
    assert list(table.columns) == imp.DECISION_HEADERS
    decisions = store.read_decisions(out)
    assert len(table) == len(decisions)  # every decision of the log, in order
    assert table["score"].iloc[0] == pytest.approx(decisions[0]["metrics"]["score"], abs=1e-4)

    score_ax, metrics_ax = fig.axes
    incumbent_line = next(line for line in score_ax.lines if line.get_label() == "incumbent")
    assert list(incumbent_line.get_xdata()) == [0, 1, 2]
    assert [line.get_label() for line in metrics_ax.lines] == list(imp.plots.IMPROVEMENT_METRICS)
    manifest = store.read_manifest(out)
    assert manifest is not None and manifest["cycle"] == 2
    assert f"`{manifest['incumbent']['hash'][:12]}`" in incumbent and "| `mlp` | 8 | 8 | 1 |" in incumbent

    # the same folder, attached: the same view, read from disk
    a_status, _fig, a_incumbent, a_table = cb.attach_loop(str(out))
    assert "no daemon is running; cycle 2" in a_status and a_incumbent == incumbent
    assert a_table.values.tolist() == table.values.tolist()
    # a second run of the session goes to a folder of its own
    assert imp.loop_folder(session).name == "rsi-2"


def test_stop_finishes_the_cycle_in_flight(tmp_path):
    session = AppSession(tmp_path)
    assert "Nothing to stop" in imp.request_stop(session)
    req = imp.ImproveRequest(cycles=10, candidates=1, budget=TINY)
    runs = imp.run_improvement(session, req)
    for p in runs:  # stop once cycle 1 is in flight (its first trial is logged)
        if any(kind == "trial" for _, kind, *_ in p.view.rows):
            break
    assert session.busy and session.job == imp.JOB
    assert imp.request_stop(session).startswith("Stopping after the cycle in flight")
    with pytest.raises(UserError, match="running the self-improvement loop"):  # one job per session
        next(run_training(session, TrainRequest(family="cartpole-physics", iterations=1, meta_batch=1)))
    final = list(runs)[-1]
    assert final.done and final.view.status.startswith("Stopped: stop requested"), final.view.status
    manifest = store.read_manifest(final.view.folder)
    assert manifest is not None and 1 <= manifest["cycle"] < 10
    by_cycle = kinds_by_cycle(final.view.rows)
    assert max(by_cycle) == manifest["cycle"]  # no cycle was cut short: each one that began has ended
    assert all(by_cycle[n][-1] in END for n in range(1, manifest["cycle"] + 1))
    assert not session.busy and session.job is None


def test_attaching_to_a_folder_without_a_loop_says_so(tmp_path):
    cb = Callbacks(tmp_path)
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "empty"): "holds no self-improvement loop",
        str(
            imp.default_attach_folder(tmp_path)
        ): "does not exist. Start a daemon there with `ssm-metarl rsi start",
        str(tmp_path.parent): "is outside the app's runs folder",
        "": "Name a loop folder",
    }
    for folder, message in cases.items():
        status, _fig, incumbent, table = cb.attach_loop(folder)
        assert status.startswith("**Cannot do that:**") and message in status, status
        assert incumbent == "" and table.empty


def write_loop(out: Path) -> None:
    """A loop folder as the loop writes it: a manifest and a log with every kind of decision."""
    out.mkdir(parents=True)

    def m(score: float) -> dict:
        return {
            "return": score,
            "speed": 0.5,
            "generalisation": 0.0,
            "efficiency": 0.1,
            "stability": -0.1,
            "score": score,
        }

    comp = {"difference": 0.4, "low": 0.1, "high": 0.7}
    log = [
        ("started", 0, {"metrics": m(1.0)}),
        ("trial", 1, {"trial": 0, "params": {"outer_lr_scale": 1.5}, "metrics": m(1.4), "warm_start": True}),
        ("accepted", 1, {"trial": 0, "candidate": m(1.4), "incumbent": m(1.0), "comparison": comp}),
        ("installed", 1, {"hash": "a" * 64, "recheck": comp}),
        ("trial-failed", 2, {"trial": 1, "params": {}, "error": "injected divergence"}),
        ("trial", 2, {"trial": 2, "params": {"outer_lr_scale": 2.0}, "metrics": m(2.0), "warm_start": True}),
        ("accepted", 2, {"trial": 2, "candidate": m(2.0), "incumbent": m(1.4), "comparison": comp}),
        ("rolled-back", 2, {"restored": "a" * 64, "recheck": {"difference": -0.2, "low": -0.5, "high": 0.1}}),
        ("failed", 2, {"reason": "the re-evaluation regressed", "consecutive": 1}),
        ("trial", 3, {"trial": 3, "params": {}, "metrics": m(0.5), "warm_start": True}),
        ("rejected", 3, {"trial": 3, "candidate": m(0.5), "incumbent": m(1.4), "comparison": comp}),
        ("failed", 3, {"reason": "no candidate beat the incumbent", "consecutive": 2}),
        ("stopped", 3, {"reason": "emergency stop: 2 consecutive failed cycles"}),
    ]
    for kind, cycle, evidence in log:
        store.log_decision(out, kind, cycle, **evidence)
    maml = {"model": {"kind": "ssm", "hidden_dim": 16, "state_dim": 12, "num_layers": 2}, "outer_lr": 0.002,
            "inner": {"lr": 0.5, "steps": 1, "episodes": 8}}  # fmt: skip
    store.write_manifest(
        out,
        {
            "cycle": 3,
            "failures": 2,
            "env_steps": 12345,
            "stopped": "emergency stop: 2 consecutive failed cycles",
            "incumbent": {"cycle": 1, "hash": "a" * 64, "maml": maml, "train_env_steps": 4000},
        },
    )


def test_the_view_reads_every_kind_of_decision(tmp_path):
    out = tmp_path / "rsi"
    write_loop(out)
    (out / "rsi.pid").write_text(json.dumps({"pid": os.getpid()}))  # a live process that is not the daemon
    view = imp.attach(tmp_path, str(out))
    assert "no daemon (a stale pid file was removed)" in view.status and not (out / "rsi.pid").exists()
    assert "cycle 3, 2 consecutive failed cycle(s), 12,345 env steps, 13 decision(s)" in view.status
    assert "stopped: emergency stop" in view.status and view.stopped is not None
    # installed in cycle 1: the accepted candidate; rolled back in 2 and rejected in 3: kept
    assert [(n, m["score"]) for n, m in view.history] == [(0, 1.0), (1, 1.4), (2, 1.4), (3, 1.4)]
    assert [r[1] for r in view.rows] == [
        "started", "trial", "accepted", "installed", "trial-failed", "trial", "accepted", "rolled-back",
        "failed", "trial", "rejected", "failed", "stopped",
    ]  # fmt: skip
    reasons = {r[1]: r[3] for r in view.rows}
    assert "gain +0.400, interval [+0.100, +0.700]" in reasons["accepted"]
    assert reasons["installed"].startswith("weights aaaaaaaaaaaa installed")
    assert "re-check regressed" in reasons["rolled-back"] and "injected divergence" in reasons["trial-failed"]
    assert reasons["stopped"] == "emergency stop: 2 consecutive failed cycles"
    assert reasons["failed"] == "no candidate beat the incumbent (2 in a row)"
    assert view.rows[1][2] == 1.4 and view.rows[3][2] == ""  # a trial has a score, an install does not
    assert "installed in cycle 1, weights `aaaaaaaaaaaa`" in view.incumbent
    assert "| `ssm` | 16 | 12 | 2 | 0.002 | 0.5 | 1 | 8 |" in view.incumbent
    assert "After cycle 3: score **1.400**" in view.incumbent


def test_requests_that_cannot_run_are_explained(tmp_path):
    bad = {
        "family": ("bandit", "needs a family with validation and out-of-range tasks"),
        "kind": ("rnn", "Unknown model kind 'rnn'"),
        "cycles": (11, "Run 1 to 10 cycles from this tab"),
        "candidates": (0, "1 to 5 candidates"),
        "budget": ("huge", "Unknown budget 'huge'"),
        "seed": (-1, "The seed must be 0 or more"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(UserError, match=message):
            imp.check_request(imp.ImproveRequest(**{name: value}))
    assert "navigation-2d" in imp.RSI_FAMILIES and "bandit" not in imp.RSI_FAMILIES
    session = AppSession(tmp_path)
    session.busy, session.job = True, "meta-training"
    with pytest.raises(UserError, match="already meta-training a model"):
        next(imp.run_improvement(session, imp.ImproveRequest(budget=TINY)))
    assert "Nothing to stop" in imp.request_stop(session)  # Stop never cancels another tab's job
    status, *_ = next(
        Callbacks(tmp_path).improve("navigation-2d", "mlp", 20, 1, TINY, 0, None, page_request())
    )
    assert status.startswith("**Cannot do that:** Run 1 to 10 cycles from this tab"), status
