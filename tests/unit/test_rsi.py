"""The self-improvement loop's decisions, with the measuring replaced by a synthetic one.

A policy's "quality" is written in its actor bias: ``bias[0]`` is what the validation seeds see and
``bias[1]`` what the fresh re-check seeds see, so a test decides exactly which candidate is better, which
one only looks better (and must be rolled back), which diverges and which returns NaN. Everything else,
Optuna, the checkpoints, hashes, manifest and decisions log, is the real loop.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from ssm_metarl.config import AdaptConfig, MAMLConfig, ModelConfig, RSIConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.errors import CheckpointError, ConfigError, DivergenceError, InputError
from ssm_metarl.meta.maml import build_meta_policy
from ssm_metarl.results import Returns
from ssm_metarl.rsi import metrics as M
from ssm_metarl.rsi import store
from ssm_metarl.rsi.loop import SelfImprovement

torch.set_num_threads(1)
START = MAMLConfig(
    meta_iterations=1,
    meta_batch_size=2,
    model=ModelConfig(kind="mlp", hidden_dim=8, num_layers=1),
    inner=AdaptConfig(steps=1, lr=0.5, episodes=2, baseline="linear"),
    outer_epochs=1,
)


def config(tmp_path: Path, **kw) -> RSIConfig:
    base = dict(
        start=START.replace(run__out_dir=str(tmp_path / "rsi")),
        cycles=3,
        candidates=1,
        candidate_iterations=1,
        eval_tasks=4,
        eval_seeds=3,
        recheck_seeds=3,
        oor_tasks=2,
        search=("outer_lr_scale", "inner_lr_scale"),  # same shapes: every candidate warm-starts
    )
    return RSIConfig(**{**base, **kw})


class Scripted:
    """A train_fn that makes each candidate as the script says: better, fake, fail, nan, worse."""

    def __init__(self, *plan: str, resumed: bool = False) -> None:
        self.plan = deque(plan)
        self.calls = 1 if resumed else 0  # a resumed loop trains no starting incumbent

    def __call__(self, cfg: MAMLConfig, warm):
        self.calls += 1
        policy = warm if warm is not None else build_meta_policy(cfg, get_family(cfg.family))
        if self.calls == 1:  # the starting incumbent: quality 0
            with torch.no_grad():
                policy.actor.bias.zero_()
            return policy, 1000
        assert warm is not None, "the tests search step sizes only, so every candidate warm-starts"
        step = self.plan.popleft() if self.plan else "worse"
        with torch.no_grad():
            b = policy.actor.bias
            if step == "fail":
                raise DivergenceError("injected divergence")
            if step == "nan":
                next(policy.parameters()).fill_(float("nan"))
            shift = {"better": (1.0, 1.0), "fake": (1.0, -1.0), "worse": (-1.0, -1.0), "tradeoff": (2.0, 2.0)}
            b[0] += shift.get(step, (0.0, 0.0))[0]
            b[1] += shift.get(step, (0.0, 0.0))[1]
            if step == "tradeoff":  # a better return, bought with a spread over seeds (worse stability)
                policy.critic.bias += 1.0
        return policy, 1000


class Synthetic(SelfImprovement):
    """The loop with a synthetic measurement (module docstring)."""

    def _train_baseline(self, start):
        p = build_meta_policy(start, get_family(start.family))
        with torch.no_grad():
            p.actor.bias.fill_(-1.0)
        return p

    def _random_return(self, tasks):
        return -10.0

    def _measure(self, policy, train_env_steps, recheck=False, split="validation", maml=None):
        b = policy.actor.bias.detach()
        q = float(b[1] if recheck else b[0])
        S = self.cfg.recheck_seeds if recheck else self.cfg.eval_seeds
        I, K, E = self.cfg.eval_tasks, self.cfg.start.inner.steps + 1, 2
        noise = np.random.default_rng(7 if recheck else 0).normal(0.0, 0.05, (S, I, 1, E))
        spread = float(policy.critic.bias.detach()[0]) * (np.arange(S) - (S - 1) / 2).reshape(S, 1, 1, 1)
        vals = -5.0 + q + noise + spread + np.zeros((S, I, K, E))
        if any(not bool(torch.isfinite(p).all()) for p in policy.parameters()):
            vals[:] = np.nan
        seeds = tuple(range(S))
        steps = np.full((S, I, K), 100)
        val = Returns("val", vals, steps, seeds)
        oor = Returns("oor", vals[:, : self.cfg.oor_tasks], steps[:, : self.cfg.oor_tasks], seeds)
        return M.Measurement(val, oor, train_env_steps)


def make(tmp_path: Path, plan: tuple[str, ...] = (), **kw) -> Synthetic:
    return Synthetic(config(tmp_path, **kw), train_fn=Scripted(*plan))


# ----- metrics -------------------------------------------------------------------------------------------
def test_metrics_are_normalised_to_random_and_start(tmp_path):
    loop = make(tmp_path)
    ref = loop.reference
    assert ref.random_val == -10.0 and ref.start_val == pytest.approx(-5.0, abs=0.05)
    m = loop.incumbent_metrics.values
    assert m["return"] == pytest.approx(1.0, abs=1e-9)  # the start is 1 by definition
    assert m["speed"] == pytest.approx(1.0, abs=1e-9)  # flat adaptation curve: the area equals the end
    assert m["efficiency"] == pytest.approx(1 / ref.scale, rel=0.05)  # baseline is 1 return unit worse
    assert m["stability"] <= 0 and math.isfinite(m["generalisation"])
    assert set(m) == set(M.METRICS)


def test_compare_needs_a_gain_beyond_the_spread():
    cfg = RSIConfig()
    rng = np.random.default_rng(0)
    a = M.Metrics({}, rng.normal(0, 1, (3, 10)), 0.0)
    same = M.Metrics({}, a.pairs.copy(), 0.0)
    jitter = rng.normal(0.0, 1.0, (3, 10))
    noisy = M.Metrics({}, a.pairs + jitter - jitter.mean() + 0.05, 0.0)  # a mean gain of 0.05, sd 1
    clear = M.Metrics({}, a.pairs + 0.5, 0.0)
    assert not M.compare(same, a, cfg).better
    assert not M.compare(noisy, a, cfg).better  # a raw gain inside the noise is not an improvement
    c = M.compare(clear, a, cfg)
    assert c.better and c.low == pytest.approx(0.5) and c.difference == pytest.approx(0.5)


def test_non_finite_returns_raise(tmp_path):
    loop = make(tmp_path)
    policy = build_meta_policy(START, get_family(START.family))
    with torch.no_grad():
        next(policy.parameters()).fill_(float("nan"))
    with pytest.raises(M.NonFiniteError):
        loop._metrics(loop._measure(policy, 10))


# ----- the loop's decisions ------------------------------------------------------------------------------
def test_a_better_candidate_is_installed_with_exactly_its_weights(tmp_path):
    loop = make(tmp_path, ("better",))
    report = loop.cycle()
    assert report.outcome == "installed"
    inc = loop.state["incumbent"]
    assert inc["cycle"] == 1 and store.weights_hash(loop.incumbent) == inc["hash"]
    on_disk = store.load_checked(Path(loop.cfg.out_dir) / "incumbent", inc["hash"])
    cand = Path(loop.cfg.out_dir) / "candidates" / f"cycle-0001-trial-{report and 0}"
    assert store.weights_hash(on_disk) == store.weights_hash(store.load_checked(cand, inc["hash"]))
    kinds = [d["kind"] for d in store.read_decisions(Path(loop.cfg.out_dir))]
    assert kinds == ["started", "trial", "accepted", "installed"]


def test_a_regressing_install_rolls_back_bit_for_bit(tmp_path):
    loop = make(tmp_path, ("fake",))
    before = {k: v.clone() for k, v in loop.incumbent.state_dict().items()}
    before_hash = loop.state["incumbent"]["hash"]
    report = loop.cycle()
    assert report.outcome == "rolled-back"
    assert loop.state["incumbent"]["hash"] == before_hash and loop.state["failures"] == 1
    restored = store.load_checked(Path(loop.cfg.out_dir) / "incumbent", before_hash)
    for name, t in restored.state_dict().items():
        assert torch.equal(t, before[name]), name
    kinds = [d["kind"] for d in store.read_decisions(Path(loop.cfg.out_dir))]
    assert kinds[-3:] == ["accepted", "rolled-back", "failed"]


def test_emergency_stop_after_exactly_three_consecutive_failures(tmp_path):
    loop = make(tmp_path, ("fail", "worse", "nan", "better"), cycles=10)
    reason = loop.run()
    assert reason == "emergency stop: 3 consecutive failed cycles"
    assert loop.state["cycle"] == 3 and loop.state["stopped"] == reason
    with pytest.raises(Exception, match="stopped earlier"):
        loop.cycle()


def test_the_score_accepts_a_trade_off_that_pareto_mode_refuses(tmp_path):
    score_loop = make(tmp_path / "score", ("tradeoff",), w_efficiency=0.0)
    assert score_loop.cycle().outcome == "installed"
    loop = make(tmp_path / "pareto", ("tradeoff",), w_efficiency=0.0, objectives="pareto", sampler="nsga2")
    assert loop.objectives == ("return", "speed", "stability")
    report = loop.cycle()
    assert report.outcome == "rejected" and report.best_score > report.incumbent_score
    rejected = [d for d in store.read_decisions(Path(loop.cfg.out_dir)) if d["kind"] == "rejected"]
    assert "dominates" in rejected[0]["reason"]
    assert rejected[0]["candidates"]["0"]["stability"] < rejected[0]["incumbent"]["stability"]


def test_pareto_mode_installs_a_dominating_candidate_and_reports_the_front(tmp_path):
    loop = make(
        tmp_path, ("tradeoff", "better"), candidates=2, w_efficiency=0.0, objectives="pareto", sampler="nsga2"
    )
    assert len(loop.study.directions) == 3
    report = loop.cycle()
    assert report.outcome == "installed"
    installed = [d for d in store.read_decisions(Path(loop.cfg.out_dir)) if d["kind"] == "accepted"]
    assert installed[0]["trial"] == 1  # "better" dominates; "tradeoff" scores higher but worsens stability
    front = loop.status()["pareto_front"]
    assert {p["trial"] for p in front} == {0, 1}  # neither dominates the other
    assert set(front[0]) == {"trial", "cycle", "return", "speed", "stability", "score"}
    assert front[0]["score"] >= front[1]["score"]
    assert store.read_manifest(Path(loop.cfg.out_dir))["pareto_front"] == front  # what `rsi status` prints


def test_a_pareto_study_is_not_reused_as_a_score_study(tmp_path):
    make(tmp_path, objectives="pareto")
    with pytest.raises(InputError, match="another configuration"):
        make(tmp_path)


def test_non_consecutive_failures_do_not_stop(tmp_path):
    loop = make(tmp_path, ("fail", "worse", "better", "fail", "nan"), cycles=5)
    assert loop.run() == "5 cycles done"
    assert loop.state["failures"] == 2 and loop.state["stopped"] is None
    failed = [d for d in store.read_decisions(Path(loop.cfg.out_dir)) if d["kind"] == "trial-failed"]
    assert len(failed) == 3 and any("not finite" in d["error"] for d in failed)  # NaN: a failed trial


def test_floor_stops_the_loop(tmp_path):
    loop = make(tmp_path, ("worse",), floor=100.0)
    assert "below the floor" in loop.run()


def test_env_step_limit_stops_before_a_cycle(tmp_path):
    loop = make(tmp_path, max_env_steps=1)
    assert loop.run().startswith("env-step limit reached")
    assert loop.state["cycle"] == 0


# ----- state: resume and refusals ------------------------------------------------------------------------
def test_resume_continues_after_the_last_finished_cycle(tmp_path):
    loop = make(tmp_path, ("better",))
    loop.cycle()
    trials = len(loop.study.trials)
    again = Synthetic(config(tmp_path), train_fn=Scripted("better", resumed=True))
    assert again.state["cycle"] == 1 and again.state["incumbent"]["hash"] == loop.state["incumbent"]["hash"]
    assert len(again.study.trials) == trials
    assert again.cycle().outcome == "installed" and again.state["cycle"] == 2


def test_a_trial_left_running_by_a_killed_process_is_failed_on_resume(tmp_path):
    loop = make(tmp_path)
    loop.study.ask()  # the trial a killed process was running
    again = Synthetic(config(tmp_path), train_fn=Scripted(resumed=True))
    states = [t.state.name for t in again.study.trials]
    assert states == ["FAIL"]
    assert store.read_decisions(Path(again.cfg.out_dir))[-1]["kind"] == "trial-lost"


def test_another_configuration_on_the_same_folder_is_refused(tmp_path):
    make(tmp_path)
    with pytest.raises(InputError, match="another configuration"):
        Synthetic(config(tmp_path, w_speed=0.0), train_fn=Scripted(resumed=True))


def test_a_study_made_by_another_configuration_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    make(tmp_path / "a", storage=url)
    with pytest.raises(InputError, match="--study_name"):
        make(tmp_path / "b", storage=url, w_speed=0.0)
    make(tmp_path / "c", storage=url, w_speed=0.0, study_name="other")  # a new name is fine


def test_a_tampered_incumbent_is_refused(tmp_path):
    loop = make(tmp_path)
    path = Path(loop.cfg.out_dir) / "incumbent"
    policy = store.load_checked(path, loop.state["incumbent"]["hash"])
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    store.save_policy(path, policy)
    with pytest.raises(CheckpointError, match="changed after it was written"):
        Synthetic(config(tmp_path), train_fn=Scripted(resumed=True))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "SQLAlchemy URL"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open the Optuna storage"),
    ],
)
def test_bad_storage_urls_are_refused(tmp_path, url, message):
    with pytest.raises(InputError, match=message):
        make(tmp_path, storage=url)


@pytest.mark.parametrize(
    "bad",
    [
        {"w_return": float("nan")},
        {"w_return": 0.0, "w_speed": 0.0, "w_efficiency": 0.0, "w_stability": 0.0},
        {"candidates": 0},
        {"candidate_iterations": 0},
        {"floor": float("inf")},
    ],
)
def test_bad_budgets_and_weights_are_config_errors(tmp_path, bad):
    with pytest.raises(ConfigError):
        config(tmp_path, **bad)


def test_too_many_evaluation_tasks_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="validation"):
        make(tmp_path, eval_tasks=10_000)


def test_the_search_may_switch_the_backbone_kind_when_allowed(tmp_path):
    from ssm_metarl.rsi.loop import propose, same_shapes, search_space

    cfg = config(tmp_path, kinds=("gru", "ssm"))
    space = search_space(cfg, cfg.start)
    assert space["kind"].choices == ("gru", "mlp", "ssm")
    cand = propose(cfg.start, {"kind": "ssm", "hidden_scale": 1.2}, cfg, seed=3)
    assert cand.model.kind == "ssm" and cand.model.hidden_dim == round(8 * 1.2)
    assert not same_shapes(cand.model, cfg.start.model)  # a new kind never warm-starts
    assert "kind" not in search_space(config(tmp_path), cfg.start)  # not allowed: the kind stays
    assert propose(cfg.start, {}, config(tmp_path), seed=0).model == cfg.start.model
