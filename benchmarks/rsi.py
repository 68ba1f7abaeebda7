"""The self-improvement loop against plain Optuna TPE and random search, with the same env-step budget.

    python benchmarks/rsi.py                          # navigation-2d, seeds 0 1 2
    python benchmarks/rsi.py --seeds 0 --budget 1500000 --name rsi_probe

All three start from the same deliberately weak configuration: ``recipe("maml", family)`` with a small mlp,
step sizes a tenth of the recipe's, and few meta-iterations. Each method gets the same budget of env steps
(training plus measuring), counted the same way: the loop checks its budget before each cycle, so it may
overshoot; the searches then get at least the env steps the loop really used.
- **rsi**: :class:`ssm_metarl.rsi.SelfImprovement`. Optuna proposes around the incumbent, candidates warm-start
  from it, and a candidate is installed only when it wins the paired bootstrap test and holds up on the
  re-check.
- **tpe** / **random**: Optuna's TPE or random sampler over the same proposal space, applied to the weak start.
  Every trial trains from scratch for the start's meta-iterations plus one cycle's candidate iterations, and
  the best trial by validation score is the final policy.
Choices are made on ``validation``. The final policies are scored on ``test`` (the metrics of
``ssm_metarl.rsi.metrics``, with a reference measured on test tasks). Writes results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from _common import markdown_table, provenance, start_run, write_results

from ssm_metarl.checkpoint import load_policy
from ssm_metarl.config import MAMLConfig, RSIConfig
from ssm_metarl.meta.evaluate import random_policy_returns
from ssm_metarl.recipes import recipe
from ssm_metarl.results import mean_ci, pyplot
from ssm_metarl.rsi import metrics as M
from ssm_metarl.rsi import store
from ssm_metarl.rsi.loop import SelfImprovement, make_sampler, propose, search_space, train_candidate

optuna.logging.set_verbosity(optuna.logging.WARNING)


def weak_config(family: str, out: Path, seed: int, args: argparse.Namespace) -> RSIConfig:
    base = recipe("maml", family)
    start = base.replace(
        meta_iterations=args.start_iterations,
        meta_batch_size=10,
        model__hidden_dim=16,
        outer_lr=base.outer_lr / 10,
        inner__lr=base.inner.lr / 10,
        inner__episodes=10,
        run__out_dir=str(out),
        run__seed=seed,
    )
    return RSIConfig(
        start=start,
        cycles=10_000,
        candidates=args.candidates,
        candidate_iterations=args.candidate_iterations,
        eval_tasks=10,
        eval_seeds=3,
        recheck_seeds=3,
        oor_tasks=5,
        max_env_steps=args.budget,
        max_failures=1000,  # the benchmark spends its whole budget; the emergency stop is tested elsewhere
    )


def test_metrics(
    loop: SelfImprovement, policies: dict[str, tuple[Any, int, MAMLConfig]]
) -> dict[str, dict[str, float]]:
    """Each policy's metrics on test, against a reference measured on test (random, start, baseline)."""
    test, oor = loop._tasks("test")
    start = store.load_checked(loop.out / "history" / "cycle-0000", loop.state["history"][0]["hash"])
    baseline = load_policy(loop.out / "baseline")
    eps = loop.cfg.start.inner.episodes
    start_m = loop.measure(start, loop.reference.start_env_steps, split="test")
    ref = M.Reference(
        random_policy_returns(loop.cfg.family, test, episodes=eps, seed=0),
        random_policy_returns(loop.cfg.family, oor, episodes=eps, seed=0),
        float(M.after_adaptation(start_m.val).mean()),
        M.after_adaptation(loop.measure(baseline, 0, split="test").val).tolist(),
        loop.reference.start_env_steps,
    )
    out = {"start": M.compute(start_m, ref, loop.cfg).to_dict()}
    for name, (policy, steps, maml) in policies.items():
        out[name] = M.compute(loop.measure(policy, steps, split="test", maml=maml), ref, loop.cfg).to_dict()
    return out


