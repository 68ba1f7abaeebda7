"""The page: five tabs laid out with Gradio Blocks, each event wired to a method of
:class:`~ssm_metarl.app.callbacks.Callbacks`, which calls the tab modules (no algorithm logic in either).

Per-session state is one ``gr.State`` holding an :class:`~ssm_metarl.app.session.AppSession`. Long jobs
(meta-training, adaptation, the self-improvement loop) share one queue concurrency group, ``jobs``, limited to
``max_jobs`` at a time; the other events are light. Every button is also an API endpoint (``/load_model``,
``/meta_train``, ``/cancel``, ``/adapt``, ``/adapt_model_changed``, ``/self_improve``, ``/stop_improvement``,
``/attach_loop``) for ``gradio_client``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def build_app(runs_dir: str | Path = "runs/app", max_jobs: int = 1) -> gr.Blocks:
    """The app: five tabs (load, meta-training, test-time adaptation, self-improvement, about); see the
    module docstring."""
    cb = Callbacks(runs_dir)
    choices, first = list_pretrained(), _default_model()
    with gr.Blocks(
        title="ssm-metarl: SSM policies that adapt", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as demo:
        session = gr.State(None)
        gr.Markdown("# ssm-metarl · state-space-model policies that adapt to tasks they have never seen")
        with gr.Tabs():
            with gr.Tab("Load pre-trained model", id="load"):
                with gr.Row():
                    load_pick = gr.Dropdown(
                        choices, value=first, label="Model", scale=3, elem_id="load-model"
                    )
                    load_btn = gr.Button("Load", variant="primary", scale=1, elem_id="load-button")
                load_status = gr.Markdown("Pick a model and press **Load**.", elem_id="load-status")
                facts = gr.Markdown(elem_id="model-facts")
                zero_shot = gr.Dataframe(
                    headers=ZERO_SHOT_HEADERS,
                    label="Measured returns (mean ± 95% interval)",
                    interactive=False,
                    elem_id="zero-shot",
                )
                card = gr.Markdown(elem_id="model-card")

            with gr.Tab("Meta-training", id="train"), gr.Row():
                with gr.Column(scale=1):
                    t_family = gr.Dropdown(FAMILIES, value=FAMILIES[0], label="Task family")
                    t_kind = gr.Radio(KINDS, value="ssm", label="Model")
                    t_method = gr.Radio(METHODS, value="MAML", label="Meta-learning method")
                    t_name = gr.Textbox("my-model", label="Name of the new model", elem_id="train-name")
                    with gr.Group(visible=True) as maml_box:
                        t_iters = gr.Slider(
                            1, 200, 10, step=1, label="Meta-iterations (budget)", elem_id="train-iterations"
                        )
                        t_batch = gr.Slider(
                            1, 40, 6, step=1, label="Tasks per meta-iteration", elem_id="train-batch"
                        )
                        t_traj = gr.Slider(
                            1,
                            40,
                            8,
                            step=1,
                            label="Trajectories per task (and evaluation)",
                            elem_id="train-trajectories",
                        )
                        t_inner = gr.Slider(1, 3, 1, step=1, label="Inner adaptation steps")
                        t_inner_lr = gr.Number(0.1, label="Inner lr (the adaptation step size)")
                        t_outer_lr = gr.Number(1e-3, label="Outer (meta) Adam lr")
                        t_first = gr.Checkbox(False, label="First-order MAML (faster, no second derivatives)")
                    with gr.Group(visible=False) as rl2_box:
                        t_steps = gr.Slider(2048, 500_000, 20_480, step=2048, label="Env steps (budget)")
                        t_ept = gr.Slider(1, 5, 2, step=1, label="Episodes per trial")
                        t_rl2_lr = gr.Number(1e-3, label="PPO Adam lr")
                    t_hidden = gr.Dropdown([16, 32, 64, 128], value=64, label="Hidden size")
                    t_seed = gr.Number(0, precision=0, label="Seed")
                    with gr.Row():
                        train_btn = gr.Button("Meta-train", variant="primary", elem_id="train-button")
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
                with gr.Column(scale=2):
                    t_status = gr.Markdown(
                        "Choose the settings and press **Meta-train**.", elem_id="train-status"
                    )
                    t_cancel = gr.Markdown(elem_id="cancel-status")
                    t_plot = gr.Plot(label="Learning curve", show_label=False, elem_id="train-plot")

            with gr.Tab("Test-time adaptation", id="adapt"), gr.Row():
                with gr.Column(scale=1):
                    a_model = gr.Dropdown(
                        choices,
                        value=_default_model(DEFAULT_ADAPT_MODEL),
                        label="Model",
                        elem_id="adapt-model",
                    )
                    a_note = gr.Markdown()
                    a_tasks = gr.Radio(
                        TASK_SOURCES,
                        value="held-out",
                        label="Tasks (never seen in training)",
                        elem_id="adapt-tasks",
                    )
                    a_num = gr.Slider(1, 10, 3, step=1, label="Number of tasks", elem_id="adapt-num-tasks")
                    a_modes = gr.Radio(
                        ADAPT_MODES,
                        value="both",
                        label="Adaptation mode",
                        info="standard: gradient steps on the task's episodes; hybrid: plus experience "
                        "replay (weight w); both: side by side. Not used by RL² models (they adapt in context).",
                        elem_id="adapt-mode",
                    )
                    with gr.Group(visible=False) as physics_box:
                        gr.Markdown("Physics of the one task to adapt to:")
                        physics = [
                            gr.Number(visible=False, elem_id=f"physics-{i}") for i in range(MAX_PHYSICS)
                        ]
                    a_steps = gr.Slider(1, 5, 2, step=1, label="Adaptation steps", elem_id="adapt-steps")
                    a_seeds = gr.Slider(1, 5, 2, step=1, label="Seeds", elem_id="adapt-seeds")
                    a_traj = gr.Slider(
                        2, 40, 5, step=1, label="Episodes per adaptation step", elem_id="adapt-trajectories"
                    )
                    a_lr = gr.Number(0.1, label="Adaptation lr")
                    a_w = gr.Slider(0.0, 1.0, 0.1, step=0.05, label="Hybrid: experience replay weight w")
                    a_algo = gr.Radio(
                        ["pg", "ppo"], value="pg", label="Adaptation update (policy gradient or PPO)"
                    )
                    a_render = gr.Checkbox(
                        True, label="Render an episode before and after adaptation", elem_id="adapt-render"
                    )
                    adapt_btn = gr.Button("Run adaptation", variant="primary", elem_id="adapt-button")
                with gr.Column(scale=2):
                    a_status = gr.Markdown(
                        "Pick a model, tasks and modes and press **Run adaptation**.", elem_id="adapt-status"
                    )
                    a_plot = gr.Plot(
                        label="Return after each adaptation step", show_label=False, elem_id="adapt-plot"
                    )
                    a_table = gr.Dataframe(
                        label="Before / after (mean ± 95% interval over seeds)",
                        interactive=False,
                        headers=["policy", "0 steps", "1 step", "env steps per step"],
                        elem_id="adapt-table",
                    )
                    a_summary = gr.Markdown(elem_id="adapt-summary")
                    gr.Markdown("#### Watch it: one episode before and after adaptation")
                    a_video = gr.Image(
                        label="The policy before and after adaptation",
                        type="filepath",
                        show_label=False,
                        interactive=False,
                        elem_id="adapt-episode",
                    )
                    a_render_note = gr.Markdown(elem_id="adapt-render-note")

            with gr.Tab("Self-improvement", id="improve"), gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown(
                        "Run a few cycles of the self-improvement loop (`ssm_metarl.rsi`): Optuna proposes "
                        "changes around the incumbent, each candidate is meta-trained and measured on five "
                        "metrics, the better one is installed only when its gain holds up."
                    )
                    r_family = gr.Dropdown(
                        RSI_FAMILIES, value=DEFAULT_FAMILY, label="Task family", elem_id="rsi-family"
                    )
                    r_kind = gr.Dropdown(
                        KINDS, value="mlp", label="Model of the starting incumbent", elem_id="rsi-kind"
                    )
                    r_cycles = gr.Slider(1, MAX_CYCLES, 3, step=1, label="Cycles", elem_id="rsi-cycles")
                    r_cands = gr.Slider(
                        1, MAX_CANDIDATES, 2, step=1, label="Candidates per cycle", elem_id="rsi-candidates"
                    )
                    r_budget = gr.Radio(
                        list(BUDGETS),
                        value=DEFAULT_BUDGET,
                        label="Budget (training and measuring per candidate)",
                        elem_id="rsi-budget",
                    )
                    r_seed = gr.Number(0, precision=0, label="Seed", elem_id="rsi-seed")
                    with gr.Row():
                        rsi_btn = gr.Button("Start", variant="primary", elem_id="rsi-start")
                        rsi_stop_btn = gr.Button("Stop", variant="stop", elem_id="rsi-stop")
                    r_stop = gr.Markdown(elem_id="rsi-stop-status")
                    gr.Markdown("#### Attach to a loop (the daemon's, or a run of this tab)")
                    r_folder = gr.Textbox(
                        str(default_attach_folder(cb.runs_dir)), label="Loop folder", elem_id="rsi-folder"
                    )
                    with gr.Row():
                        refresh_btn = gr.Button("Refresh", elem_id="rsi-refresh")
                        r_auto = gr.Checkbox(False, label="Refresh every 5 s", elem_id="rsi-auto")
                    r_timer = gr.Timer(5, active=False)
                with gr.Column(scale=2):
                    r_status = gr.Markdown(
                        "Choose the settings and press **Start**, or attach to a loop's folder.",
                        elem_id="rsi-status",
                    )
                    r_plot = gr.Plot(label="The incumbent per cycle", show_label=False, elem_id="rsi-plot")
                    r_incumbent = gr.Markdown(elem_id="rsi-incumbent")
                    r_table = gr.Dataframe(
                        headers=DECISION_HEADERS,
                        label="Every decision (decisions.jsonl)",
                        interactive=False,
                        wrap=True,
                        elem_id="rsi-decisions",
                    )

            with gr.Tab("About", id="about"):
                gr.Markdown(about.INTRO)
                gr.HTML(about.ARCHITECTURE_SVG, elem_id="architecture")
                gr.Markdown(about.REFERENCES_MD, elem_id="about-references")
                gr.Markdown(about.LINKS + "\n" + about.benchmark_tables())

        # ----- wiring ------------------------------------------------------------------------------
        jobs: dict[str, Any] = {"concurrency_id": "jobs", "concurrency_limit": max_jobs}
        load_btn.click(
            cb.load_model,
            [load_pick, session],
            [load_status, facts, zero_shot, card, a_model, session],
            api_name="load_model",
        )
        model_outputs = [a_lr, a_note, *physics, a_steps, a_w, a_algo, a_render, a_modes, session]
        a_model.change(
            cb.adapt_model_changed, [a_model, session], model_outputs, api_name="adapt_model_changed"
        )
        demo.load(cb.adapt_model_changed, [a_model, session], model_outputs, api_visibility="private")
        for control in (t_family, t_method):
            control.change(
                cb.train_controls,
                [t_family, t_method],
                [maml_box, rl2_box, t_inner_lr, t_outer_lr, t_rl2_lr],
                api_visibility="private",
            )
        train_inputs = [
            t_family,
            t_kind,
            t_method,
            t_name,
            t_iters,
            t_batch,
            t_traj,
            t_inner,
            t_inner_lr,
            t_outer_lr,
            t_first,
            t_steps,
            t_ept,
            t_rl2_lr,
            t_hidden,
            t_seed,
            session,
        ]
        train_btn.click(
            cb.meta_train,
            train_inputs,
            [t_status, t_plot, load_pick, a_model, session],
            api_name="meta_train",
            **jobs,
        )
        cancel_btn.click(cb.cancel, [session], [t_cancel], api_name="cancel", concurrency_limit=None)
        demo.unload(cb.page_closed)
        a_tasks.change(cb.tasks_changed, [a_tasks], [physics_box, a_num], api_visibility="private")
        adapt_inputs = [
            a_model,
            a_tasks,
            a_num,
            a_steps,
            a_seeds,
            a_traj,
            a_lr,
            a_w,
            a_algo,
            a_modes,
            a_render,
            session,
            *physics,
        ]
        adapt_btn.click(
            cb.adapt,
            adapt_inputs,
            [a_status, a_plot, a_table, a_summary, a_video, a_render_note, session],
            api_name="adapt",
            **jobs,
        )
        loop_view = [r_status, r_plot, r_incumbent, r_table]
        rsi_btn.click(
            cb.improve,
            [r_family, r_kind, r_cycles, r_cands, r_budget, r_seed, session],
            [*loop_view, r_folder, session],
            api_name="self_improve",
            **jobs,
        )
        rsi_stop_btn.click(
            cb.stop_improvement, [session], [r_stop], api_name="stop_improvement", concurrency_limit=None
        )
        refresh_btn.click(cb.attach_loop, [r_folder], loop_view, api_name="attach_loop")
        r_auto.change(lambda on: gr.Timer(active=bool(on)), [r_auto], [r_timer], api_visibility="private")
        r_timer.tick(cb.attach_loop, [r_folder], loop_view, api_visibility="private")
    demo.queue(default_concurrency_limit=4, max_size=32)
    return demo


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
