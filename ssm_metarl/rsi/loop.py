"""The self-improvement loop: Optuna proposes, candidates train, the better one is installed or nothing is.

One cycle (:meth:`SelfImprovement.cycle`):

1. Optuna asks for ``candidates`` proposals around the incumbent (multipliers of its hidden and state sizes,
   a change of layer count, multipliers of its outer and inner step sizes); the search space is fixed, so
   the sampler (TPE by default) learns which changes help across cycles.
2. Each candidate is meta-trained for ``candidate_iterations`` MAML iterations, starting from the
   incumbent's weights when its shapes are unchanged, and measured on the fixed ``validation`` tasks and
   seeds (:mod:`ssm_metarl.rsi.metrics`); a diverged or non-finite candidate is a failed trial (Optuna
   state FAIL), not a crash.
3. The best candidate is compared with the incumbent on the same (seed, task) pairs; it is accepted only
   when the lower end of the paired bootstrap interval of the score difference is above zero.
4. The accepted candidate's checkpoint (the exact weights evaluated: hash-checked) is installed, then
   re-measured against the previous incumbent on fresh seeds; if it is not better there, the previous
   incumbent is restored, bit for bit (hash-checked again).

A cycle fails when no candidate is accepted, every candidate failed, or it rolled back; after
``max_failures`` consecutive failed cycles the loop stops (the emergency stop), as it does below ``floor``
or past ``max_env_steps`` / ``max_minutes``. Every decision goes to ``decisions.jsonl`` with its evidence.
The state (manifest, incumbent, history, study) survives ``kill -9``: a new :class:`SelfImprovement` on the
same ``out_dir`` continues after the last finished cycle; the cycle that was in flight keeps its finished
trials and reruns the places of those that were running.

The loop orchestrates; what it asks lives beside it: :mod:`ssm_metarl.rsi.search` (the space, the proposals,
the sampler), :mod:`ssm_metarl.rsi.decide` (accept, reject, roll back and stop, from measured scores alone)
and :mod:`ssm_metarl.rsi.state` (the manifest, the incumbent on disk, the study, the configuration a loop
belongs to).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from ssm_metarl.adapt.evaluate import evaluate_adaptation
from ssm_metarl.config import AdaptConfig, MAMLConfig, RSIConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.errors import ConfigError, DivergenceError, InputError
from ssm_metarl.meta.evaluate import random_policy_returns
from ssm_metarl.meta.maml import train_maml, train_multitask
from ssm_metarl.models import ActorCritic
from ssm_metarl.rsi import decide, store
from ssm_metarl.rsi import metrics as M
from ssm_metarl.rsi import state as S
from ssm_metarl.rsi.search import SPACE, make_sampler, propose, same_shapes, search_space
from ssm_metarl.rsi.state import check_same_config, config_differences, config_key

logger = logging.getLogger("ssm_metarl.rsi")

TrainFn = Callable[[MAMLConfig, "ActorCritic | None"], tuple[ActorCritic, int]]
"""(config, warm-start policy or None) -> (trained policy, env steps used)."""


class SafetyStop(RuntimeError):
    """The loop stopped itself (consecutive failures, the floor, a budget limit); the reason is the message."""


def train_candidate(cfg: MAMLConfig, warm: ActorCritic | None) -> tuple[ActorCritic, int]:
    """The default trainer: MAML from ``warm`` (or a fresh policy), no run folder."""
    result = train_maml(cfg, policy=warm)
    return result.policy, result.env_steps


@dataclass
class CycleReport:
    cycle: int
    outcome: str
    """installed, rejected, rolled-back or failed"""
    incumbent_score: float
    best_score: float | None
    comparison: dict[str, float] | None


class SelfImprovement:
    """The loop on ``cfg.out_dir`` (module docstring). Creating it on a fresh folder trains and measures the
    starting incumbent and the multi-task baseline; on an existing one it resumes (same config only)."""

    def __init__(self, cfg: RSIConfig, train_fn: TrainFn | None = None, worker: bool = False) -> None:
        self.cfg = cfg
        self.worker = worker
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.out = Path(cfg.out_dir)
        self.train_fn = train_fn or train_candidate
        self.stop_requested = False
        self.started = time.monotonic()
        self.dist = get_family(cfg.family)
        self.objectives = decide.objectives(cfg)
        if len(self.dist.validation) < cfg.eval_tasks or len(self.dist.out_of_range) < cfg.oor_tasks:
            raise ConfigError(
                f"{cfg.family} has {len(self.dist.validation)} validation and {len(self.dist.out_of_range)} "
                f"out-of-range tasks; RSIConfig asks for {cfg.eval_tasks} and {cfg.oor_tasks}"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = store.read_manifest(self.out)
        if worker and manifest is None:
            raise InputError(
                f"{self.out} holds no loop yet: start the loop (`ssm-metarl rsi run|start`) first"
            )
        if manifest is not None:  # before the study: its refusal could not name the flags that differ
            check_same_config(self.out, cfg, manifest.get("config_key") or {})
        self.study = S.open_study(cfg, self.out, manifest is None, self.objectives)
        if manifest is None:
            self.state = self._initialise()
        else:
            self.state = manifest
        if manifest is not None and not worker:
            self._fail_trials_in_flight()
            if manifest.get("stopped") and cfg.restart_stopped:
                store.log_decision(self.out, "restarted", manifest["cycle"], after=manifest["stopped"])
                self.state.update(stopped=None, failures=0)
                store.write_manifest(self.out, self.state)
        self.reference = M.Reference(**self.state["reference"])
        inc = self.state["incumbent"]
        self.incumbent_cfg = MAMLConfig.from_dict(inc["maml"])
        if worker:  # a worker trains candidates of the coordinator's open cycle; it holds no incumbent
            return
        self.incumbent = store.load_checked(self.out / "incumbent", inc["hash"])
        self.incumbent_metrics = self._metrics(
            self._measure(self.incumbent, inc["train_env_steps"], maml=self.incumbent_cfg)
        )

    # ----- set-up -------------------------------------------------------------------------------------
    def _fail_trials_in_flight(self) -> None:
        """Trials left RUNNING by a killed process are failed (so their cycle runs them again): on this machine
        when their process is gone, elsewhere when their heartbeat is older than ``grace_s``."""
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if S.lost(t, self.cfg.grace_s):
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                store.log_decision(
                    self.out,
                    "trial-lost",
                    int(t.user_attrs.get("cycle", -1)),
                    trial=t.number,
                    worker=t.user_attrs.get("worker"),
                )

    def _initialise(self) -> dict[str, Any]:
        cfg = self.cfg
        start = cfg.start.replace(
            run__out_dir=None, run__resume=None, run__progress=False, run__seed=cfg.seed
        )
        logger.info("training the starting incumbent (%d meta-iterations)", start.meta_iterations)
        policy, steps = self.train_fn(start, None)
        baseline = self._train_baseline(start)
        val, oor = self._tasks()
        rand_val, rand_oor = self._random_return(val), self._random_return(oor)
        base_after = M.after_adaptation(self._measure(baseline, 0).val)
        start_m = self._measure(policy, steps)
        ref = M.Reference(
            rand_val, rand_oor, float(M.after_adaptation(start_m.val).mean()), base_after.tolist(), steps
        )
        seconds = time.monotonic() - self.started
        env_steps = steps + start_m.eval_env_steps
        state = S.create(self.out, cfg, start, policy, steps, baseline, ref, env_steps, seconds)
        self.reference = ref
        m = M.compute(start_m, ref, cfg)
        store.log_decision(self.out, "started", 0, metrics=m.to_dict(), reference=ref.to_dict())
        return state

    # ----- measuring ----------------------------------------------------------------------------------
    def _train_baseline(self, start: MAMLConfig) -> ActorCritic:
        """The multi-task baseline: the starting recipe's architecture and env steps, no meta-learning."""
        return train_multitask(start).policy

    def _random_return(self, tasks: list[Any]) -> float:
        return random_policy_returns(self.cfg.family, tasks, episodes=self.cfg.start.inner.episodes, seed=0)

    def _seeds(self, recheck: bool = False) -> tuple[int, ...]:
        return (
            tuple(range(1000, 1000 + self.cfg.recheck_seeds))
            if recheck
            else tuple(range(self.cfg.eval_seeds))
        )

    def _tasks(self, split: str = "validation") -> tuple[list[Any], list[Any]]:
        """The first ``eval_tasks`` tasks of ``split`` (validation for every choice; test only to report) and
        the first ``oor_tasks`` out-of-range tasks."""
        if split not in ("validation", "test"):
            raise ValueError(f"split must be validation or test, got {split!r}")
        tasks = self.dist.validation if split == "validation" else self.dist.test
        return list(tasks[: self.cfg.eval_tasks]), list(self.dist.out_of_range[: self.cfg.oor_tasks])

    def adapt_config(self, maml: MAMLConfig | None) -> AdaptConfig:
        """How a policy is adapted when it is measured: the protocol's steps and episodes (the start's), with
        the step sizes the policy was meta-trained for (``maml.inner``; None: the start's)."""
        inner = self.cfg.start.inner
        return inner if maml is None else inner.replace(lr=maml.inner.lr, later_lr=maml.inner.later_lr)

    def _evaluate(
        self, policy: ActorCritic, tasks: list[Any], seeds: tuple[int, ...], adapt: AdaptConfig
    ) -> Any:
        return evaluate_adaptation(policy, self.cfg.family, tasks, adapt, seeds)

    def _measure(
        self,
        policy: ActorCritic,
        train_env_steps: int,
        recheck: bool = False,
        split: str = "validation",
        maml: MAMLConfig | None = None,
    ) -> M.Measurement:
        val, oor = self._tasks(split)
        seeds, adapt = self._seeds(recheck), self.adapt_config(maml)
        return M.Measurement(
            self._evaluate(policy, val, seeds, adapt),
            self._evaluate(policy, oor, seeds, adapt),
            train_env_steps,
        )

    def measure(
        self,
        policy: ActorCritic,
        train_env_steps: int,
        split: str = "validation",
        maml: MAMLConfig | None = None,
    ) -> M.Measurement:
        """``policy`` measured as every candidate is (``split="test"`` reports; it never chooses), adapted
        with the step sizes of ``maml`` (the config it was meta-trained with; None: the start's)."""
        return self._measure(policy, train_env_steps, split=split, maml=maml)

    def _metrics(self, m: M.Measurement, recheck: bool = False) -> M.Metrics:
        """The metrics of ``m``; a re-check (fresh seeds) has no paired multi-task baseline, so its efficiency
        is taken against the policy itself (0) and the comparison rests on the other four metrics."""
        ref = self.reference
        if recheck:
            ref = dataclasses.replace(ref, baseline_after=M.after_adaptation(m.val).tolist())
        return M.compute(m, ref, self.cfg)

    # ----- one cycle ----------------------------------------------------------------------------------
    def cycle(self) -> CycleReport:
        """Run one cycle (module docstring); returns what it decided. Raises :class:`SafetyStop` when a
        safety rule ends the loop. Workers on the same study (:func:`work`) may train some candidates."""
        self._check_limits()
        n = self.state["cycle"] + 1
        inc_score = self.incumbent_metrics.score
        entry = S.history_entry(self.state, self.state["incumbent"]["hash"])
        open_cycle = {**self.state["incumbent"], "cycle": n, "path": entry["path"]}
        self.study.set_user_attr("open_cycle", open_cycle)
        while not self.stop_requested:
            trial = self._claim(open_cycle)
            if trial is None:
                break
            self._run_candidate(open_cycle, trial)
        return self._decide(n, inc_score, self._collect(open_cycle))

    def _cycle_trials(self, n: int) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("cycle") == n]

    def _claim(self, open_cycle: dict[str, Any]) -> optuna.Trial | None:
        """A new trial of the open cycle, unless it has its ``candidates`` (finished, failed or running)."""
        TS = optuna.trial.TrialState
        taken = [
            t
            for t in self._cycle_trials(open_cycle["cycle"])
            if t.state in (TS.COMPLETE, TS.RUNNING) or (t.state == TS.FAIL and "failed" in t.user_attrs)
        ]
        if len(taken) >= self.cfg.candidates:
            return None
        trial = self.study.ask(search_space(self.cfg, self.cfg.start))
        trial.set_user_attr("cycle", open_cycle["cycle"])
        trial.set_user_attr("worker", self.worker_id)
        trial.set_user_attr("heartbeat", time.time())
        return trial

    def _run_candidate(self, open_cycle: dict[str, Any], trial: optuna.Trial) -> None:
        """Train and measure one candidate; its checkpoint and measurements go to the trial (any machine)."""
        n = open_cycle["cycle"]
        inc_cfg = MAMLConfig.from_dict(open_cycle["maml"])
        cand_cfg = propose(inc_cfg, trial.params, self.cfg, self.cfg.seed + 1000 * n + trial.number)
        warm = (
            store.load_checked(self.out / open_cycle["path"], open_cycle["hash"])
            if same_shapes(cand_cfg.model, inc_cfg.model)
            else None
        )
        beat = S.Heartbeat(trial, self.cfg.heartbeat_s)
        try:
            policy, steps = self.train_fn(cand_cfg, warm)
            bad = [k for k, p in policy.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise DivergenceError(f"the candidate's parameters are not finite: {bad[:3]}")
            total_steps = open_cycle["train_env_steps"] + steps if warm is not None else steps
            measured = self._measure(policy, total_steps, maml=cand_cfg)
            m = self._metrics(measured)
        except (DivergenceError, M.NonFiniteError) as e:
            trial.set_user_attr("failed", str(e))
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        finally:
            beat.stop()
        path = f"candidates/cycle-{n:04d}-trial-{trial.number}"
        digest = store.save_checked(self.out / path, policy, {"family": self.cfg.family})
        trial.set_user_attr(
            "result",
            {
                "metrics": m.values,
                "pairs": m.pairs.tolist(),
                "global": m.global_part,
                "hash": digest,
                "path": path,
                "maml": cand_cfg.to_dict(),
                "train_env_steps": total_steps,
                "env_steps": steps + measured.eval_env_steps,
                "warm_start": warm is not None,
                "score": m.score,
            },
        )
        self.study.tell(trial, self._objective_values(m))

    def _objective_values(self, m: M.Metrics) -> list[float]:
        """What the study is told: the score, or each objective of a Pareto study."""
        return [m.score if k == "score" else m.values[k] for k in self.objectives]

    def _collect(self, open_cycle: dict[str, Any]) -> list[dict[str, Any]]:
        """Wait for every trial of the open cycle (rerunning lost ones here), log them, return the results."""
        TS = optuna.trial.TrialState
        n = open_cycle["cycle"]
        while True:
            trials = self._cycle_trials(n)
            for t in trials:
                if t.state == TS.RUNNING and S.lost(t, self.cfg.grace_s):
                    self.study.tell(t.number, state=TS.FAIL)
                    store.log_decision(
                        self.out, "trial-lost", n, trial=t.number, worker=t.user_attrs.get("worker")
                    )
            if self.stop_requested and not any(t.state == TS.RUNNING for t in self._cycle_trials(n)):
                break
            trial = None if self.stop_requested else self._claim(open_cycle)
            if trial is not None:  # a lost trial's place: run it again here
                self._run_candidate(open_cycle, trial)
                continue
            if not any(t.state == TS.RUNNING for t in self._cycle_trials(n)):
                break
            time.sleep(self.cfg.poll_s)
        logged = {(d.get("trial"), d["kind"]) for d in store.read_decisions(self.out) if d["cycle"] == n}
        results = []
        for t in sorted(self._cycle_trials(n), key=lambda t: t.number):
            if t.state == TS.COMPLETE:
                r = dict(t.user_attrs["result"])
                if "score" not in r:  # a trial finished by an older version: single-objective, its value
                    r["score"] = t.value
                if (t.number, "trial") not in logged:
                    store.log_decision(
                        self.out,
                        "trial",
                        n,
                        trial=t.number,
                        params=t.params,
                        worker=t.user_attrs.get("worker"),
                        metrics={**r["metrics"], "score": r["score"]},
                        warm_start=r["warm_start"],
                        env_steps=r["env_steps"],
                    )
                    self.state["env_steps"] += r["env_steps"]
                results.append({**r, "trial": t.number})
            elif t.state == TS.FAIL and "failed" in t.user_attrs and (t.number, "trial-failed") not in logged:
                store.log_decision(
                    self.out, "trial-failed", n, trial=t.number, params=t.params, error=t.user_attrs["failed"]
                )
        return results

    def _decide(self, n: int, inc_score: float, results: list[dict[str, Any]]) -> CycleReport:
        """Ask :func:`decide.choose`; log its evidence; install the accepted candidate, recheck it on fresh
        seeds and keep it or roll back (:func:`decide.rolls_back`)."""
        metrics = {
            r["trial"]: M.Metrics(r["metrics"], np.asarray(r["pairs"], dtype=float), float(r["global"]))
            for r in results
        }
        choice = decide.choose(metrics, self.incumbent_metrics, self.cfg, n)
        comp = choice.comparison.to_dict() if choice.comparison is not None else None
        report = CycleReport(n, choice.outcome, inc_score, choice.best_score, comp)
        if choice.outcome == "failed":
            return self._end_cycle(n, report, choice.failure)
        if choice.best is None:  # a Pareto study: no candidate dominates the incumbent
            store.log_decision(
                self.out,
                "rejected",
                n,
                reason=f"{decide.NONE_DOMINATES} on {list(self.objectives)}",
                candidates={t: m.to_dict() for t, m in metrics.items()},
                incumbent=self.incumbent_metrics.to_dict(),
            )
            return self._end_cycle(n, report, choice.failure)
        best, best_m = next(r for r in results if r["trial"] == choice.best), metrics[choice.best]
        evidence = {
            "trial": choice.best,
            "candidate": best_m.to_dict(),
            "incumbent": self.incumbent_metrics.to_dict(),
        }
        if choice.outcome == "rejected":
            store.log_decision(self.out, "rejected", n, comparison=comp, **evidence)
            return self._end_cycle(n, report, choice.failure)
        digest, total_steps = best["hash"], best["train_env_steps"]
        store.log_decision(self.out, "accepted", n, comparison=comp, hash=digest, **evidence)
        previous = (self.incumbent, self.state["incumbent"], self.incumbent_metrics, self.incumbent_cfg)
        self.incumbent = S.install(
            self.out,
            self.state,
            self.out / best["path"],
            digest,
            n,
            best["maml"],
            total_steps,
            self.cfg.family,
        )
        self.incumbent_cfg = MAMLConfig.from_dict(best["maml"])
        # the full re-evaluation, on fresh seeds: the installed weights against the previous incumbent's
        new_re = self._metrics(
            self._measure(self.incumbent, total_steps, recheck=True, maml=self.incumbent_cfg), recheck=True
        )
        old_re = self._metrics(
            self._measure(previous[0], previous[1]["train_env_steps"], recheck=True, maml=previous[3]),
            recheck=True,
        )
        recheck = decide.recheck(new_re, old_re, self.cfg, n)
        if decide.rolls_back(recheck):
            self.incumbent = S.restore(self.out, self.state, previous[1], self.cfg.family)
            self.incumbent_metrics, self.incumbent_cfg = previous[2], previous[3]
            store.log_decision(
                self.out, "rolled-back", n, restored=previous[1]["hash"], recheck=recheck.to_dict()
            )
            report = CycleReport(n, "rolled-back", inc_score, best_m.score, recheck.to_dict())
            return self._end_cycle(n, report, decide.REGRESSED)
        self.incumbent_metrics = best_m
        S.record_installed(self.out, self.state, n, self.incumbent, self.cfg.family)
        store.log_decision(self.out, "installed", n, hash=digest, recheck=recheck.to_dict())
        return self._end_cycle(n, CycleReport(n, "installed", best_m.score, best_m.score, comp), None)

    def _end_cycle(self, n: int, report: CycleReport, failure: str | None) -> CycleReport:
        self.state["cycle"] = n
        self.state["failures"] = decide.failures_after(self.state["failures"], failure is not None)
        if self.cfg.objectives == "pareto":  # in the manifest, so `rsi status` shows it without the study
            self.state["pareto_front"] = self.pareto_front()
        self.state["seconds"] = self.state.get("seconds", 0.0) + (time.monotonic() - self.started)
        self.started = time.monotonic()
        if failure:
            store.log_decision(self.out, "failed", n, reason=failure, consecutive=self.state["failures"])
        store.write_manifest(self.out, self.state)
        reason = decide.stop_after_cycle(self.state["failures"], self.incumbent_metrics.score, self.cfg)
        if reason is not None:
            self._stop(reason)
        return report

    def _check_limits(self) -> None:
        if self.state.get("stopped"):
            raise SafetyStop(
                f"this loop stopped earlier: {self.state['stopped']} (--restart_stopped continues it)"
            )
        minutes = (self.state.get("seconds", 0.0) + time.monotonic() - self.started) / 60
        reason = decide.limit_reached(self.state["env_steps"], minutes, self.cfg)
        if reason is not None:
            self._stop(reason)

    def _stop(self, reason: str) -> None:
        self.state["stopped"] = reason
        store.write_manifest(self.out, self.state)
        store.log_decision(self.out, "stopped", self.state["cycle"], reason=reason)
        raise SafetyStop(reason)

    # ----- the whole loop -----------------------------------------------------------------------------
    def run(self, cycles: int | None = None, on_cycle: Callable[[CycleReport], None] | None = None) -> str:
        """Run until ``cycles`` (default ``cfg.cycles``) cycles have finished in this out_dir, a stop is
        requested, or a safety rule stops the loop; returns why it ended."""
        target = cycles if cycles is not None else self.cfg.cycles
        while self.state["cycle"] < target:
            if self.stop_requested:
                return "stop requested"
            try:
                report = self.cycle()
            except SafetyStop as e:
                return str(e)
            if on_cycle is not None:
                on_cycle(report)
        return f"{self.state['cycle']} cycles done"

    def status(self) -> dict[str, Any]:
        """The manifest's summary: cycle, failures, incumbent and its metrics, whether it stopped."""
        return {
            "cycle": self.state["cycle"],
            "failures": self.state["failures"],
            "env_steps": self.state["env_steps"],
            "incumbent": {**self.state["incumbent"], "metrics": self.incumbent_metrics.to_dict()},
            "stopped": self.state["stopped"],
            **({"pareto_front": self.pareto_front()} if self.cfg.objectives == "pareto" else {}),
        }

    def pareto_front(self) -> list[dict[str, Any]]:
        """The study's Pareto front over the objectives (every finished candidate of every cycle): trial,
        cycle, the objectives' values and the score, sorted by score."""
        front = [
            {
                "trial": t.number,
                "cycle": t.user_attrs.get("cycle"),
                **dict(zip(self.objectives, t.values, strict=True)),
                "score": t.user_attrs["result"]["score"],
            }
            for t in self.study.best_trials
        ]
        return sorted(front, key=lambda p: -p["score"])


def work(
    cfg: RSIConfig,
    train_fn: TrainFn | None = None,
    max_trials: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """A worker: train candidates of the coordinator's open cycles on the shared study and ``out_dir``, until
    ``should_stop()``, ``max_trials`` trials, or the loop stops. Returns the trials it ran. Every worker needs the
    same configuration, the study's storage URL (``--storage``) and ``out_dir`` on a shared filesystem."""
    out = Path(cfg.out_dir)
    while store.read_manifest(out) is None:  # the coordinator creates the loop (and trains the start) first
        if should_stop():
            return 0
        time.sleep(cfg.poll_s)
    loop = SelfImprovement(cfg, train_fn, worker=True)
    done = 0
    while not should_stop() and (max_trials is None or done < max_trials):
        state = store.read_manifest(out) or {}
        if state.get("stopped"):
            logger.info("the loop stopped (%s); the worker ends", state["stopped"])
            break
        open_cycle = loop.study.user_attrs.get("open_cycle")
        trial = (
            loop._claim(open_cycle)
            if open_cycle is not None and open_cycle["cycle"] == state.get("cycle", -1) + 1
            else None
        )
        if trial is None or open_cycle is None:
            time.sleep(cfg.poll_s)
            continue
        loop._run_candidate(open_cycle, trial)
        done += 1
    return done


__all__ = [
    "SPACE",
    "CycleReport",
    "SafetyStop",
    "SelfImprovement",
    "check_same_config",
    "config_differences",
    "config_key",
    "make_sampler",
    "propose",
    "same_shapes",
    "search_space",
    "train_candidate",
    "work",
]
