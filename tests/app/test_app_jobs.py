"""The job runner behind the Meta-training and Self-improvement tabs, in-process with toy bodies (no server,
no training): one job per session, the session freed whatever happens, the stop flag reaching the body."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import closing

import pytest

from ssm_metarl.app.jobs import Done, Tick, run_job, stop_job
from ssm_metarl.app.session import AppSession, UserError


def refusal(running: str | None) -> str:
    return f"busy with {running}"


def until_stopped(session: AppSession) -> Callable[[Callable[[int], None]], int]:
    """A body that reports 0, 1, 2, ... until the session's stop flag is set; returns how many it reported."""

    def body(report: Callable[[int], None]) -> int:
        n = 0
        while not session.stop.is_set():
            report(n)
            n += 1
            session.stop.wait(0.01)
        return n

    return body


def test_a_job_streams_what_the_body_reports_then_its_result_and_frees_the_session(tmp_path):
    session = AppSession(tmp_path)

    def body(report: Callable[[str], None]) -> str:
        for word in ("a", "b", "c"):
            report(word)
        return "done"

    events = list(run_job(session, "toy", body, refusal=refusal, failed="Toy failed", poll_seconds=0.01))
    assert events[0] == Tick([])  # right after the start, before the body reported anything
    assert [u for e in events if isinstance(e, Tick) for u in e.updates] == ["a", "b", "c"]
    assert events[-1] == Done("done") and not any(isinstance(e, Done) for e in events[:-1])
    assert not session.busy and session.job is None


def test_a_second_job_is_refused_while_the_session_is_busy(tmp_path):
    session = AppSession(tmp_path)
    job = run_job(session, "first", until_stopped(session), refusal=refusal, failed="x", poll_seconds=0.01)
    with closing(job):
        next(job)
        assert session.busy and session.job == "first"
        second = run_job(session, "second", lambda report: 0, refusal=refusal, failed="x")
        with pytest.raises(UserError, match="^busy with first$"):
            next(second)
        assert session.busy and session.job == "first"  # the refusal leaves the running job alone
        assert not stop_job(session, "second")  # a stop button never stops another tab's job
        assert not session.stop.is_set()
    assert not session.busy


def test_the_stop_flag_reaches_the_body(tmp_path):
    session = AppSession(tmp_path)
    assert not stop_job(session, "toy") and not stop_job(None, "toy")  # nothing runs: nothing to stop
    session.stop.set()  # a flag left over from an earlier job does not stop the next one
    job = run_job(session, "toy", until_stopped(session), refusal=refusal, failed="x", poll_seconds=0.01)
    reported: list[int] = []
    for event in job:
        if isinstance(event, Done):
            assert event.result == len(reported)  # the body ended by itself, after its last report
            continue
        reported += event.updates
        if len(reported) >= 3 and not session.stop.is_set():
            assert stop_job(session, "toy")
    assert reported[:3] == [0, 1, 2]
    assert not session.busy and session.job is None


def test_on_stop_passes_the_flag_on_to_a_body_that_does_not_read_it(tmp_path):
    session = AppSession(tmp_path)
    told = threading.Event()

    def body(report: Callable[[str], None]) -> str:
        report("started")
        told.wait(10)
        return "told" if told.is_set() else "never told"

    job = run_job(session, "toy", body, refusal=refusal, failed="x", on_stop=told.set, poll_seconds=0.01)
    events = []
    for event in job:
        events.append(event)
        if isinstance(event, Tick) and event.updates:
            stop_job(session, "toy")
    assert events[-1] == Done("told")


def test_the_session_is_freed_after_the_body_raises(tmp_path):
    session = AppSession(tmp_path)

    def body(report: Callable[[int], None]) -> int:
        report(1)
        raise RuntimeError("out of cheese")

    job = run_job(session, "toy", body, refusal=refusal, failed="Toy failed", poll_seconds=0.01)
    with pytest.raises(UserError, match="^Toy failed: out of cheese$") as raised:
        list(job)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert not session.busy and session.job is None
    # and the session takes the next job
    assert list(run_job(session, "toy", lambda report: 7, refusal=refusal, failed="x"))[-1] == Done(7)


def test_closing_the_job_mid_run_stops_the_body_and_waits_for_it(tmp_path):
    session = AppSession(tmp_path)
    ended = threading.Event()
    stopping = until_stopped(session)

    def body(report: Callable[[int], None]) -> int:
        n = stopping(report)
        ended.set()
        return n

    job = run_job(session, "toy", body, refusal=refusal, failed="x", poll_seconds=0.01)
    for event in job:  # leaving the loop leaves the job running
        if isinstance(event, Tick) and event.updates:
            break
    job.close()  # the page went away
    assert session.stop.is_set() and ended.is_set()  # the body saw the flag and ended before close returned
    assert not session.busy and session.job is None
