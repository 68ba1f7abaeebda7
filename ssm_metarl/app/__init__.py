"""The web app (``ssm-metarl app``, ``python app.py``, ``make app``): load a shipped model, meta-train one,
and watch standard and hybrid test-time adaptation side by side, in the browser.

No algorithm logic lives here: each tab module (:mod:`~ssm_metarl.app.models`,
:mod:`~ssm_metarl.app.training`, :mod:`~ssm_metarl.app.adaptation`) calls the public API and returns what
the page shows; :mod:`~ssm_metarl.app.ui` lays the page out and wires it. Needs the ``app`` extra
(``pip install -e ".[app]"``). See ``docs/app.md``.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = (
    "False"  # never phone home (the app also passes analytics_enabled=False)
)

from ssm_metarl.app.ui import build_app, launch  # noqa: E402

__all__ = ["build_app", "launch"]
