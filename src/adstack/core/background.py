"""Periodic background work: a named daemon thread that runs one step now and then until its process stops.

The workers that write beside the request path (attribution, notifications, retention, the serving runtime's
refreshes, audience maintenance, partner pulls) share it, so each says only what it does and how often.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Runs `step` `first` seconds after `start()` (by default one `interval`), then every `interval` seconds
    (a number, or a function giving the next wait) until `stop()`. `wake()` cuts the current wait short, so work
    that just arrived is done now. A step that raises is logged as `failure` and the next one tries again: the
    workers keep what they have not done in their tables, so a failed step loses nothing."""

    def __init__(self, name: str, step: Callable[[], object], *, interval: float | Callable[[], float],
                 first: float | None = None, log: logging.Logger, failure: str, join_seconds: float = 30.0):
        self.name = name
        self._step = step
        self._interval = interval
        self._first = first
        self._log = log
        self._failure = failure
        self._join_seconds = join_seconds
        self._run_state = _Run()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called: a long step checks it between its parts."""
        return self._run_state.stop.is_set()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._run_state.wake.set()

    def start(self) -> None:
        if self.is_alive() and not self.stopping:
            return
        # A thread still alive here was stopped, but its last step outlasted the join: it takes no step after
        # that one (each run has its own events), and the new thread waits for it before its first.
        previous = self._thread if self.is_alive() else None
        self._run_state = _Run()
        self._thread = threading.Thread(target=self._run, args=(self._run_state, previous), name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._run_state.stop.set()
        self._run_state.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_seconds)
            if not self._thread.is_alive():
                self._thread = None

    def _next_wait(self) -> float:
        return self._interval() if callable(self._interval) else self._interval

    def _run(self, run: _Run, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()
        wait = self._next_wait() if self._first is None else self._first
        while True:
            run.wake.wait(wait)
            # Cleared before the step: a wake-up during the step is kept, and the next wait ends at once.
            run.wake.clear()
            if run.stop.is_set():
                return
            try:
                self._step()
            except Exception:
                self._log.exception(self._failure)
            if run.stop.is_set():
                return
            wait = self._next_wait()


class _Run:
    """One run's events: a restart gets new ones, so a thread still finishing its last step never sees a stop
    cleared or a wake-up meant for its successor."""

    __slots__ = ("stop", "wake")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.wake = threading.Event()
