"""optuna-dashboard reads the loop's study as it is: a Pareto loop run through the CLI, then the dashboard's
own JSON API (its WSGI app, no port) shows the study, its objectives, every candidate and the same Pareto front
the manifest records."""

from __future__ import annotations

import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna_dashboard
from test_rsi_daemon import TINY, rsi


def api(app, path: str) -> dict:
    env: dict = {}
    setup_testing_defaults(env)
    env["PATH_INFO"], env["QUERY_STRING"] = path, "after=0"
    status: list[str] = []
    body = b"".join(app(env, lambda s, h, exc=None: status.append(s)))
    assert status == ["200 OK"], (status, body[:300])
    return json.loads(body)


def test_the_dashboard_shows_the_loops_study_and_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "rsi"
    args = [*TINY, "--objectives", "pareto", "--sampler", "nsga2", "--candidates", "2", "--cycles", "2"]
    rsi("run", "--out_dir", str(out), *args)
    manifest = json.loads((out / "manifest.json").read_text())
    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")
    (summary,) = api(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "rsi" and summary["directions"] == ["maximize"] * 4
    study = api(app, f"/api/studies/{summary['study_id']}")
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    trials = {d["trial"] for d in decisions if d["kind"] == "trial"}
    assert {t["number"] for t in study["trials"] if t["state"] == "Complete"} == trials and len(trials) == 4
    assert {t["number"] for t in study["best_trials"]} == {p["trial"] for p in manifest["pareto_front"]}