def run_rsi(cfg: RSIConfig) -> tuple[SelfImprovement, list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    loop = SelfImprovement(cfg)
    curve = [{"env_steps": loop.state["env_steps"], "score": loop.incumbent_metrics.score}]
    loop.run(
        on_cycle=lambda r: curve.append(
            {"env_steps": loop.state["env_steps"], "score": loop.incumbent_metrics.score}
        )
    )
    return loop, curve, time.perf_counter() - t0


def run_search(
    loop: SelfImprovement, sampler: str, seed: int, budget: int
) -> tuple[tuple[Any, int, MAMLConfig], list[dict[str, Any]], float]:
    """Optuna over the same space, every trial from scratch; the best by validation score, within the budget."""
    t0 = time.perf_counter()
    cfg = loop.cfg
    start_cfg = MAMLConfig.from_dict(loop.state["config"]["start"])
    smp = make_sampler(
        sampler, seed + (7919 if sampler == "random" else 0), cfg.candidates
    )  # not TPE's draws
    study = optuna.create_study(direction="maximize", sampler=smp)
    used, best, curve = 0, None, []
    iterations = start_cfg.meta_iterations + cfg.candidate_iterations
    while used < budget:
        trial = study.ask(search_space(cfg, start_cfg))
        trial_cfg = propose(start_cfg, trial.params, cfg, seed * 1000 + trial.number).replace(
            meta_iterations=iterations
        )
        policy, steps = train_candidate(trial_cfg, None)
        measured = loop.measure(policy, steps, maml=trial_cfg)
        try:
            m = loop._metrics(measured)
        except M.NonFiniteError:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            used += steps + measured.eval_env_steps
            continue
        study.tell(trial, m.score)
        used += steps + measured.eval_env_steps
        if best is None or m.score > best[2]:
            best = (policy, steps, m.score, trial_cfg)
        curve.append({"env_steps": used, "score": best[2]})
    assert best is not None, "no trial finished"
    return (best[0], best[1], best[3]), curve, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="navigation-2d")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=3_000_000, help="env steps per method and seed")
    parser.add_argument("--start-iterations", type=int, default=5)
    parser.add_argument("--candidate-iterations", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--work", default="runs/bench-rsi", help="where the loops keep their state")
    parser.add_argument("--name", default="rsi")
    args = start_run(parser)
    torch.set_num_threads(1)
    runs = []
    for seed in args.seeds:
        out = Path(args.work) / f"{args.family}-s{seed}"
        if out.exists():
            raise SystemExit(f"{out} exists: remove it or pass another --work")
        loop, rsi_curve, rsi_s = run_rsi(weak_config(args.family, out, seed, args))
        finals = {"rsi": (loop.incumbent, loop.state["incumbent"]["train_env_steps"], loop.incumbent_cfg)}
        curves, seconds = {"rsi": rsi_curve}, {"rsi": rsi_s}
        used = loop.state["env_steps"]  # the loop checks its budget before a cycle, so it may overshoot it:
        for sampler in ("tpe", "random"):  # the searches get at least what the loop really used
            finals[sampler], curves[sampler], seconds[sampler] = run_search(loop, sampler, seed, used)
        decisions = store.read_decisions(out)
        runs.append(
            {
                "seed": seed,
                "test": test_metrics(loop, finals),
                "validation_curves": curves,
                "seconds": seconds,
                "cycles": loop.state["cycle"],
                "rollbacks": sum(d["kind"] == "rolled-back" for d in decisions),
                "installed": sum(d["kind"] == "installed" for d in decisions),
                "rsi_env_steps": loop.state["env_steps"],
                "search_env_steps": {m: curves[m][-1]["env_steps"] for m in ("tpe", "random")},
            }
        )
        print(
            f"seed {seed}: " + ", ".join(f"{k} {v['score']:.3f}" for k, v in runs[-1]["test"].items()),
            flush=True,
        )
    write(args, runs)


def write(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    methods = ("start", "rsi", "tpe", "random")
    scores = {m: [r["test"][m]["score"] for r in runs] for m in methods}
    gains = [r["test"]["rsi"]["score"] - r["test"]["start"]["score"] for r in runs]
    gain_ci = mean_ci(gains)
    headline = {
        "rsi_final_score": statistics.fmean(scores["rsi"]),
        "tpe_final_score": statistics.fmean(scores["tpe"]),
        "random_final_score": statistics.fmean(scores["random"]),
        "rsi_gain_over_start": gain_ci.mean,
        "rsi_gain_over_start_ci_low": gain_ci.low if len(runs) > 1 else None,
        "rsi_gain_over_start_ci_high": gain_ci.high if len(runs) > 1 else None,
        "cycles": statistics.fmean(r["cycles"] for r in runs),
        "rollbacks": sum(r["rollbacks"] for r in runs),
        "minutes": sum(sum(r["seconds"].values()) for r in runs) / 60,
    }
    rows = []
    for m in methods:
        per_metric = [statistics.fmean(r["test"][m][k] for r in runs) for k in (*M.METRICS, "score")]
        iv = mean_ci(scores[m])
        score_cell = f"{iv.mean:.3f}" + (f" ± {iv.half:.3f}" if len(runs) > 1 else "")
        rows.append([m, *[f"{v:.3f}" for v in per_metric[:-1]], score_cell])
    md = (
        f"## Self-improvement vs TPE vs random search on {args.family} (budget {args.budget:,} env steps per "
        f"method and seed; seeds {args.seeds}; scores on test, choices on validation)\n\n"
        + markdown_table(["method", *M.METRICS, "score"], rows)
        + f"\nRSI gain over the start: {gain_ci.mean:.3f}"
        + (
            f" (95% interval {gain_ci.low:.3f} to {gain_ci.high:.3f})"
            if len(runs) > 1
            else " (one seed: no interval)"
        )
        + f"; cycles {headline['cycles']:.1f} on average, {headline['rollbacks']} rollbacks, "
        f"{sum(r['installed'] for r in runs)} installs; {headline['minutes']:.0f} minutes in all.\n\n"
        f"Command: `{provenance()['command']}`.\n"
    )
    payload = {"headline": headline, **provenance(), "args": vars(args), "runs": runs}
    write_results(args.name, payload, md)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, style, color in (("rsi", "-", "C0"), ("tpe", "--", "C1"), ("random", ":", "C2")):
        for i, r in enumerate(runs):
            c = r["validation_curves"][m]
            x, y = [p["env_steps"] for p in c], [p["score"] for p in c]
            ax.plot(x, y, style, color=color, label=m if i == 0 else None)
    ax.set_xlabel("env steps (training + measuring)")
    ax.set_ylabel("best validation score so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(__file__).resolve().parent / "results" / f"{args.name}.png", dpi=110)


if __name__ == "__main__":
    main()
