"""The self-improvement loop's decisions, from measured scores alone: no Optuna, no training, no files.

The rule, in the order a cycle meets it:

1. Before a cycle, the loop stops at ``max_env_steps`` env steps, then at ``max_minutes`` minutes
   (:func:`limit_reached`).
2. No candidate finished: the cycle fails (:func:`choose`).
3. With ``objectives="pareto"`` only a candidate that dominates the incumbent (every objective at least the
   incumbent's, one above it) is eligible; none: rejected (:func:`eligible`).
4. The eligible candidate of highest score is accepted only when the lower end of the paired bootstrap
   interval of score(candidate) - score(incumbent) is above 0; a tie or worse is rejected (:func:`choose`).
5. After the install, both are re-measured on fresh seeds; a difference of 0 or below rolls back
   (:func:`recheck`, :func:`rolls_back`).
6. A cycle that was not installed failed: it adds one to the consecutive failures, an installed one resets
   them (:func:`failures_after`); the loop stops at ``max_failures`` of them, then with the incumbent's
   score below ``floor`` (:func:`stop_after_cycle`).

Each function takes plain data: the candidates' :class:`~ssm_metarl.rsi.metrics.Metrics` by trial number,
the incumbent's, a :class:`~ssm_metarl.rsi.metrics.Comparison`, counts and the :class:`RSIConfig`'s
thresholds. :class:`~ssm_metarl.rsi.loop.SelfImprovement` measures, asks these, then installs, restores and logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ssm_metarl.config import RSIConfig
from ssm_metarl.rsi import metrics as M

ALL_FAILED = "every candidate failed"
NONE_DOMINATES = "no candidate dominates the incumbent"
NOT_BETTER = "no candidate beat the incumbent"
REGRESSED = "the re-evaluation regressed"
RECHECK_SEED = 10_000
"""The recheck's bootstrap seed is this plus the cycle (the choice's is the cycle)."""


@dataclass(frozen=True)
class Choice:
    """What a cycle's candidates decide, before anything is installed."""

    outcome: Literal["failed", "rejected", "accepted"]
    failure: str | None
    """why the cycle failed (None when a candidate is accepted)"""
    best: int | None
    """the trial of the best eligible candidate (None when none finished or none is eligible)"""
    best_score: float | None
    """the best eligible candidate's score (no eligible one: the best score of all; none finished: None)"""
    comparison: M.Comparison | None
    """the best eligible candidate against the incumbent (None when there is none)"""


def objectives(cfg: RSIConfig) -> tuple[str, ...]:
    """What the study maximises: the weighted score, or each metric of weight above 0 in a Pareto study."""
    return M.objectives(cfg) if cfg.objectives == "pareto" else ("score",)


def eligible(candidates: Mapping[int, M.Metrics], incumbent: M.Metrics, cfg: RSIConfig) -> list[int]:
    """The trials that may be chosen, in the order given: every one, or in a Pareto study (no trade-offs)
    those whose every objective is at least the incumbent's and one is above it."""
    if cfg.objectives != "pareto":
        return list(candidates)
    names = objectives(cfg)
    return [t for t, m in candidates.items() if M.dominates(m.values, incumbent.values, names)]


def choose(candidates: Mapping[int, M.Metrics], incumbent: M.Metrics, cfg: RSIConfig, cycle: int) -> Choice:
    """The cycle's choice among ``candidates`` (trial -> metrics on the incumbent's (seed, task) pairs): the
    highest score among the eligible ones (the first such trial on a tie), accepted when the lower end of its
    paired bootstrap interval against ``incumbent`` (``cfg.bootstrap`` resamples, quantile
    ``1 - cfg.confidence``, seeded with ``cycle``) is above zero."""
    if not candidates:
        return Choice("failed", ALL_FAILED, None, None, None)
    pool = eligible(candidates, incumbent, cfg)
    if not pool:
        best_score = max(m.score for m in candidates.values())
        return Choice("rejected", NONE_DOMINATES, None, best_score, None)
    best = max(pool, key=lambda t: candidates[t].score)
    comparison = M.compare(candidates[best], incumbent, cfg, seed=cycle)
    if not comparison.better:
        return Choice("rejected", NOT_BETTER, best, candidates[best].score, comparison)
    return Choice("accepted", None, best, candidates[best].score, comparison)


def recheck(installed: M.Metrics, previous: M.Metrics, cfg: RSIConfig, cycle: int) -> M.Comparison:
    """The installed candidate against the previous incumbent, both re-measured on the fresh recheck seeds."""
    return M.compare(installed, previous, cfg, seed=RECHECK_SEED + cycle)


def rolls_back(recheck: M.Comparison) -> bool:
    """Restore the previous incumbent: on fresh seeds the installed one is not better (difference <= 0)."""
    return recheck.difference <= 0.0


def failures_after(failures: int, failed: bool) -> int:
    """The consecutive failed cycles after a cycle: one more when it failed, else none."""
    return failures + 1 if failed else 0


def stop_after_cycle(failures: int, incumbent_score: float, cfg: RSIConfig) -> str | None:
    """Why the loop stops after a cycle (None: it goes on): ``cfg.max_failures`` consecutive failed cycles
    (the emergency stop), else the incumbent's score below ``cfg.floor``."""
    if failures >= cfg.max_failures:
        return f"emergency stop: {failures} consecutive failed cycles"
    if cfg.floor is not None and incumbent_score < cfg.floor:
        return f"the incumbent's score {incumbent_score:.3f} is below the floor {cfg.floor}"
    return None


def limit_reached(env_steps: int, minutes: float, cfg: RSIConfig) -> str | None:
    """Why the loop stops before a cycle (None: it goes on): the env steps used so far reach
    ``cfg.max_env_steps``, else the minutes run so far reach ``cfg.max_minutes``."""
    if env_steps >= cfg.max_env_steps:
        return f"env-step limit reached ({env_steps} >= {cfg.max_env_steps})"
    if minutes >= cfg.max_minutes:
        return f"time limit reached ({minutes:.1f} >= {cfg.max_minutes} minutes)"
    return None


__all__ = [
    "ALL_FAILED",
    "NONE_DOMINATES",
    "NOT_BETTER",
    "RECHECK_SEED",
    "REGRESSED",
    "Choice",
    "choose",
    "eligible",
    "failures_after",
    "limit_reached",
    "objectives",
    "recheck",
    "rolls_back",
    "stop_after_cycle",
]
