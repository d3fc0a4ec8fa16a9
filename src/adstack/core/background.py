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
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called: a long step checks it between its parts."""
        return self._stop.is_set()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_seconds)
        self._thread = None

    def _next_wait(self) -> float:
        return self._interval() if callable(self._interval) else self._interval

    def _run(self) -> None:
        wait = self._next_wait() if self._first is None else self._first
        while True:
            self._wake.wait(wait)
            # Cleared before the step: a wake-up during the step is kept, and the next wait ends at once.
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._step()
            except Exception:
                self._log.exception(self._failure)
            if self._stop.is_set():
                return
            wait = self._next_wait()
