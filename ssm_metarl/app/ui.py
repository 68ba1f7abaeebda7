"""The page: five tabs laid out with Gradio Blocks, each event wired to a method of
:class:`~ssm_metarl.app.callbacks.Callbacks`, which calls the tab modules (no algorithm logic in either).

:func:`build_app` composes one builder per tab (``_load_tab``, ``_training_tab``, ``_adaptation_tab``,
``_improvement_tab``, ``_about_tab``); each lays its tab out and wires its events. The adaptation tab's model
picker is made first, unrendered, because loading or training a model updates it, and placed in its tab.

Per-session state is one ``gr.State`` holding an :class:`~ssm_metarl.app.session.AppSession`. Long jobs
(meta-training, adaptation, the self-improvement loop) share one queue concurrency group, ``jobs``, limited to
``max_jobs`` at a time; the other events are light. Every button is also an API endpoint (``/load_model``,
``/meta_train``, ``/cancel``, ``/adapt``, ``/adapt_model_changed``, ``/self_improve``, ``/stop_improvement``,
``/attach_loop``) for ``gradio_client``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

os.environ["GRADIO_ANALYTICS_ENABLED"] = (
    "False"  # never phone home (Blocks also gets analytics_enabled=False)
)

import gradio as gr  # noqa: E402

from ssm_metarl.app import about  # noqa: E402
from ssm_metarl.app.adaptation import ADAPT_MODES, TASK_SOURCES  # noqa: E402
from ssm_metarl.app.callbacks import MAX_PHYSICS, Callbacks  # noqa: E402
from ssm_metarl.app.improvement import (  # noqa: E402
    BUDGETS,
    DECISION_HEADERS,
    DEFAULT_BUDGET,
    DEFAULT_FAMILY,
    MAX_CANDIDATES,
    MAX_CYCLES,
    RSI_FAMILIES,
    default_attach_folder,
)
from ssm_metarl.app.models import ZERO_SHOT_HEADERS  # noqa: E402
from ssm_metarl.app.training import FAMILIES, KINDS, METHODS  # noqa: E402
from ssm_metarl.pretrained import list_pretrained  # noqa: E402

DEFAULT_MODEL = "cartpole-ssm"
"""The load tab's first model."""
DEFAULT_ADAPT_MODEL = "navigation-ssm"
"""The adaptation tab's first model: where adapting visibly matters (navigation goals it cannot see: the
return of later episodes of a trial is far above the first's; ``cartpole-ssm`` is at 500 before adapting)."""


def _default_model(preferred: str = DEFAULT_MODEL) -> str | None:
    shipped = list_pretrained()
    return preferred if preferred in shipped else (shipped[0] if shipped else None)


class _MAMLSettings(NamedTuple):
    """The Meta-training tab's MAML controls, in ``Callbacks.meta_train``'s order."""

    iterations: gr.Slider
    meta_batch: gr.Slider
    trajectories: gr.Slider
    inner_steps: gr.Slider
    inner_lr: gr.Number
    outer_lr: gr.Number
    first_order: gr.Checkbox


class _RL2Settings(NamedTuple):
    """The Meta-training tab's RL² controls, in ``Callbacks.meta_train``'s order."""

    total_steps: gr.Slider
    episodes_per_trial: gr.Slider
    lr: gr.Number


class _AdaptSettings(NamedTuple):
    """The Test-time adaptation tab's controls below its model picker."""

    note: gr.Markdown
    tasks: gr.Radio
    num_tasks: gr.Slider
    modes: gr.Radio
    physics_box: gr.Group
    physics: list[gr.Number]
    steps: gr.Slider
    seeds: gr.Slider
    trajectories: gr.Slider
    lr: gr.Number
    w: gr.Slider
    algo: gr.Radio
    render: gr.Checkbox


