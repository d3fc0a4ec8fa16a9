"""Periodic background work: when a step runs, what wakes it, what a failing step does, and how it stops."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import pytest

from adstack.core.background import Periodic

log = logging.getLogger("test.background")
LONG = 60.0  # a wait no test sits through: only a wake-up or a stop ends it


def _counting(steps: list[float], done: threading.Event, after: int) -> Callable[[], None]:
    def step() -> None:
        steps.append(time.monotonic())
        if len(steps) >= after:
            done.set()
    return step


def test_the_first_step_comes_after_first_then_every_interval() -> None:
    steps: list[float] = []
    done = threading.Event()
    periodic = Periodic("t-interval", _counting(steps, done, 3), interval=0.05, first=0.0, log=log,
                        failure="step failed")
    started = time.monotonic()
    periodic.start()
    try:
        assert done.wait(10)
    finally:
        periodic.stop()
    assert steps[0] - started < 1.0
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(steps))


def test_a_wake_up_cuts_the_wait_short_and_one_during_a_step_is_kept() -> None:
    entered, release = threading.Event(), threading.Event()
    steps: list[int] = []

    def step() -> None:
        steps.append(1)
        if len(steps) == 1:
            entered.set()
            release.wait(10)

    periodic = Periodic("t-wake", step, interval=LONG, first=0.0, log=log, failure="step failed")
    periodic.start()
    try:
        assert entered.wait(10)
        periodic.wake()  # arrives while the first step runs
        release.set()
        deadline = time.monotonic() + 10
        while len(steps) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(steps) == 2  # not after LONG seconds: the wake-up was kept
        periodic.wake()
        while len(steps) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(steps) == 3
    finally:
        periodic.stop()


def test_a_failing_step_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    done = threading.Event()

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        done.set()

    periodic = Periodic("t-failing", step, interval=0.01, first=0.0, log=log, failure="the step failed; will retry")
    with caplog.at_level(logging.ERROR, logger="test.background"):
        periodic.start()
        try:
            assert done.wait(10)
        finally:
            periodic.stop()
    failures = [r for r in caplog.records if r.getMessage() == "the step failed; will retry"]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_stop_ends_a_long_wait_at_once_and_no_step_follows() -> None:
    steps: list[float] = []
    periodic = Periodic("t-stop", _counting(steps, threading.Event(), 1), interval=LONG, log=log,
                        failure="step failed")
    periodic.start()
    assert periodic.is_alive()
    started = time.monotonic()
    periodic.stop()
    assert time.monotonic() - started < 5
    assert not periodic.is_alive() and periodic.stopping
    assert steps == []  # the first step was due only after a whole interval


def test_a_long_step_sees_the_stop_between_its_parts() -> None:
    parts: list[int] = []
    entered = threading.Event()

    def step() -> None:
        entered.set()
        while not periodic.stopping and len(parts) < 10_000:
            parts.append(1)
            time.sleep(0.001)

    periodic = Periodic("t-parts", step, interval=LONG, first=0.0, log=log, failure="step failed")
    periodic.start()
    assert entered.wait(10)
    periodic.stop()
    assert len(parts) < 10_000


def test_start_twice_runs_one_thread_and_the_interval_may_change_between_waits() -> None:
    waits: list[float] = []
    done = threading.Event()
    steps: list[float] = []

    def interval() -> float:
        waits.append(0.01)
        return 0.01

    periodic = Periodic("t-once", _counting(steps, done, 3), interval=interval, log=log,
                        failure="step failed")
    periodic.start()
    periodic.start()
    try:
        assert done.wait(10)
        assert [t.name for t in threading.enumerate()].count("t-once") == 1
    finally:
        periodic.stop()
    assert len(waits) >= 3  # the function is asked before every wait, the first included


def test_a_restart_waits_its_first_interval_again() -> None:
    steps: list[float] = []
    periodic = Periodic("t-restart", _counting(steps, threading.Event(), 99), interval=LONG, first=LONG, log=log,
                        failure="step failed")
    periodic.stop()  # before any start: leaves nothing behind for the first run
    periodic.start()
    periodic.stop()
    periodic.start()
    try:
        time.sleep(0.3)
        assert steps == []
    finally:
        periodic.stop()


def test_a_step_that_outlasts_stop_never_runs_beside_its_successor() -> None:
    running: list[int] = []
    overlaps: list[int] = []
    entered = threading.Event()

    def step() -> None:
        if running:
            overlaps.append(1)
        running.append(1)
        entered.set()
        time.sleep(0.5)
        running.pop()

    periodic = Periodic("t-overlap", step, interval=0.01, first=0.0, log=log, failure="step failed",
                        join_seconds=0.05)
    periodic.start()
    assert entered.wait(10)
    periodic.stop()  # returns before the step ends
    assert periodic.is_alive()
    periodic.start()  # its thread waits for the old step rather than running a second beside it
    time.sleep(1.2)
    periodic.stop()
    deadline = time.monotonic() + 10
    while periodic.is_alive() and time.monotonic() < deadline:
        periodic.stop()
    assert overlaps == []
