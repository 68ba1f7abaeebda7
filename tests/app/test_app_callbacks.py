"""The app's tab functions without a browser or a server: what each control leads to, on tiny budgets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssm_metarl.app.adaptation import AdaptRequest, hand_task, physics_fields, pick_tasks, run_adaptation
from ssm_metarl.app.models import model_info, zero_shot_rows
from ssm_metarl.app.render import episodes_gif, record_episode
from ssm_metarl.app.session import AppSession, UserError
from ssm_metarl.app.training import TrainRequest, request_stop, run_training
from ssm_metarl.checkpoint import load_metadata, load_policy
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.pretrained import list_pretrained, pretrained_info

TINY_MAML = dict(
    family="cartpole-physics",
    kind="ssm",
    method="MAML",
    iterations=2,
    meta_batch=1,
    trajectories=2,
    hidden_dim=16,
)


@pytest.fixture
def session(tmp_path, tiny_checkpoint) -> AppSession:
    s = AppSession(tmp_path)
    s.trained["tiny"] = tiny_checkpoint
    return s


def test_session_names_and_errors(session):
    assert "tiny" in session.choices()
    assert session.unique_name("tiny") == "tiny-2"
    assert session.unique_name("my model") == "my-model" and session.unique_name("../../etc") == "etc"
    with pytest.raises(UserError, match="Pick a model"):
        session.path_of(None)
    with pytest.raises(UserError, match="no model named 'nope'"):
        session.path_of("nope")


def test_model_info_of_a_trained_checkpoint(session):
    info = model_info(session, "tiny")
    policy = load_policy(session.path_of("tiny"))
    assert (info.family, info.algo, info.kind) == ("cartpole-physics", "maml", "ssm")
    assert info.parameters == sum(p.numel() for p in policy.parameters())
    assert info.inner_lr == pytest.approx(0.1) and not info.shipped
    assert info.zero_shot == [["not measured", "", "", "", ""]]


def test_zero_shot_rows_read_the_shipped_results_format():
    curve = {
        "after_0": {"mean": 20.5, "ci95": 1.25},
        "after_1": {"mean": 30.0, "ci95": 0.0},
        "after_3": {"mean": 41.0, "ci95": 2.0},
    }
    meta = {"results": {"eval_tasks_per_split": 10, "test": {"maml": curve, "random": 22.0, "constant": 9.0}}}
    assert zero_shot_rows(meta) == [["held-out tasks (10)", "20.5 ± 1.2", "30.0", "41.0 ± 2.0", "22.0"]]


def test_zero_shot_rows_read_the_in_context_results_format():
    eps = [{"mean": -16.0, "ci95": 2.0}, {"mean": -9.0, "ci95": 1.0}, {"mean": -8.0, "ci95": 1.0}]
    meta = {"results": {"eval_tasks_per_split": 10, "test": {"episodes": eps, "random": -62.0}}}
    assert zero_shot_rows(meta) == [
        ["held-out tasks (10)", "-16.0 ± 2.0", "-9.0 ± 1.0", "-8.0 ± 1.0", "-62.0"]
    ]


@pytest.mark.parametrize("name", list_pretrained())
def test_every_shipped_model_shows_every_measured_return(session, name):
    # the navigation-ssm (RL²) card once showed empty cells: its results.json has "episodes", not "maml"
    rows = model_info(session, name).zero_shot
    splits = ["training tasks", "held-out tasks"]
    if get_family(pretrained_info(name)["family"]).out_of_range:  # bandit families have none
        splits.append("out-of-range tasks")
    assert [r[0].split(" (")[0] for r in rows] == splits
    assert all(cell for row in rows for cell in row), rows


def test_meta_training_streams_saves_and_registers(session):
    req = TrainRequest(name="fresh", **TINY_MAML)
    progress = list(run_training(session, req))
    assert [p.rows[-1]["iteration"] for p in progress if not p.done] == [1, 2]
    final = progress[-1]
    assert final.done and final.label == "fresh" and "saved as **fresh**" in final.message
    meta = load_metadata(session.trained["fresh"])
    assert meta["algo"] == "maml" and meta["family"] == "cartpole-physics" and not meta["cancelled"]
    assert meta["iterations_done"] == 2 and meta["app_evaluation"]["tasks"] == 3
    assert load_policy(session.trained["fresh"]).describe()["kind"] == "ssm"
    assert not session.busy


def test_cancel_stops_after_the_current_iteration(session):
    req = TrainRequest(name="cancelled", **{**TINY_MAML, "iterations": 50})
    assert "Nothing to cancel" in request_stop(session)
    runs = run_training(session, req)
    first = next(runs)
    assert first.rows[-1]["iteration"] == 1
    assert "Cancelling" in request_stop(session)
    final = list(runs)[-1]
    meta = load_metadata(session.trained[final.label])
    assert meta["cancelled"] and meta["iterations_done"] < 50 and "Cancelled" in final.message


def test_training_requests_that_cannot_run_are_explained(session):
    with pytest.raises(UserError, match="at least 3,200 env steps"):
        next(run_training(session, TrainRequest(family="navigation-2d", method="RL²", total_steps=2048)))
    session.busy = True
    with pytest.raises(UserError, match="already meta-training"):
        next(run_training(session, TrainRequest(**TINY_MAML)))


def test_adaptation_compares_modes_and_renders_the_measured_policies(session):
    req = AdaptRequest("tiny", "held-out", num_tasks=2, steps=1, seeds=1, trajectories=2, render=True)
    out = run_adaptation(session, req)
    assert out.headers == ["policy", "0 steps", "1 step", "env steps per step"]
    assert [r[0] for r in out.rows] == ["random policy", "standard", "hybrid", "hybrid - standard"]
    c = out.results
    assert c["standard"].tasks == tuple(str(t) for t in get_family("cartpole-physics").test[:2])
    assert c["standard"].seeds == (0,)
    assert out.rows[1][1] == out.rows[2][1]  # the same weights and seeds before adaptation
    for mode in ("standard", "hybrid"):  # the rendered "after" policy is the one the table measured
        np.testing.assert_allclose(out.replayed[mode], c[mode].values[0, 0].mean(-1))
    gif = Image.open(out.gif)
    assert gif.n_frames > 1 and gif.size[0] == 3 * 240
    assert len(out.figure.axes[0].lines) == 3  # standard, hybrid, random
    assert "standard and hybrid adaptation" in out.render_note


def test_the_adaptation_tabs_default_shows_in_context_adaptation_and_its_paths(session):
    """The tab opens on the shipped navigation-ssm (ui.DEFAULT_ADAPT_MODEL): its in-context episodes beside the
    random policy, and the paths of one trial drawn."""
    from ssm_metarl.app.ui import DEFAULT_ADAPT_MODEL, _default_model

    assert _default_model(DEFAULT_ADAPT_MODEL) == "navigation-ssm"
    req = AdaptRequest("navigation-ssm", "held-out", num_tasks=2, seeds=1, trajectories=2, render=True)
    out = run_adaptation(session, req)
    assert [r[0] for r in out.rows] == ["random policy", "in-context (RL²)"]
    episodes = [float(cell.split(" ")[0]) for cell in out.rows[1][1:5]]
    assert episodes[-1] > episodes[0]  # the last episode of the trial beats the first: it adapted
    assert out.gif is not None and out.gif.endswith(".png")
    img = Image.open(out.gif)
    assert img.size[0] > 200 and img.size[1] > 200
    assert "searches for the goal" in out.render_note


@pytest.mark.parametrize("mode", ["standard", "hybrid"])
def test_adaptation_runs_only_the_chosen_mode(session, mode):
    req = AdaptRequest("tiny", "held-out", num_tasks=1, steps=1, seeds=1, trajectories=2, modes=mode)
    out = run_adaptation(session, req)
    assert [r[0] for r in out.rows] == ["random policy", mode]  # no other mode, no paired difference
    assert list(out.results) == ["random policy", mode]
    assert [line.get_label() for line in out.figure.axes[0].lines] == ["random policy", mode]
    assert list(out.replayed) == [mode]
    np.testing.assert_allclose(out.replayed[mode], out.results[mode].values[0, 0].mean(-1))
    gif = Image.open(out.gif)
    assert gif.size[0] == 2 * 240  # before, and after the one chosen mode
    assert f"of {mode} adaptation" in out.render_note
    assert ("hybrid replay buffer" in out.summary) == (mode == "hybrid")


def test_unknown_adaptation_mode_is_refused(session):
    with pytest.raises(
        UserError, match=r"Unknown adaptation mode 'neither'; pick one of standard, hybrid, both"
    ):
        run_adaptation(session, AdaptRequest("tiny", modes="neither"))
    # the episode budget counts the chosen modes: both is twice one
    big = dict(num_tasks=3, steps=5, seeds=5, trajectories=40)
    with pytest.raises(UserError, match=r"7,200 episodes \(2 mode\(s\) x"):
        run_adaptation(session, AdaptRequest("tiny", modes="both", **big))
    with pytest.raises(UserError, match=r"7,200 episodes \(1 mode\(s\) x"):
        run_adaptation(session, AdaptRequest("tiny", modes="hybrid", **{**big, "num_tasks": 6}))


def test_adaptation_to_hand_set_physics_and_invalid_requests(session):
    fields = physics_fields("cartpole-physics")
    assert [f[0] for f in fields] == ["length", "masspole", "masscart", "gravity", "force_mag"]
    physics = {name: default for name, _, _, default in fields} | {"length": 1.8}
    assert hand_task("cartpole-physics", physics)["length"] == 1.8
    out = run_adaptation(
        session,
        AdaptRequest("tiny", "by hand", physics=physics, steps=1, seeds=1, trajectories=2, render=False),
    )
    assert "Outside the training range: length=1.8" in out.summary and out.gif is None
    with pytest.raises(UserError, match="length must be > 0"):
        hand_task("cartpole-physics", physics | {"length": -1.0})
    with pytest.raises(UserError, match="no out-of-range tasks"):
        pick_tasks("bandit", "out-of-range", 3, {})
    with pytest.raises(UserError, match="more than this app runs at once"):
        run_adaptation(session, AdaptRequest("tiny", num_tasks=10, steps=5, seeds=5, trajectories=40))


def test_rl2_model_adapts_in_context(session):
    req = TrainRequest(
        family="navigation-2d",
        kind="gru",
        method="RL²",
        name="rl2",
        total_steps=3200,
        trajectories=2,
        hidden_dim=16,
    )
    final = list(run_training(session, req))[-1]
    assert load_metadata(session.trained[final.label])["algo"] == "rl2"
    out = run_adaptation(
        session,
        AdaptRequest(final.label, "out-of-range", num_tasks=2, seeds=1, trajectories=2, modes="standard"),
    )
    assert out.headers == ["policy", "episode 1", "episode 2"]
    assert [r[0] for r in out.rows] == [
        "random policy",
        "in-context (RL²)",
    ]  # the mode choice changes nothing
    assert out.results["in-context (RL²)"].values.shape == (1, 2, 2, 1) and "in context" in out.summary
    assert "neither does the adaptation-mode choice ('standard')" in out.summary
    # the tab says so and greys the mode control out
    from ssm_metarl.app.callbacks import Callbacks

    lr, note, *rest = Callbacks(session.runs_dir).adapt_model_changed(final.label, session)
    mode_control = rest[-2]
    assert "adaptation mode (standard / hybrid / both) do not apply" in note
    assert mode_control["interactive"] is False


def test_record_episode_draws_cartpole_and_navigation(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint)
    ep = record_episode(policy, get_family("cartpole-physics").test[0], seed=3)
    assert len(ep.frames) == ep.length and ep.frames[0].shape == (400, 600, 3) and ep.ret == ep.length
    assert ep.ret == record_episode(policy, get_family("cartpole-physics").test[0], seed=3).ret  # seeded


def test_navigation_frames_and_gif_length(tmp_path):
    from ssm_metarl.models import make_policy

    dist = get_family("navigation-2d")
    env = dist.make_env(dist.test[0])
    policy = make_policy("mlp", env.observation_space, env.action_space, hidden_dim=8)
    ep = record_episode(policy, dist.test[0], seed=0)
    assert len(ep.frames) == ep.length + 1 and ep.ret < 0 and ep.frames[0].shape == (180, 180, 3)
    gif = Image.open(episodes_gif([("a", ep), ("b", ep)], tmp_path / "x.gif"))
    assert gif.size == (480, 210) and 1 < gif.n_frames <= 125


def test_a_failing_job_logs_its_traceback_and_shows_a_short_message(session, monkeypatch, caplog):
    from ssm_metarl.app import callbacks

    def broken(*args, **kwargs):
        raise RuntimeError("the scan kernel fell over")

    monkeypatch.setattr(callbacks, "run_adaptation", broken)
    cb = callbacks.Callbacks(session.runs_dir)
    args = ("tiny", "held-out", 1, 1, 1, 2, 0.1, 0.1, "pg", "both", False, session)
    args += (None,) * callbacks.MAX_PHYSICS
    with caplog.at_level("ERROR", logger="ssm_metarl.app.callbacks"):
        status, *_ = cb.adapt(*args)
    assert status.startswith("**Something went wrong**") and "the scan kernel fell over" in status
    assert "Traceback" not in status
    record = next(r for r in caplog.records if "adaptation of tiny failed" in r.getMessage())
    assert record.exc_info is not None and "the scan kernel fell over" in str(record.exc_info[1])


def test_the_adapt_callback_passes_the_mode_and_refuses_an_unknown_one(session):
    from ssm_metarl.app import callbacks

    cb = callbacks.Callbacks(session.runs_dir)
    physics = (None,) * callbacks.MAX_PHYSICS
    args = ("tiny", "held-out", 1, 1, 1, 2, 0.1, 0.1, "pg")
    status, _plot, table, *_ = cb.adapt(*args, "hybrid", False, session, *physics)
    assert status == "Done: **tiny** adapted (hybrid) to held-out task(s)."
    assert list(table["policy"]) == ["random policy", "hybrid"]
    status, *_ = cb.adapt(*args, "sideways", False, session, *physics)
    assert status.startswith("**Cannot do that:** Unknown adaptation mode 'sideways'; pick one of")


def test_the_shipped_maml_navigation_model_adapts_in_the_app_with_its_own_step_sizes(session):
    """navigation-maml-ssm through the adaptation tab: the ssm's recipe (lr 0.03, learned step sizes), not the
    mlp's 1.0 that would wreck it; one standard step gains on held-out goals."""
    req = AdaptRequest(
        "navigation-maml-ssm", "held-out", num_tasks=2, steps=1, seeds=1, trajectories=20, modes="standard"
    )
    out = run_adaptation(session, req)
    before, after = out.results["standard"].values[0].mean(axis=(0, 2))
    assert after > before + 10.0, (before, after)