def build_app(runs_dir: str | Path = "runs/app", max_jobs: int = 1) -> gr.Blocks:
    """The app: five tabs (load, meta-training, test-time adaptation, self-improvement, about); see the
    module docstring."""
    cb = Callbacks(runs_dir)
    jobs: dict[str, Any] = {"concurrency_id": "jobs", "concurrency_limit": max_jobs}
    with gr.Blocks(
        title="ssm-metarl: SSM policies that adapt", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as demo:
        session = gr.State(None)
        gr.Markdown("# ssm-metarl · state-space-model policies that adapt to tasks they have never seen")
        # made before the tabs (loading or training a model updates it), placed in the adaptation tab
        adapt_model = gr.Dropdown(
            list_pretrained(),
            value=_default_model(DEFAULT_ADAPT_MODEL),
            label="Model",
            elem_id="adapt-model",
            render=False,
        )
        with gr.Tabs():
            load_model = _load_tab(cb, session, adapt_model)
            _training_tab(cb, session, [load_model, adapt_model], jobs)
            _adaptation_tab(cb, demo, session, adapt_model, jobs)
            _improvement_tab(cb, session, jobs)
            _about_tab()
        demo.unload(cb.page_closed)  # the page went away: its running job stops
    demo.queue(default_concurrency_limit=4, max_size=32)
    return demo


def _load_tab(cb: Callbacks, session: gr.State, adapt_model: gr.Dropdown) -> gr.Dropdown:
    """Load pre-trained model: pick one, see its card and measured returns. Returns its model picker."""
    with gr.Tab("Load pre-trained model", id="load"):
        with gr.Row():
            pick = gr.Dropdown(
                list_pretrained(), value=_default_model(), label="Model", scale=3, elem_id="load-model"
            )
            button = gr.Button("Load", variant="primary", scale=1, elem_id="load-button")
        status = gr.Markdown("Pick a model and press **Load**.", elem_id="load-status")
        facts = gr.Markdown(elem_id="model-facts")
        zero_shot = gr.Dataframe(
            headers=ZERO_SHOT_HEADERS,
            label="Measured returns (mean ± 95% interval)",
            interactive=False,
            elem_id="zero-shot",
        )
        card = gr.Markdown(elem_id="model-card")
    button.click(
        cb.load_model,
        [pick, session],
        [status, facts, zero_shot, card, adapt_model, session],
        api_name="load_model",
    )
    return pick


def _training_tab(
    cb: Callbacks, session: gr.State, model_pickers: list[gr.Dropdown], jobs: dict[str, Any]
) -> None:
    """Meta-training: the settings (MAML's or RL²'s, by the method), Meta-train and Cancel, the status and
    the learning curve. A trained model is picked in ``model_pickers``."""
    with gr.Tab("Meta-training", id="train"), gr.Row():
        with gr.Column(scale=1):
            family = gr.Dropdown(FAMILIES, value=FAMILIES[0], label="Task family")
            kind = gr.Radio(KINDS, value="ssm", label="Model")
            method = gr.Radio(METHODS, value="MAML", label="Meta-learning method")
            name = gr.Textbox("my-model", label="Name of the new model", elem_id="train-name")
            maml_box, maml = _maml_settings()
            rl2_box, rl2 = _rl2_settings()
            hidden = gr.Dropdown([16, 32, 64, 128], value=64, label="Hidden size")
            seed = gr.Number(0, precision=0, label="Seed")
            with gr.Row():
                train_btn = gr.Button("Meta-train", variant="primary", elem_id="train-button")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
        with gr.Column(scale=2):
            status = gr.Markdown("Choose the settings and press **Meta-train**.", elem_id="train-status")
            cancelled = gr.Markdown(elem_id="cancel-status")
            plot = gr.Plot(label="Learning curve", show_label=False, elem_id="train-plot")
    for control in (family, method):
        control.change(
            cb.train_controls,
            [family, method],
            [maml_box, rl2_box, maml.inner_lr, maml.outer_lr, rl2.lr],
            api_visibility="private",
        )
    train_btn.click(
        cb.meta_train,
        [family, kind, method, name, *maml, *rl2, hidden, seed, session],
        [status, plot, *model_pickers, session],
        api_name="meta_train",
        **jobs,
    )
    cancel_btn.click(cb.cancel, [session], [cancelled], api_name="cancel", concurrency_limit=None)


def _maml_settings() -> tuple[gr.Group, _MAMLSettings]:
    with gr.Group(visible=True) as box:
        settings = _MAMLSettings(
            gr.Slider(1, 200, 10, step=1, label="Meta-iterations (budget)", elem_id="train-iterations"),
            gr.Slider(1, 40, 6, step=1, label="Tasks per meta-iteration", elem_id="train-batch"),
            gr.Slider(
                1,
                40,
                8,
                step=1,
                label="Trajectories per task (and evaluation)",
                elem_id="train-trajectories",
            ),
            gr.Slider(1, 3, 1, step=1, label="Inner adaptation steps"),
            gr.Number(0.1, label="Inner lr (the adaptation step size)"),
            gr.Number(1e-3, label="Outer (meta) Adam lr"),
            gr.Checkbox(False, label="First-order MAML (faster, no second derivatives)"),
        )
    return box, settings


def _rl2_settings() -> tuple[gr.Group, _RL2Settings]:
    with gr.Group(visible=False) as box:
        settings = _RL2Settings(
            gr.Slider(2048, 500_000, 20_480, step=2048, label="Env steps (budget)"),
            gr.Slider(1, 5, 2, step=1, label="Episodes per trial"),
            gr.Number(1e-3, label="PPO Adam lr"),
        )
    return box, settings


def _adaptation_tab(
    cb: Callbacks, demo: gr.Blocks, session: gr.State, model: gr.Dropdown, jobs: dict[str, Any]
) -> None:
    """Test-time adaptation: a model (``model``, made unrendered by the caller), tasks and modes; Run
    adaptation shows the curves, the table and one episode before and after."""
    with gr.Tab("Test-time adaptation", id="adapt"), gr.Row():
        with gr.Column(scale=1):
            model.render()
            s = _adaptation_settings()
            button = gr.Button("Run adaptation", variant="primary", elem_id="adapt-button")
        with gr.Column(scale=2):
            results = _adaptation_results()
    model_outputs = [s.lr, s.note, *s.physics, s.steps, s.w, s.algo, s.render, s.modes, session]
    model.change(cb.adapt_model_changed, [model, session], model_outputs, api_name="adapt_model_changed")
    demo.load(cb.adapt_model_changed, [model, session], model_outputs, api_visibility="private")
    s.tasks.change(cb.tasks_changed, [s.tasks], [s.physics_box, s.num_tasks], api_visibility="private")
    inputs = [model, s.tasks, s.num_tasks, s.steps, s.seeds, s.trajectories, s.lr, s.w, s.algo, s.modes]
    button.click(
        cb.adapt,
        [*inputs, s.render, session, *s.physics],
        [*results, session],
        api_name="adapt",
        **jobs,
    )


def _adaptation_settings() -> _AdaptSettings:
    note = gr.Markdown()
    tasks = gr.Radio(
        TASK_SOURCES, value="held-out", label="Tasks (never seen in training)", elem_id="adapt-tasks"
    )
    num_tasks = gr.Slider(1, 10, 3, step=1, label="Number of tasks", elem_id="adapt-num-tasks")
    modes = gr.Radio(
        ADAPT_MODES,
        value="both",
        label="Adaptation mode",
        info="standard: gradient steps on the task's episodes; hybrid: plus experience "
        "replay (weight w); both: side by side. Not used by RL² models (they adapt in context).",
        elem_id="adapt-mode",
    )
    with gr.Group(visible=False) as physics_box:
        gr.Markdown("Physics of the one task to adapt to:")
        physics = [gr.Number(visible=False, elem_id=f"physics-{i}") for i in range(MAX_PHYSICS)]
    return _AdaptSettings(
        note=note,
        tasks=tasks,
        num_tasks=num_tasks,
        modes=modes,
        physics_box=physics_box,
        physics=physics,
        steps=gr.Slider(1, 5, 2, step=1, label="Adaptation steps", elem_id="adapt-steps"),
        seeds=gr.Slider(1, 5, 2, step=1, label="Seeds", elem_id="adapt-seeds"),
        trajectories=gr.Slider(
            2, 40, 5, step=1, label="Episodes per adaptation step", elem_id="adapt-trajectories"
        ),
        lr=gr.Number(0.1, label="Adaptation lr"),
        w=gr.Slider(0.0, 1.0, 0.1, step=0.05, label="Hybrid: experience replay weight w"),
        algo=gr.Radio(["pg", "ppo"], value="pg", label="Adaptation update (policy gradient or PPO)"),
        render=gr.Checkbox(
            True, label="Render an episode before and after adaptation", elem_id="adapt-render"
        ),
    )


def _adaptation_results() -> list[gr.components.Component]:
    """status, curve, table, summary, animation, its note: ``Callbacks.adapt``'s outputs."""
    status = gr.Markdown(
        "Pick a model, tasks and modes and press **Run adaptation**.", elem_id="adapt-status"
    )
    plot = gr.Plot(label="Return after each adaptation step", show_label=False, elem_id="adapt-plot")
    table = gr.Dataframe(
        label="Before / after (mean ± 95% interval over seeds)",
        interactive=False,
        headers=["policy", "0 steps", "1 step", "env steps per step"],
        elem_id="adapt-table",
    )
    summary = gr.Markdown(elem_id="adapt-summary")
    gr.Markdown("#### Watch it: one episode before and after adaptation")
    episode = gr.Image(
        label="The policy before and after adaptation",
        type="filepath",
        show_label=False,
        interactive=False,
        elem_id="adapt-episode",
    )
    return [status, plot, table, summary, episode, gr.Markdown(elem_id="adapt-render-note")]


def _improvement_tab(cb: Callbacks, session: gr.State, jobs: dict[str, Any]) -> None:
    """Self-improvement: run a few cycles here (Start, Stop), or attach to a loop's folder (Refresh, or
    every 5 s); both show the loop's status, incumbent per cycle, incumbent and decisions."""
    with gr.Tab("Self-improvement", id="improve"), gr.Row():
        with gr.Column(scale=1):
            gr.Markdown(
                "Run a few cycles of the self-improvement loop (`ssm_metarl.rsi`): Optuna proposes "
                "changes around the incumbent, each candidate is meta-trained and measured on five "
                "metrics, the better one is installed only when its gain holds up."
            )
            settings = _improvement_settings()
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="rsi-start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="rsi-stop")
            stopped = gr.Markdown(elem_id="rsi-stop-status")
            gr.Markdown("#### Attach to a loop (the daemon's, or a run of this tab)")
            folder = gr.Textbox(
                str(default_attach_folder(cb.runs_dir)), label="Loop folder", elem_id="rsi-folder"
            )
            with gr.Row():
                refresh_btn = gr.Button("Refresh", elem_id="rsi-refresh")
                auto = gr.Checkbox(False, label="Refresh every 5 s", elem_id="rsi-auto")
            timer = gr.Timer(5, active=False)
        with gr.Column(scale=2):
            view = _loop_view()
    start_btn.click(
        cb.improve, [*settings, session], [*view, folder, session], api_name="self_improve", **jobs
    )
    stop_btn.click(
        cb.stop_improvement, [session], [stopped], api_name="stop_improvement", concurrency_limit=None
    )
    refresh_btn.click(cb.attach_loop, [folder], view, api_name="attach_loop")
    auto.change(lambda on: gr.Timer(active=bool(on)), [auto], [timer], api_visibility="private")
    timer.tick(cb.attach_loop, [folder], view, api_visibility="private")


def _improvement_settings() -> list[gr.components.Component]:
    """family, kind, cycles, candidates, budget, seed: ``Callbacks.improve``'s arguments."""
    return [
        gr.Dropdown(RSI_FAMILIES, value=DEFAULT_FAMILY, label="Task family", elem_id="rsi-family"),
        gr.Dropdown(KINDS, value="mlp", label="Model of the starting incumbent", elem_id="rsi-kind"),
        gr.Slider(1, MAX_CYCLES, 3, step=1, label="Cycles", elem_id="rsi-cycles"),
        gr.Slider(1, MAX_CANDIDATES, 2, step=1, label="Candidates per cycle", elem_id="rsi-candidates"),
        gr.Radio(
            list(BUDGETS),
            value=DEFAULT_BUDGET,
            label="Budget (training and measuring per candidate)",
            elem_id="rsi-budget",
        ),
        gr.Number(0, precision=0, label="Seed", elem_id="rsi-seed"),
    ]


def _loop_view() -> list[gr.components.Component]:
    """status, plot, incumbent, decisions table: ``Callbacks.attach_loop``'s outputs."""
    return [
        gr.Markdown(
            "Choose the settings and press **Start**, or attach to a loop's folder.", elem_id="rsi-status"
        ),
        gr.Plot(label="The incumbent per cycle", show_label=False, elem_id="rsi-plot"),
        gr.Markdown(elem_id="rsi-incumbent"),
        gr.Dataframe(
            headers=DECISION_HEADERS,
            label="Every decision (decisions.jsonl)",
            interactive=False,
            wrap=True,
            elem_id="rsi-decisions",
        ),
    ]


def _about_tab() -> None:
    """About: what the library is, the architecture, the references, the links and the benchmark tables."""
    with gr.Tab("About", id="about"):
        gr.Markdown(about.INTRO)
        gr.HTML(about.ARCHITECTURE_SVG, elem_id="architecture")
        gr.Markdown(about.REFERENCES_MD, elem_id="about-references")
        gr.Markdown(about.LINKS + "\n" + about.benchmark_tables())


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    runs_dir: str | Path = "runs/app",
    max_jobs: int = 1,
    open_browser: bool = False,
    block: bool = True,
) -> gr.Blocks:
    """Serve the app on ``host:port`` (loopback only by default; never a public share link).

    ``runs_dir`` holds each session's trained checkpoints (``<runs_dir>/<session>/<name>/final``) and
    rendered episodes; ``max_jobs`` long jobs (meta-training, adaptation) run at once, the rest queue.
    ``block=False`` returns at once with the server running (tests).
    """
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    demo = build_app(runs_dir, max_jobs)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=open_browser,
        prevent_thread_lock=not block,
        allowed_paths=[str(runs_dir)],
        show_error=False,
        theme=gr.themes.Soft(),
        footer_links=["api", "settings"],
    )
    return demo


__all__ = ["build_app", "launch"]
