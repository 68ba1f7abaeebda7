"""The functions the page's events call: parse the controls, call a tab module, turn its result into what the
components show. A request a tab cannot carry out (a :class:`~ssm_metarl.app.session.UserError`) comes back
as a status line, never as a stack trace.

Every method takes the browser session's :class:`~ssm_metarl.app.session.AppSession` (None on its first
call) and returns it last, so Gradio keeps it in that session's ``gr.State``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ssm_metarl.app import improvement, plots
from ssm_metarl.app.adaptation import AdaptRequest, chosen_modes, physics_fields, run_adaptation
from ssm_metarl.app.models import ZERO_SHOT_HEADERS, facts_markdown, model_info
from ssm_metarl.app.session import AppSession, UserError, ensure_session
from ssm_metarl.app.training import TrainRequest, family_defaults, request_stop, run_training, status_line

logger = logging.getLogger(__name__)

MAX_PHYSICS = 5
"""Hand-set physics fields on the page (CartPole has the most parameters: 5)."""


def error_status(e: UserError) -> str:
    return f"**Cannot do that:** {e}"


def failure_status(e: Exception) -> str:
    return f"**Something went wrong** ({type(e).__name__}: {e}). The app's log has the details."


class Callbacks:
    """The event handlers of one app; ``runs_dir`` is where its sessions save what they train."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.runs_dir = Path(runs_dir).resolve()
        self.training: dict[str, AppSession] = {}
        """Browser session hash -> its AppSession, for sessions that started a job (meta-training, the
        self-improvement loop)."""

    def session(self, session: AppSession | None) -> AppSession:
        return ensure_session(session, self.runs_dir)

    # ----- Load pre-trained model ----------------------------------------------------------------------
    def load_model(self, label: str | None, session: AppSession | None) -> tuple[Any, ...]:
        """-> status, facts, measured-returns table, model card, the adaptation tab's model, session."""
        session = self.session(session)
        try:
            info = model_info(session, label)
        except UserError as e:
            return error_status(e), "", None, "", gr.Dropdown(), session
        status = f"Loaded **{info.label}**. Go to *Test-time adaptation* to watch it adapt to new tasks."
        table = pd.DataFrame(info.zero_shot, columns=ZERO_SHOT_HEADERS)
        return status, facts_markdown(info), table, info.card, gr.Dropdown(value=info.label), session

    # ----- Meta-training -------------------------------------------------------------------------------
    @staticmethod
    def train_controls(family: str, method: str) -> tuple[Any, ...]:
        """Show the chosen method's controls, with the family's tuned learning rates."""
        d = family_defaults(family, method)
        maml = method == "MAML"
        return (
            gr.Group(visible=maml),
            gr.Group(visible=not maml),
            gr.Number(value=d["inner_lr"]) if maml else gr.Number(),
            gr.Number(value=d["outer_lr"]) if maml else gr.Number(),
            gr.Number(value=d["rl2_lr"]) if not maml else gr.Number(),
        )

    def meta_train(
        self,
        family: str,
        kind: str,
        method: str,
        name: str,
        iterations: float,
        meta_batch: float,
        trajectories: float,
        inner_steps: float,
        inner_lr: float,
        outer_lr: float,
        first_order: bool,
        total_steps: float,
        episodes_per_trial: float,
        rl2_lr: float,
        hidden_dim: float,
        seed: float | None,
        session: AppSession | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Streams -> status, learning curve, the load and adaptation tabs' model dropdowns, session."""
        session = self.session(session)
        self.training[str(request.session_hash)] = session
        keep = (gr.Dropdown(), gr.Dropdown())
        req = TrainRequest(
            family=family,
            kind=kind,
            method="RL²" if method == "RL²" else "MAML",
            name=name or "my-model",
            iterations=int(iterations),
            meta_batch=int(meta_batch),
            trajectories=int(trajectories),
            inner_steps=int(inner_steps),
            inner_lr=float(inner_lr),
            outer_lr=float(outer_lr),
            first_order=bool(first_order),
            total_steps=int(total_steps),
            episodes_per_trial=int(episodes_per_trial),
            rl2_lr=float(rl2_lr),
            hidden_dim=int(hidden_dim),
            seed=int(seed or 0),
        )
        curve = "maml" if req.method == "MAML" else "rl2"
        title = f"{req.method} · {req.kind} on {req.family}"
        try:
            yield "Starting ...", plots.learning_curve([], curve, title), *keep, session
            for p in run_training(session, req):
                fig = plots.learning_curve(p.rows, curve, title)
                if not p.done:
                    yield status_line(p, req), fig, *keep, session
                    continue
                new = gr.Dropdown(choices=session.choices(), value=p.label)
                yield f"{status_line(p, req)}\n\n{p.message}", fig, new, new, session
        except UserError as e:
            yield error_status(e), gr.Plot(), *keep, session
        except Exception as e:  # a bug: the log keeps the traceback, the page a short message
            logger.exception("meta-training request %s failed in session %s", req.name, session.id)
            yield failure_status(e), gr.Plot(), *keep, session

    @staticmethod
    def cancel(session: AppSession | None) -> str:
        return request_stop(session)

    def page_closed(self, request: gr.Request) -> None:
        """The page went away: its running job stops after the current iteration."""
        session = self.training.pop(str(request.session_hash), None)
        if session is not None:
            session.stop.set()

    # ----- Self-improvement ----------------------------------------------------------------------------
    @staticmethod
    def _loop_outputs(view: improvement.LoopView) -> tuple[Any, ...]:
        table = pd.DataFrame(view.rows, columns=improvement.DECISION_HEADERS)
        return view.status, view.figure, view.incumbent, table

    def improve(
        self,
        family: str,
        kind: str,
        cycles: float,
        candidates: float,
        budget: str,
        seed: float | None,
        session: AppSession | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Streams -> status, plot, incumbent, decisions table, the attach folder (the run's), session."""
        session = self.session(session)
        self.training[str(request.session_hash)] = session
        keep = (gr.Plot(), gr.Markdown(), gr.Dataframe(), gr.Textbox())
        try:
            req = improvement.ImproveRequest(
                family=family,
                kind=kind,
                cycles=int(cycles),
                candidates=int(candidates),
                budget=budget,
                seed=int(seed or 0),
            )
            for p in improvement.run_improvement(session, req):
                yield *self._loop_outputs(p.view), gr.Textbox(value=str(p.view.folder)), session
        except UserError as e:
            yield error_status(e), *keep, session
        except Exception as e:  # a bug: the log keeps the traceback, the page a short message
            logger.exception("self-improvement request failed in session %s", session.id)
            yield failure_status(e), *keep, session

    @staticmethod
    def stop_improvement(session: AppSession | None) -> str:
        return improvement.request_stop(session)

    def attach_loop(self, folder: str | None) -> tuple[Any, ...]:
        """-> status, plot, incumbent, decisions table of the loop in ``folder`` (a daemon's or a tab run's)."""
        try:
            return self._loop_outputs(improvement.attach(self.runs_dir, folder))
        except UserError as e:
            return error_status(e), None, "", pd.DataFrame([], columns=improvement.DECISION_HEADERS)
        except Exception as e:  # a bug: the log keeps the traceback, the page a short message
            logger.exception("attaching to %s failed", folder)
            return failure_status(e), gr.Plot(), gr.Markdown(), gr.Dataframe()

    # ----- Test-time adaptation ------------------------------------------------------------------------
    def adapt_model_changed(self, label: str | None, session: AppSession | None) -> tuple[Any, ...]:
        """-> lr, note, the physics fields, the steps / w / update / render / mode controls, session."""
        session = self.session(session)
        try:
            info = model_info(session, label)
        except UserError as e:
            hidden = [gr.Number(visible=False)] * MAX_PHYSICS
            return gr.Number(), error_status(e), *hidden, *[gr.update()] * 5, session
        numbers = [gr.Number(visible=False) for _ in range(MAX_PHYSICS)]
        for i, (name, lo, hi, default) in enumerate(physics_fields(info.family)[:MAX_PHYSICS]):
            numbers[i] = gr.Number(
                label=name, value=default, visible=True, info=f"trained on {lo:g} .. {hi:g}"
            )
        # RL² adapts in context: the steps, w, the update rule, the lr, the rendering and the choice of
        # adaptation mode (standard / hybrid / both) do not apply to it
        gradient = not info.in_context
        how = "by gradient steps (MAML)"
        if not gradient:
            how = (
                "in context (RL²): it plays one trial per task; the gradient-step controls and the "
                "adaptation mode (standard / hybrid / both) do not apply"
            )
        note = f"`{info.label}`: `{info.kind}` on `{info.family}`, adapts {how}."
        lr = gr.Number(value=info.inner_lr or 0.1, interactive=gradient)
        return lr, note, *numbers, *[gr.update(interactive=gradient) for _ in range(5)], session

    @staticmethod
    def tasks_changed(source: str) -> tuple[Any, ...]:
        """Hand-set physics replace the number of tasks."""
        return gr.Group(visible=source == "by hand"), gr.Slider(visible=source != "by hand")

    def adapt(self, *args: Any) -> tuple[Any, ...]:
        """model, tasks, number of tasks, steps, seeds, episodes per step, lr, w, update, modes, render,
        session, then the physics fields -> status, curve, table, summary, animation, its note, session."""
        (
            label,
            source,
            num_tasks,
            steps,
            seeds,
            trajectories,
            lr,
            weight,
            algo,
            modes,
            render,
            session,
            *physics,
        ) = args
        session = self.session(session)
        try:
            info = model_info(session, label)
            names = [f[0] for f in physics_fields(info.family)]
            req = AdaptRequest(
                label=label,
                tasks=source,
                num_tasks=int(num_tasks),
                physics={n: float(v) for n, v in zip(names, physics) if v is not None},
                steps=int(steps),
                seeds=int(seeds),
                trajectories=int(trajectories),
                lr=None if lr is None else float(lr),
                experience_weight=float(weight),
                algo=algo,
                render=bool(render),
                modes=str(modes),
            )
            out = run_adaptation(session, req)
        except UserError as e:
            return error_status(e), gr.Plot(), gr.Dataframe(), "", None, "", session
        except Exception as e:  # a bug: the log keeps the traceback, the page a short message
            logger.exception("adaptation of %s failed in session %s", label, session.id)
            return failure_status(e), gr.Plot(), gr.Dataframe(), "", None, "", session
        how = "in context" if info.in_context else " and ".join(chosen_modes(req.modes))
        status = f"Done: **{info.label}** adapted ({how}) to {source} task(s)."
        table = pd.DataFrame(out.rows, columns=out.headers)
        return status, out.figure, table, out.summary, out.gif, out.render_note, session


__all__ = ["MAX_PHYSICS", "Callbacks", "error_status", "failure_status"]
