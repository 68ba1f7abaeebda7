"""What one browser session owns: the models it trained and the stop flag of its running job (meta-training
or the self-improvement loop).

Each browser tab (and each ``gradio_client.Client``) gets its own :class:`AppSession` through a
``gr.State``, so two people using the app at once never see or overwrite each other's models: a session's
trained checkpoints live under ``<runs_dir>/<session id>/`` and are listed only in that session. Shipped
models (:func:`ssm_metarl.pretrained.list_pretrained`) are read-only and visible to everyone.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ssm_metarl.pretrained import list_pretrained, pretrained_path


class UserError(ValueError):
    """A request the app cannot carry out, with a message for the person who made it (shown in the UI)."""


@dataclass
class AppSession:
    """One browser session: its trained models (label -> checkpoint folder) and a flag to stop its job."""

    runs_dir: Path
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    trained: dict[str, Path] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by the Cancel button (or when the page is closed); the running job checks it every iteration."""
    busy: bool = False
    """True while this session's job runs (meta-training or the self-improvement loop: one at a time)."""
    job: str | None = None
    """What the running job is (``"meta-training"``, ``"self-improvement"``), for the stop buttons' messages."""

    @property
    def run_dir(self) -> Path:
        """Where this session's checkpoints and metrics go."""
        return Path(self.runs_dir) / self.id

    def choices(self) -> list[str]:
        """Every model this session can pick: the shipped ones, then the ones it trained."""
        return [*list_pretrained(), *self.trained]

    def path_of(self, label: str | None) -> Path:
        """The checkpoint folder of model ``label``; a UserError that lists the choices otherwise."""
        if label in self.trained:
            return self.trained[label]
        if label and label in list_pretrained():
            return pretrained_path(label)
        available = ", ".join(self.choices()) or "none yet: train one in the Meta-training tab"
        if not label:
            raise UserError(f"Pick a model first (available: {available}).")
        raise UserError(f"There is no model named {label!r} in this session (available: {available}).")

    def is_shipped(self, label: str) -> bool:
        return label not in self.trained and label in list_pretrained()

    def unique_name(self, name: str) -> str:
        """``name`` made safe for a folder and unique among this session's and the shipped models."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.") or "my-model"
        taken = set(self.choices())
        out, i = base, 2
        while out in taken:
            out, i = f"{base}-{i}", i + 1
        return out


def ensure_session(session: AppSession | None, runs_dir: str | Path) -> AppSession:
    """The session stored in the browser's ``gr.State``, created on its first use."""
    return session if session is not None else AppSession(Path(runs_dir))


__all__ = ["AppSession", "UserError", "ensure_session"]
