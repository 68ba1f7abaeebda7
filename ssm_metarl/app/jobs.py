"""One long job per session, in a background thread, streamed to the page: the runner behind the
Meta-training and Self-improvement tabs.

:func:`run_job` refuses to start while the session runs another job (``AppSession.busy``), marks the session
busy, runs ``body`` in a thread and yields a :class:`Tick` right after the start and then every time it
has waited for the body (what the body reported through its ``report`` argument since the last tick, often
nothing), and last the body's return value (:class:`Done`). A body that raises ends the job with a
UserError saying so (the log keeps the traceback). Whatever happens, the session is free again when the
generator ends.

The session's stop flag is the job's cancel: :func:`stop_job` sets it (the Cancel and Stop buttons), the
body reads it, or ``on_stop`` passes it on to something the body runs. When the page goes away mid-run (the
generator is closed before the job ends), the runner sets the flag itself and waits for the body to end.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ssm_metarl.app.session import AppSession, UserError

logger = logging.getLogger(__name__)

U = TypeVar("U")
"""What the body reports while it runs (a metrics row, an event)."""
R = TypeVar("R")
"""What the body returns."""


@dataclass(frozen=True)
class Tick(Generic[U]):
    """The job goes on; ``updates``: what the body reported since the last tick, oldest first (may be
    empty)."""

    updates: list[U]


@dataclass(frozen=True)
class Done(Generic[R]):
    """The body returned ``result``; the last thing a job yields."""

    result: R


def run_job(
    session: AppSession,
    job_name: str,
    body: Callable[[Callable[[U], None]], R],
    *,
    refusal: Callable[[str | None], str],
    failed: str,
    on_stop: Callable[[], None] | None = None,
    poll_seconds: float = 0.25,
) -> Generator[Tick[U] | Done[R], None, None]:
    """Run ``body(report)`` as this session's job ``job_name`` in a thread; yields Ticks, then Done.

    ``refusal(running job)``: the UserError's message when the session already runs a job. ``failed``: the
    start of the UserError's message when the body raises. ``on_stop``: called while the stop flag is set
    (at every tick, and before waiting for a page that went away), for a body that does not read the flag.
    """
    if session.busy:
        raise UserError(refusal(session.job))
    session.busy, session.job = True, job_name
    session.stop.clear()
    reports: queue.Queue[U] = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = body(reports.put)
        except Exception as e:  # the page shows a short message; the log keeps the traceback
            logger.exception("%s job of session %s failed", job_name, session.id)
            outcome["error"] = e

    thread = threading.Thread(target=work, name=f"{job_name}-{session.id}", daemon=True)
    try:
        thread.start()
        yield Tick([])
        while thread.is_alive() or not reports.empty():
            updates = _drain(reports, poll_seconds)
            if session.stop.is_set() and on_stop is not None:
                on_stop()
            yield Tick(updates)
        if "error" in outcome:
            raise UserError(f"{failed}: {outcome['error']}") from outcome["error"]
        yield Done(outcome["result"])
    finally:
        if thread.is_alive():  # the page went away mid-run: ask the body to stop, wait for it
            session.stop.set()
            if on_stop is not None:
                on_stop()
            thread.join()
        session.busy, session.job = False, None


def _drain(reports: queue.Queue[U], timeout: float) -> list[U]:
    """Everything in ``reports``, waiting up to ``timeout`` seconds for the first item."""
    try:
        items = [reports.get(timeout=timeout)]
    except queue.Empty:
        return []
    while not reports.empty():
        items.append(reports.get_nowait())
    return items


def stop_job(session: AppSession | None, job_name: str) -> bool:
    """Set the stop flag of ``session`` if it runs job ``job_name``; whether it did (a stop button never
    stops another tab's job)."""
    if session is None or not session.busy or session.job != job_name:
        return False
    session.stop.set()
    return True


__all__ = ["Done", "Tick", "run_job", "stop_job"]
